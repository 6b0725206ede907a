"""Rendering of a comparison: rich tables, Markdown, and a plot. Computes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

FAMILY_TITLES = {
    "validation": "Validation (V): ratios are ALT time / NEU time",
    "training": "Training (T): ratios are NEU samples/s / ALT samples/s",
    "memory": "Memory and disk (M): ratios are ALT / NEU (1 = equal, <1 = NEU uses more)",
    "search": "Hyperparameter search (H): wall-time speedups; H2 is a share of trials",
    "scaling": "Scaling (S): speedups; S4 is a projection, not a measurement",
}
VERDICT_STYLE = {
    "holds": "green",
    "refuted": "red",
    "exceeded": "cyan",
    "inconclusive": "yellow",
    "pending": "dim",
    "not measured": "magenta",
}
COLUMNS = ("claim", "base", "candidate", "measured ratio [95% CI]", "claimed", "verdict", "rounds")
UNITS = {
    "val_pass_s": "s",
    "train_samples_per_s": "/s",
    "train_peak_rss_mib": "MiB",
    "val_peak_rss_mib": "MiB",
    "log_bytes": "B",
    "checkpoint_bytes": "B",
}


def fmt_value(value: float | None, metric: str | None = None) -> str:
    if value is None:
        return "-"
    unit = UNITS.get(metric or "", "")
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value:.0f} B"
    return f"{value:.4g} {unit}".strip()


def fmt_share(measured: dict[str, float] | None) -> str:
    if not measured:
        return "-"
    return f"{measured['estimate']:.0%} [{measured['low']:.0%}, {measured['high']:.0%}]"


def fmt_ratio(measured: dict[str, float] | None) -> str:
    if not measured:
        return "-"
    if measured["low"] == measured["high"]:
        return f"{measured['estimate']:.3g}x"
    return f"{measured['estimate']:.3g}x [{measured['low']:.3g}, {measured['high']:.3g}]"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def claim_cells(row: dict[str, Any]) -> list[str]:
    share = row.get("metric") == "hpo_pruned_share"
    claimed = f"{row['claimed']:.0%}" if share else f"{row['claimed']:.3g}x"
    if row.get("claimed_alt") or row.get("claimed_neu"):
        claimed += f" ({row.get('claimed_alt') or '-'} -> {row.get('claimed_neu') or '-'})"
    return [
        f"{row['id']} {row['text']}",
        fmt_value(row["base_value"], row["metric"]),
        fmt_value(row["candidate_value"], row["metric"]),
        fmt_share(row["measured"]) if share else fmt_ratio(row["measured"]),
        claimed,
        row["verdict"],
        str(row["rounds"] or "-"),
    ]


def ablation_cells(row: dict[str, Any]) -> list[str]:
    extra = (
        f"stderr {row['val_loss_stderr']:.4f}"
        if row.get("val_loss_stderr") is not None
        else f"input wait {row['input_wait_share']:.2f}"
        if row.get("input_wait_share") is not None
        else ""
    )
    return [
        row["role"],
        row["spec"],
        row["phase"],
        fmt_value(row["reference_value"], row["metric"]),
        fmt_value(row["value"], row["metric"]),
        fmt_ratio(row["ratio"]) if row["ratio"] else _short(row.get("note") or "-"),
        f"{row['samples_per_s']:.4g}" if row.get("samples_per_s") else "-",
        f"{row['first_call_s']:.3g} s" if row.get("first_call_s") is not None else "-",
        extra,
    ]


ABLATION_COLUMNS = (
    "variant",
    "spec",
    "phase",
    "reference",
    "variant value",
    "ratio [95% CI]",
    "samples/s",
    "first call",
    "noise / input",
)


def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    settings = ", ".join(f"{k}={v}" for k, v in env.get("env", {}).items() if v is not None) or "(defaults)"
    threads = ", ".join(f"{k}={v}" for k, v in env.get("threads", {}).items())
    return [
        (
            "machine",
            f"{env.get('cpu_model')} — {env.get('usable_cpus')} usable of {env.get('logical_cpus')} CPUs, "
            f"{env.get('memory_gib')} GiB",
        ),
        ("GPU", ", ".join(env.get("gpus") or []) or "none"),
        ("backend", f"{env.get('backend')} ({env.get('platform')}, Python {env.get('python')})"),
        ("versions", versions),
        ("speed settings", settings),
        ("threads", threads or "-"),
        ("git commit", str(env.get("git_commit"))),
    ]


def header_line(result: dict[str, Any]) -> str:
    return (
        f"{result['base']['spec']} (base) vs {result['candidate']['spec']} (candidate) at preset "
        f"{result['preset']!r}, {result['rounds']} rounds, {result['wall_s']:.0f} s"
    )


def wide_console() -> Console:
    """A console that keeps the tables readable when output goes to a file or CI log (rich's 80 columns is too narrow)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def render(result: dict[str, Any], console: Console | None = None) -> None:
    """Print the claim tables by family, the pending claims, the ablations and the environment."""
    console = console or wide_console()
    console.print(f"[bold]{header_line(result)}[/bold]")
    for family, title in FAMILY_TITLES.items():
        rows = [r for r in result["claims"] if r["family"] == family and r["verdict"] != "pending"]
        if not rows:
            continue
        table = Table(title=title, title_justify="left", show_lines=False)
        for col in COLUMNS:
            table.add_column(col, overflow="fold")
        for row in rows:
            cells = claim_cells(row)
            cells[5] = f"[{VERDICT_STYLE.get(row['verdict'], '')}]{cells[5]}[/]"
            table.add_row(*cells)
        console.print(table)
        for row in rows:
            if row["reason"]:
                console.print(f"  [dim]{row['id']}: {row['reason']}[/dim]")
    pending = [r for r in result["claims"] if r["verdict"] == "pending"]
    table = Table(title="Claims measured by later issues", title_justify="left")
    for col in ("claim", "claimed", "verdict", "reason"):
        table.add_column(col, overflow="fold")
    for row in pending:
        table.add_row(f"{row['id']} {row['text']}", claim_cells(row)[4], row["verdict"], row["reason"])
    console.print(table)
    table = Table(title="Ablations: one knob at a time (ratio = times better than the reference)", title_justify="left")
    for col in ABLATION_COLUMNS:
        table.add_column(col, overflow="fold")
    for row in result["ablations"]:
        table.add_row(*ablation_cells(row))
    console.print(table)
    table = Table(title="Environment", title_justify="left", show_header=False)
    for name, value in environment_rows(result["environment"]):
        table.add_row(name, value)
    console.print(table)


def _md_table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(result: dict[str, Any], plot_name: str | None = None) -> str:
    """The same tables as Markdown, for reports and the README."""
    parts = [
        f"# ALT vs NEU: {result['base']['spec']} vs {result['candidate']['spec']}",
        "",
        header_line(result) + ".",
        "",
    ]
    for family, title in FAMILY_TITLES.items():
        rows = [r for r in result["claims"] if r["family"] == family and r["verdict"] != "pending"]
        if not rows:
            continue
        parts += [f"## {title}", "", _md_table(COLUMNS, [claim_cells(r) for r in rows]), ""]
        parts += [f"- {r['id']}: {r['reason']}" for r in rows if r["reason"]] + [""]
    pending = [r for r in result["claims"] if r["verdict"] == "pending"]
    parts += [
        "## Claims measured by later issues",
        "",
        _md_table(
            ("claim", "claimed", "verdict", "reason"),
            [[f"{r['id']} {r['text']}", claim_cells(r)[4], r["verdict"], r["reason"]] for r in pending],
        ),
        "",
    ]
    if result["ablations"]:
        parts += ["## Ablations", "", _md_table(ABLATION_COLUMNS, [ablation_cells(r) for r in result["ablations"]]), ""]
    parts += ["## Environment", "", _md_table(("", ""), [list(r) for r in environment_rows(result["environment"])]), ""]
    if plot_name:
        parts += [f"![measured vs claimed ratios]({plot_name})", ""]
    return "\n".join(parts)


def plot(result: dict[str, Any], path: Path) -> None:
    """Measured ratios with 95% CI whiskers against the claimed ratios, on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["claims"] if r["measured"]]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for y, row in enumerate(rows):
        m = row["measured"]
        color = {"holds": "tab:green", "refuted": "tab:red", "exceeded": "tab:cyan"}.get(row["verdict"], "tab:orange")
        ax.errorbar(
            m["estimate"],
            y,
            xerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
            fmt="o",
            color=color,
            capsize=4,
            label="measured (95% CI)" if y == 0 else None,
        )
        band = (row["claimed"] * (1 - row["tolerance"]), row["claimed"] * (1 + row["tolerance"]))
        ax.plot(
            band,
            [y, y],
            color="black",
            alpha=0.25,
            linewidth=8,
            solid_capstyle="butt",
            label="claimed ±tolerance" if y == 0 else None,
        )
        ax.plot(row["claimed"], y, "|", color="black", markersize=12)
    ax.set_yticks(range(len(rows)), [f"{r['id']} ({r['verdict']})" for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ratio, times better for the candidate (log scale)")
    env = result["environment"]
    ax.set_title(
        f"{result['base']['spec']} vs {result['candidate']['spec']} @ {result['preset']}, "
        f"{result['rounds']} rounds\n{env.get('cpu_model')}, {env.get('usable_cpus')} CPUs",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
