"""Rendering of a comparison: rich tables, Markdown, and a plot. Computes nothing.

Tables stay readable at 80 columns: short column labels, ratios and intervals kept on one
line, and the details of each claim (its source, reading and context) on lines below. A row's
cells and detail lines come from bench/report_cells.py, the tables beside the claims from
bench/report_tables.py, the plots from bench/report_plot.py.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.report_cells import COLUMNS, MARK, claim_cells, compact_lines, detail_lines, family_note, fmt_claimed
from bench.report_tables import (
    ABLATION_COLUMNS,
    SCALING_COLUMNS,
    SCALING_TITLE,
    ablation_cells,
    environment_rows,
    quality_tables,
    scale_tables,
    scaling_cells,
)
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
OPEN_VERDICTS = ("pending", "not applicable")


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
    # A resumed run's wall time is its last invocation's: the jobs it took from the cut run
    # were measured before it started.
    reused = reused_jobs(result)
    parts.append(
        f"{result['wall_s']:.0f} s" + (f" (last invocation; {reused} jobs from the cut run)" if reused else "")
    )
    data_s = (result.get("sequential") or {}).get("data_s")
    if data_s is not None and data_s >= 1:  # a fresh machine's first run: said, and off the budget
        parts.append(
            f"of which {data_s:.0f} s simulating and preparing the data the cache lacked, before the budget's clock"
        )
    return ", ".join(parts)


def reused_jobs(result: dict[str, Any]) -> int:
    """Jobs a resumed run took from its cut run, over every suite's section that counts them."""
    sections = (v for v in result.values() if isinstance(v, dict))
    return sum(v["reused"] for v in sections if isinstance(v.get("reused"), int))


STAGE_NAMES = {"setup": "set-up", "warm": "warm-ups", "validate": "validation", "train": "training", "finish": "finish"}


def stages_line(result: dict[str, Any]) -> str | None:
    """Where a round of turns spends its wall time (median over the run's rounds, per stage):
    what decides how many rounds a budget holds. None for records from before ``stages_s``."""
    from bench.analysis import round_stages

    rounds = round_stages(result.get("records") or [])
    if not rounds:
        return None
    total = statistics.median(sum(stages.values()) for stages in rounds)
    parts = [
        f"{label} {statistics.median(stages.get(key, 0.0) for stages in rounds):.0f} s"
        for key, label in STAGE_NAMES.items()
        if any(key in stages for stages in rounds)
    ]
    return f"A round of turns took {total:.0f} s (median of {len(rounds)}): {', '.join(parts)}"


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


def render(result: dict[str, Any], console: Console | None = None) -> None:
    """Print the claim tables by family, the open claims, the ablations and the environment."""
    console = console or wide_console()
    console.print(f"[bold]{header_line(result)}[/bold]")
    if stages := stages_line(result):
        console.print(f"[dim]{stages}[/dim]")
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
            for line in (compact_lines(row) if compact else []) + detail_lines(row):
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
    stages = stages_line(result)
    parts = [
        f"# ALT vs NEU: {result['base']['spec']} vs {result['candidate']['spec']}",
        "",
        header_line(result) + ".",
        "",
        *([stages + ".", ""] if stages else []),
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
