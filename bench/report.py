"""Rendering of a comparison: rich tables, Markdown, and a plot. Computes nothing.

Tables stay readable at 80 columns: short column labels, ratios and intervals kept on one
line, and the details of each claim (its source, reading and context) on lines below.
"""

from __future__ import annotations

import os
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.stats import verdict_word

FAMILY_TITLES = {
    "validation": "Validation (V): ALT time / NEU time per pass",
    "training": "Training (T): NEU samples/s / ALT samples/s",
    "memory": "Memory and disk (M): ALT / NEU (1 = equal, < 1 = NEU uses more)",
    "search": "Hyperparameter search (H): wall-time speedups and shares",
    "workflow": "Workflow (W): time to a best model",
    "quality": "Quality (Q)",
    "selection": "PMT selection (P)",
    "scaling": "Scaling (S)",
    "cost": "Cost (C)",
}
VERDICT_STYLE = {
    "holds": "green",
    "refuted": "red",
    "refuted (reversed)": "bold red",
    "exceeded": "cyan",
    "inconclusive": "yellow",
    "projection": "blue",
    "not applicable": "dim",
    "pending": "dim",
    "not measured": "magenta",
}
VERDICT_COLOR = {  # the plot's colours, one per verdict, with a key
    "holds": "tab:green",
    "refuted": "tab:red",
    "refuted (reversed)": "darkred",
    "exceeded": "tab:cyan",
    "inconclusive": "tab:orange",
    "projection": "tab:blue",
}
COLUMNS = ("id", "claim", "ALT", "NEU", "ratio [95% CI]", "claimed", "verdict", "n")
OPEN_VERDICTS = ("pending", "not applicable")
MARK = "†"  # a verdict that differs under simultaneous coverage of the whole table


def fmt_value(value: float | None, unit: str | None = None) -> str:
    if value is None:
        return "-"
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value:.0f} B"
    return f"{value:.4g} {unit or ''}".strip()


def fmt_interval(measured: dict[str, float] | None, kind: str = "ratio") -> str:
    if not measured:
        return "-"
    if kind == "share":
        return f"{measured['estimate']:.0%} [{measured['low']:.0%}, {measured['high']:.0%}]"
    if measured["low"] == measured["high"] or kind in ("exact", "projection"):
        return f"{measured['estimate']:.3g}x"
    return f"{measured['estimate']:.3g}x [{measured['low']:.3g}, {measured['high']:.3g}]"


def fmt_claimed(row: dict[str, Any]) -> str:
    value = row.get("claimed_here", row["claimed"])
    return f"{value:.0%}" if row.get("kind") == "share" else f"{value:.3g}x"


def simultaneous_differs(row: dict[str, Any]) -> bool:
    """Whether the row's verdict under simultaneous coverage (``bench.analysis.add_simultaneous``)
    differs from its own; False for records saved before rows carried one."""
    sim = row.get("simultaneous") or {}
    return sim.get("verdict") is not None and sim["verdict"] != row["verdict"]


def claim_cells(row: dict[str, Any]) -> list[str]:
    unit = row.get("unit")
    return [
        row["id"],
        row["text"],
        fmt_value(row["base_value"], unit),
        fmt_value(row["candidate_value"], unit),
        fmt_interval(row["measured"], row.get("kind", "ratio")),
        fmt_claimed(row),
        row["verdict"] + (f" {MARK}" if simultaneous_differs(row) else ""),
        str(row["rounds"] or "-"),
    ]


def simultaneous_line(row: dict[str, Any]) -> str | None:
    """The detail line of a row whose simultaneous verdict differs, or could not be formed."""
    sim = row.get("simultaneous") or {}
    if not sim or sim.get("confidence") is None:
        return None
    family = f"family of {sim['family']} claims, each interval at {sim['confidence']:.2%}"
    if sim.get("verdict") is None:
        return f"simultaneous verdict not formed ({family}): its interval cannot be rebuilt from the row"
    if not simultaneous_differs(row):
        return None
    low, high = sim["ci"]
    interval = f"[{low:.0%}, {high:.0%}]" if row.get("kind") == "share" else f"[{low:.3g}, {high:.3g}]"
    return f"{MARK} simultaneous 95% over the table ({family}): {sim['verdict']}, {interval}"


def stop_line(row: dict[str, Any]) -> str | None:
    """Why a sequential run's rounds stopped, and the level its interval is at, if not 95%."""
    if not row.get("stop"):
        return None
    level = row.get("confidence")
    at = f"; interval at {level:.2%}, the look's level (95% over the looks)" if level and level != 0.95 else ""
    timed, run = row.get("rounds"), row.get("n")
    # The run's rounds include the whole-process memory rounds, whose timings the intervals drop.
    count = f"n = {run} rounds" if timed in (None, run) else f"n = {timed} timed of {run} rounds"
    return f"{count}, stopped: {row['stop']}{at}"


def family_note(rows: list[dict[str, Any]]) -> str | None:
    """The footnote a table needs when one of its verdicts carries the mark."""
    marked = [r for r in rows if simultaneous_differs(r)]
    if not marked:
        return None
    family = marked[0]["simultaneous"]["family"]
    return (
        f"{MARK} the verdict differs under simultaneous 95% coverage of the whole table (Bonferroni, "
        f"family of {family} claims: every claim judged with an interval in this run); the row's details give it"
    )


def detail_lines(row: dict[str, Any]) -> list[str]:
    """What a reader needs below the row: the report's figures, the other reading, the why."""
    lines = []
    if row.get("claimed_alt") or row.get("claimed_neu"):
        source = f" ({row['source']})" if row.get("source") else ""
        lines.append(f"report: {row.get('claimed_alt') or '-'} -> {row.get('claimed_neu') or '-'}{source}")
    beside = row.get("beside")
    if beside:
        unit = beside.get("unit")
        lines.append(
            f"{beside['metric']}: {fmt_value(beside['base_value'], unit)} -> "
            f"{fmt_value(beside['candidate_value'], unit)}, {fmt_interval(beside['measured'])} (not judged)"
        )
    if row.get("reason"):
        lines.append(row["reason"])
    lines += [line for line in (stop_line(row), simultaneous_line(row)) if line]
    return lines


def ablation_cells(row: dict[str, Any]) -> list[str]:
    unit = row.get("unit")
    if row.get("val_loss_stderr") is not None:
        extra = f"{row['val_loss_stderr']:.4f}"
    elif row.get("input_wait_share") is not None:
        extra = f"{row['input_wait_share']:.2f}"
    else:
        extra = "-"
    return [
        row["role"],
        "val" if row["phase"] == "validate" else row["phase"],
        fmt_value(row["reference_value"], unit),
        fmt_value(row["value"], unit),
        fmt_interval(row["ratio"]) if row["ratio"] else (row.get("note") or "-"),
        f"{row['first_call_s']:.3g} s" if row.get("first_call_s") is not None else "-",
        extra,
    ]


# "wait | stderr": input-wait share of a training step, or the validation loss's standard error
ABLATION_COLUMNS = ("variant", "phase", "ref.", "value", "ratio [95% CI]", "1st call", "wait|stderr")


SCALING_COLUMNS = ("path", "cores", "samples/s", "speedup [95% CI]", "eff.", "val pass", "val speedup")


def scaling_cells(row: dict[str, Any]) -> list[str]:
    """One path at one core count: training and validation against 1 core (computed ratios)."""
    eff = row.get("train_samples_per_s_efficiency")
    return [
        row["path"],
        str(row["cores"]),
        fmt_value(row["train_samples_per_s"], "/s"),
        fmt_interval(row["train_samples_per_s_speedup"]),
        f"{eff:.0%}" if eff is not None else "-",
        fmt_value(row["val_pass_s"], "s"),
        fmt_interval(row["val_pass_s_speedup"]),
    ]


SCALING_TITLE = "Cores by CPU affinity: speedup over 1 core, parallel efficiency = speedup / cores"


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
    suite = result.get("suite", "speed")
    search = result.get("search") or {}
    plan = search.get("plan") if isinstance(search, dict) else None
    parts = [f"{result['base']['spec']} (base) vs {result['candidate']['spec']} (candidate)", f"suite {suite}"]
    if result.get("rounds"):
        parts.append(f"preset {result['preset']!r}, {result['rounds']} rounds")
    if plan:
        parts.append(f"search at {plan['preset']!r}: {plan['trials']} trials x {plan['repeats']} repeats")
    quality = (result.get("quality") or {}).get("plan")
    if quality:
        parts.append(f"quality at {quality['preset']!r}: {quality['seeds']} seeds")
    # A resumed run's wall time is its last invocation's; the provenance says what came before.
    parts.append(f"{result['wall_s']:.0f} s" + (" (last invocation)" if result.get("provenance") else ""))
    return ", ".join(parts)


def wide_console() -> Console:
    """A console for tables: the terminal's width; when piped, $COLUMNS if set, else 160."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=160)


COMPACT_BELOW = 120  # console columns under which the claim text and values move below the table
COMPACT_COLUMNS = ("id", "ratio [95% CI]", "claimed", "verdict", "n")


def _claim_table(
    title: str, rows: list[dict[str, Any]], *, compact: bool, labels: tuple[str, str] = ("ALT", "NEU")
) -> Table:
    """``labels`` name the base and candidate columns (ALT and NEU, or CPU and GPU)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = COMPACT_COLUMNS if compact else COLUMNS
    names = {"ALT": labels[0], "NEU": labels[1]}
    for col in columns:
        # Numbers never wrap: an interval split over two lines misreads.
        table.add_column(names.get(col, col), no_wrap=col != "claim")
    for row in rows:
        cells = dict(zip(COLUMNS, claim_cells(row), strict=True))
        style = VERDICT_STYLE.get(verdict_word(row["verdict"]), "")
        cells["verdict"] = f"[{style}]{cells['verdict']}[/]"
        table.add_row(*(cells[c] for c in columns))
    return table


def _compact_lines(row: dict[str, Any]) -> list[str]:
    """In a narrow table the claim and its two values are the first detail line."""
    unit = row.get("unit")
    values = ""
    if row["base_value"] is not None or row["candidate_value"] is not None:
        values = f": ALT {fmt_value(row['base_value'], unit)} -> NEU {fmt_value(row['candidate_value'], unit)}"
    return [row["text"] + values]


VERIFY_COLUMNS = ("metric", "ALT recipe", "NEU recipe", "ceiling (sim vs sim)")
SELECTION_COLUMNS = ("PMTs chosen by", "ALT model", "NEU model")
TTQ_COLUMNS = ("recipe", "runs", "reached", "median s [95% CI]", "epochs to target")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def scale_tables(result: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]], str]]:
    """The scale suite's table (bench/scale.py): each V/T claim at every preset; empty without one."""
    if not result.get("scale"):
        return []
    from bench.scale import table

    columns, rows = table(result["scale"])
    note = "each preset's own sequential run (n rounds, its look's level); the claim table above is the last preset's"
    return [("Scale: the speed claims at every preset (ratio [CI] verdict)", columns, rows, note)]


def quality_tables(result: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list[list[str]], str]]:
    """(title, columns, rows, note) of the quality suite's context tables; empty without one."""
    quality = result.get("quality")
    if not quality or not quality.get("verification"):
        return []
    summary = quality["verification"]
    seeds = summary["seeds"]
    tables = [
        (
            f"Verification of the final models (medians over {seeds} seeds)",
            VERIFY_COLUMNS,
            [[n, _num(v["base"]), _num(v["candidate"]), _num(v["ceiling"])] for n, v in summary["metrics"].items()],
            "definitions: diffusion/quality.py and the README; ceiling: two simulations of the same truth",
        ),
        (
            "PMT selection: detection rate on simulated trigger events (medians over seeds)",
            SELECTION_COLUMNS,
            [[n, _num(v["base"]), _num(v["candidate"])] for n, v in summary["detection_rate"].items()],
            "shapley_simulated: the same choice made from simulated events (what a perfect model gives)",
        ),
    ]
    ttq = quality.get("ttq_summary")
    if ttq and "error" in ttq:
        tables.append(
            ("Time to quality (MLPerf Training's definition)", ("",), [["not measured: " + ttq["error"]]], "")
        )
    elif ttq:
        rows = []
        for role, label in (("base", "ALT"), ("candidate", "NEU")):
            t = ttq.get(role) or {}
            ci = t.get("ci_s")
            interval = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
            median = t.get("median_s")
            rows.append(
                [
                    label,
                    str(t.get("runs", 0)) + (f" ({t['failed']} failed)" if t.get("failed") else ""),
                    str(t.get("reached", 0)),
                    (f"> budget{interval}" if median == float("inf") else f"{median:.3g}{interval}")
                    if median is not None
                    else "-",
                    ", ".join("-" if e is None else str(e) for e in t.get("epochs", [])),
                ]
            )
        note = (
            f"target: validation loss <= {ttq['target']:.4g} ({ttq['target_rule']}); budget {ttq['max_epochs']} "
            f"epochs; wall time from process start, evaluation on the clock; "
            + "; ".join(f"{r}: {ttq[r].get('ci_note', '')}" for r in ("base", "candidate") if ttq.get(r))
        )
        tables.append(("Time to quality (MLPerf Training's definition)", TTQ_COLUMNS, rows, note))
    return tables


def render(result: dict[str, Any], console: Console | None = None) -> None:
    """Print the claim tables by family, the open claims, the ablations and the environment."""
    console = console or wide_console()
    console.print(f"[bold]{header_line(result)}[/bold]")
    for family, title in FAMILY_TITLES.items():
        rows = [r for r in result["claims"] if r["family"] == family and r["verdict"] not in OPEN_VERDICTS]
        if not rows:
            continue
        compact = console.width < COMPACT_BELOW
        console.print(_claim_table(title, rows, compact=compact))
        note = family_note(rows)
        if note:
            console.print(f"  {note}", overflow="fold")
        for row in rows:
            for line in (_compact_lines(row) if compact else []) + detail_lines(row):
                console.print(f"  [dim]{row['id']}: {line}[/dim]", overflow="fold")
    open_rows = [r for r in result["claims"] if r["verdict"] in OPEN_VERDICTS]
    table = Table(
        title="Claims not measured here: pending (a later issue) or not applicable",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("id", "claimed", "verdict", "reason"):
        table.add_column(col, no_wrap=col != "reason")
    for row in open_rows:
        table.add_row(row["id"], fmt_claimed(row), row["verdict"], f"{row['text']}: {row['reason']}")
    console.print(table)
    if result["ablations"]:
        compact = console.width < COMPACT_BELOW
        table = Table(
            title="Ablations: one knob at a time (ratio = times better than the reference)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        columns = [c for c in ABLATION_COLUMNS if not (compact and c in ("ref.", "value"))]
        for col in columns:
            table.add_column(col, no_wrap=True)
        for row in result["ablations"]:
            cells = dict(zip(ABLATION_COLUMNS, ablation_cells(row), strict=True))
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
    if result.get("scaling"):
        table = Table(title=SCALING_TITLE, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in SCALING_COLUMNS:
            table.add_column(col, no_wrap=True)
        for row in result["scaling"]["table"]:
            table.add_row(*scaling_cells(row))
        console.print(table)
    for title, columns, rows, note in quality_tables(result) + scale_tables(result):
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, caption=note)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    table = Table(title="Environment", title_justify="left", show_header=False)
    for name, value in environment_rows(result["environment"]):
        table.add_row(name, value)
    console.print(table)


def _md_table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\r", " ").replace("\n", " ")  # a newline would end the row

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
        *([f"Provenance: {result['provenance']}.", ""] if result.get("provenance") else []),
        "Verdict rule (README, 'What a run tells you'): direction first, then the claim's band; "
        "fewer than 3 rounds give no verdict."
        + (
            f" {MARK} marks a verdict that differs under simultaneous 95% coverage of every claim judged "
            "with an interval in this run (Bonferroni: each of the m intervals at 1 - alpha/m)."
            if any(r.get("simultaneous") for r in result["claims"])
            else ""
        ),
        "",
    ]
    for family, title in FAMILY_TITLES.items():
        rows = [r for r in result["claims"] if r["family"] == family and r["verdict"] not in OPEN_VERDICTS]
        if not rows:
            continue
        parts += [f"## {title}", "", _md_table(COLUMNS, [claim_cells(r) for r in rows]), ""]
        note = family_note(rows)
        parts += [note, ""] if note else []
        parts += [f"- {r['id']}: {line}" for r in rows for line in detail_lines(r)] + [""]
    open_rows = [r for r in result["claims"] if r["verdict"] in OPEN_VERDICTS]
    parts += [
        "## Claims not measured here",
        "",
        _md_table(
            ("id", "claim", "claimed", "verdict", "reason"),
            [[r["id"], r["text"], fmt_claimed(r), r["verdict"], r["reason"]] for r in open_rows],
        ),
        "",
    ]
    if result["ablations"]:
        parts += ["## Ablations", "", _md_table(ABLATION_COLUMNS, [ablation_cells(r) for r in result["ablations"]]), ""]
    if result.get("scaling"):
        rows = [scaling_cells(r) for r in result["scaling"]["table"]]
        parts += [f"## {SCALING_TITLE}", "", _md_table(SCALING_COLUMNS, rows), ""]
    for title, columns, rows, note in quality_tables(result) + scale_tables(result):
        parts += [f"## {title}", "", _md_table(columns, rows), "", note, ""]
    parts += ["## Environment", "", _md_table(("", ""), [list(r) for r in environment_rows(result["environment"])]), ""]
    if plot_name:
        parts += [f"![measured vs claimed ratios]({plot_name})", ""]
        if result.get("scaling"):
            parts += [f"![throughput and efficiency vs cores]({scaling_plot_name(plot_name)})", ""]
        if result.get("scale"):
            parts += [f"![ratios against model size]({scaling_plot_name(plot_name, 'scale')})", ""]
    return "\n".join(parts)


def scaling_plot_name(plot_name: str, suite: str = "scaling") -> str:
    """The name of a suite's own plot beside the main one (``R.png`` -> ``R-scaling.png``)."""
    stem, dot, ext = plot_name.rpartition(".")
    return f"{stem}-{suite}.{ext}" if dot else f"{plot_name}-{suite}"
