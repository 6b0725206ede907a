"""Rendering of a history (bench/history.py): rich tables, Markdown, a plot. Computes nothing."""

from __future__ import annotations

import io
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from bench.baseline import fingerprint_diff
from bench.history_series import ChangePoint, Series
from diffusion.files import write_bytes_atomic, write_text_atomic

Steps = dict[str, list[ChangePoint]]  # by series title


def short(commit: str, dirty: bool = False) -> str:
    return commit[:10] + ("+" if dirty else "")


def points(s: Series) -> str:
    return f"{len(s.points)} point" + ("" if len(s.points) == 1 else "s")


def fmt(value: float) -> str:
    return f"{value:.4g}"


def step_cell(cp: ChangePoint) -> str:
    return f"{cp.change:+.1%} p={cp.pvalue:.1g}"


def step_text(cp: ChangePoint, quote: str = "") -> str:
    commit = f"{quote}{short(cp.commit)}{quote}"
    return f"{commit} {fmt(cp.before)} -> {fmt(cp.after)} ({cp.change:+.1%}, p={cp.pvalue:.2g})"


def found_text(s: Series, found: list[ChangePoint], quote: str = "") -> str:
    if len(s.points) < 4:
        return "too short for a change point (a step needs two points on each side)"
    if not found:
        return "no change point"
    return f"{len(found)} change point(s): " + "; ".join(step_text(cp, quote) for cp in found)


def notes(series: list[Series]) -> list[str]:
    """What a reader must know about how the series were cut: a metric on several machines,
    presets or setups is several series, and the fields in which they differ."""
    by_metric: dict[str, list[Series]] = {}
    for s in series:
        by_metric.setdefault(s.metric, []).append(s)
    lines = []
    for metric, group in sorted(by_metric.items()):
        if len(group) < 2:
            continue
        first, differ = group[0], []
        for other in group[1:]:
            fields = [d.split(":")[0] for d in fingerprint_diff(first.machine, other.machine)]
            fields += [name for name in ("preset", "setup") if getattr(other, name) != getattr(first, name)]
            differ += [f for f in fields if f not in differ]
        lines.append(
            f"{metric}: {len(group)} series, whose numbers are not compared (another machine, preset or "
            f"setup is another series); they differ in {', '.join(differ)}"
        )
    return lines


def rows(s: Series, steps: list[ChangePoint]) -> list[tuple[str, str, str, str, str]]:
    """(commit, made, estimate [low, high], n, step) per point; the step marked at its first commit after."""
    at = {cp.index: cp for cp in steps}
    return [
        (
            short(p.commit, p.dirty),
            p.created[5:16].replace("T", " "),  # MM-DD HH:MM: the table fits 80 columns
            f"{fmt(p.estimate)} [{fmt(p.low)}, {fmt(p.high)}]",
            str(p.n),
            step_cell(at[i]) if i in at else "",
        )
        for i, p in enumerate(s.points)
    ]


def render(series: list[Series], steps: Steps, console: Console | None = None) -> None:
    """One table per series, oldest commit first, with its steps marked."""
    console = console or Console()
    for s in series:
        table = Table(title=s.title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name, justify in (("commit", "left"), ("made", "left"), ("estimate [95% CI]", "right"), ("n", "right")):
            table.add_column(name, justify=justify, no_wrap=True)
        table.add_column("step", style="bold red", no_wrap=True)
        for row in rows(s, steps[s.title]):
            table.add_row(*row)
        console.print(table)
        console.print(f"  {points(s)} in {s.ordered_by}; {found_text(s, steps[s.title])}", highlight=False)
    for line in notes(series):
        console.print(f"[yellow]note:[/yellow] {line}", highlight=False)
    if not series:
        console.print("the history holds no entry of these metrics")


def markdown(series: list[Series], steps: Steps, *, plot_name: str | None = None) -> str:
    """The tables as Markdown; '+' marks a commit measured with uncommitted changes."""
    lines = ["# Benchmark history", ""]
    if plot_name:
        lines += [f"![history]({plot_name})", ""]
    lines += [f"- {line}" for line in notes(series)]
    for s in series:
        found = steps[s.title]
        lines += [
            "",
            f"## {s.title}",
            "",
            f"{points(s)} in {s.ordered_by}; {found_text(s, found, '`')}.",
            "",
            "| commit | made | estimate [95% CI] | n | step |",
            "| --- | --- | ---: | ---: | --- |",
        ]
        lines += [f"| `{c}` | {m} | {e} | {n} | {step} |" for c, m, e, n, step in rows(s, found)]
    return "\n".join(lines) + "\n"


def plot_png(series: list[Series], steps: Steps) -> bytes:
    """One panel per series: estimate with its interval at each commit, a step as a dashed line
    between the last commit before it and the first after, each segment's mean dotted; the legend
    sits beside the axes, never on the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = max(len(series), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.8 * panels), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=False):
        x = list(range(len(s.points)))
        est = [p.estimate for p in s.points]
        yerr = [[p.estimate - p.low for p in s.points], [p.high - p.estimate for p in s.points]]
        ax.errorbar(x, est, yerr=yerr, fmt="o-", ms=4, lw=0.8, capsize=2, color="tab:blue", label="estimate, 95% CI")
        found = steps[s.title]
        edges = [-0.5, *(cp.index - 0.5 for cp in found), len(x) - 0.5]
        for k, cp in enumerate(found):
            ax.axvline(edges[k + 1], color="tab:red", ls="--", lw=1.2, label="change point" if k == 0 else None)
            ax.hlines(
                cp.before,
                edges[k],
                edges[k + 1],
                color="tab:red",
                ls=":",
                lw=1,
                label="segment mean" if k == 0 else None,
            )
            ax.hlines(cp.after, edges[k + 1], edges[k + 2], color="tab:red", ls=":", lw=1)
            ax.annotate(
                f"{cp.change:+.0%}", (edges[k + 1], 1), xycoords=("data", "axes fraction"),
                xytext=(3, -12), textcoords="offset points", color="tab:red", fontsize=8,
            )  # fmt: skip
        ax.set_xticks(x, [short(p.commit, p.dirty) for p in s.points], rotation=45, ha="right", fontsize=7)
        ax.set_xlim(-0.5, max(len(x) - 0.5, 0.5))
        ax.set_xlabel(f"commit, oldest first ({s.ordered_by})", fontsize=7)
        ax.set_title(s.title, fontsize=9, loc="left")
        ax.set_ylabel(s.unit, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if not series:
        axes[0, 0].text(0.5, 0.5, "no entries", ha="center", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # the legends sit outside the axes
    plt.close(fig)
    return buffer.getvalue()


def write_plot(series: list[Series], steps: Steps, path: Path) -> None:
    """The plot, written so that a reader sees the old file or the new one, never half."""
    write_bytes_atomic(path, plot_png(series, steps))


def write_markdown(series: list[Series], steps: Steps, path: Path, *, plot_name: str | None = None) -> None:
    write_text_atomic(path, markdown(series, steps, plot_name=plot_name))
