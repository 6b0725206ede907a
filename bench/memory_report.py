"""Renders a memory record (bench/memory.py): Markdown tables, a terminal table, a plot. Computes nothing."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    "path",
    "phase",
    "batch",
    "measured growth (MiB)",
    "peak RSS (MiB)",
    "analytic growth (MiB)",
    "of which activations",
    "gradients",
    "measured / analytic",
)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def memory_cells(row: dict[str, Any]) -> list[str]:
    if row.get("error"):
        return [row["path"], row["phase"], str(row["batch"]), f"failed: {row['error']}", "", "", "", "", ""]
    measured = row.get("device_growth_mib")
    measured_text = _f(row.get("rss_growth_mib")) + (f" (device {_f(measured)})" if measured is not None else "")
    return [
        row["path"],
        row["phase"],
        str(row["batch"]),
        measured_text,
        _f(row.get("peak_rss_mib"), 0),
        _f(row["analytic_growth_mib"], 2),
        _f(row["analytic_activations_mib"], 2),
        _f(row["analytic_gradients_mib"] if row["phase"] == "train" else 0.0, 2),
        _f(row.get("measured_over_analytic"), 1) + "x",
    ]


def _log_files(names: list[str]) -> str:
    events = sum("tfevents" in name for name in names)
    plain = [name for name in names if "tfevents" not in name]
    return ", ".join(plain + ([f"{events} TensorBoard event file(s)"] if events else [])) or "none"


def disk_cells(row: dict[str, Any]) -> list[str]:
    if row.get("error"):
        return [row["path"], "-", f"failed: {row['error']}", "", "", ""]
    return [
        row["path"],
        row["tracking"],
        f"{row['log_bytes']:,} B",
        _log_files(row["log_files"]),
        f"{row['checkpoint_bytes'] / 2**20:.2f} MiB",
        f"{row['checkpoint_bytes_analytic'] / 2**20:.2f} MiB",
    ]


def _md_table(header: tuple[str, ...] | list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)])


def header(result: dict[str, Any]) -> str:
    plan, env, fp = result["plan"], result.get("environment", {}), result["footprint"]
    load = result.get("load_average", {})
    peak_load = max([*load.get("before", [0])[:1], *load.get("after", [0])[:1]])
    shared = (
        " The load average exceeded the usable CPUs: the machine was shared with other work during the run."
        if peak_load > (env.get("usable_cpus") or float("inf"))
        else ""
    )
    reused = (
        f" (resumed: {result['reused_jobs']} job(s) measured by the cut run, whose time is not counted)"
        if result.get("reused_jobs")
        else ""
    )
    return (
        f"preset `{plan['preset']}`, paths {', '.join(plan['paths'])}, batches {plan['batches']}; "
        f"{env.get('cpu_model', '?')}, {env.get('usable_cpus', '?')} usable CPUs, backend {env.get('backend', '?')}, "
        f"{result['seconds']:.0f} s{reused}; load average before/after {_f((load.get('before') or [None])[0])}/"
        f"{_f((load.get('after') or [None])[0])}.{shared}\n\n"
        f"Analytic footprint: {fp['params']:,} parameters ({fp['parameter_bytes'] / 2**20:.2f} MiB float32), "
        f"gradients the same, Adam moments {fp['optimizer_bytes'] / 2**20:.2f} MiB, "
        f"activations {fp['activations_per_sample']:,} values per sample "
        f"({fp['activations_per_sample'] * fp['bytes_per_value'] / 1024:.1f} KiB). Analytic growth of a phase: "
        "validation = batch x activations; training = gradients + batch x activations (weights and Adam's "
        "moments exist before the phase starts: the trainer builds them at setup)."
    )


def markdown(
    result: dict[str, Any], table: list[dict[str, Any]], disk: list[dict[str, Any]], plot_name: str | None = None
) -> str:
    """The record's tables as Markdown; ``table`` and ``disk``: ``bench.memory.rows`` and
    ``disk_rows`` of it (computed by the caller: rendering only renders)."""
    parts = [f"# Memory vs batch size ({result['plan']['preset']})", "", header(result), ""]
    parts += [_md_table(COLUMNS, [memory_cells(r) for r in table]), ""]
    if disk:
        parts += ["## Disk: one epoch's logs and checkpoint", ""]
        head = ("path", "tracking", "logs", "log files", "checkpoint", "checkpoint, analytic (weights + Adam)")
        parts += [_md_table(head, [disk_cells(r) for r in disk]), ""]
    if plot_name:
        parts += [f"![memory vs batch]({plot_name})", ""]
    return "\n".join(parts)


def render(result: dict[str, Any], table: list[dict[str, Any]], disk: list[dict[str, Any]]) -> None:
    print(markdown(result, table, disk))


def plot_png(result: dict[str, Any], table: list[dict[str, Any]]) -> bytes:
    """Growth above phase start vs batch, per phase of ``table`` (validation first, as
    ``bench.memory.rows`` sorts them): measured points per path, the analytic line."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in table if not r.get("error") and "rss_growth_mib" in r]
    phases = list(dict.fromkeys(r["phase"] for r in table)) or ["validate"]
    fig, axes = plt.subplots(1, len(phases), figsize=(11, 4.2), constrained_layout=True, squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        mine = [r for r in measured if r["phase"] == phase]
        for path in dict.fromkeys(r["path"] for r in mine):
            points = sorted(
                (r["batch"], r.get("device_growth_mib") or r["rss_growth_mib"]) for r in mine if r["path"] == path
            )
            ax.plot(*zip(*points, strict=True), "o-", label=f"{path}, measured")
        analytic = sorted({(r["batch"], r["analytic_growth_mib"]) for r in mine})
        if analytic:
            ax.plot(*zip(*analytic, strict=True), "k--", label="analytic (footprint)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("growth above phase start (MiB)")
        ax.set_title(phase)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Memory vs batch ({result['plan']['preset']}, {result.get('environment', {}).get('backend', '')})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
