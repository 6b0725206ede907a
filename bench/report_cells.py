"""The cells and detail lines of one claim row: its values, interval, claimed figure and verdict
(with the simultaneous mark), and what a reader needs below it. Strings from the row; computes nothing."""

from __future__ import annotations

from typing import Any

COLUMNS = ("id", "claim", "ALT", "NEU", "ratio [95% CI]", "claimed", "verdict", "n")
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
    """Whether the row's verdict under simultaneous coverage (``bench.simultaneous.add_simultaneous``)
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
    at = f"; interval at {level:.2%}, a look's level (95% over the looks)" if level and level != 0.95 else ""
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


def compact_lines(row: dict[str, Any]) -> list[str]:
    """In a narrow table the claim and its two values are the first detail line."""
    unit = row.get("unit")
    values = ""
    if row["base_value"] is not None or row["candidate_value"] is not None:
        values = f": ALT {fmt_value(row['base_value'], unit)} -> NEU {fmt_value(row['candidate_value'], unit)}"
    return [row["text"] + values]
