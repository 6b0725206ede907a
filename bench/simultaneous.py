"""The verdicts under simultaneous 95% coverage of a run's whole table of claims: Bonferroni, each
of the m intervals judged again at ``1 - alpha/m``. Pure: no I/O, no rendering.

A row's own verdict is at 95% (a sequential look's level for the claims it watches); this is
the second statement a row carries, ``simultaneous``, for a reader who judges the table at once.
"""

from __future__ import annotations

from typing import Any

from bench.stats import CONFIDENCE, Interval, rounds_interval, share_interval, verdict


def simultaneous_interval(row: dict[str, Any], confidence: float) -> Interval | None:
    """A judged row's interval again at ``confidence``, from what the row keeps: the per-round
    ratios of a ``ratio`` row, or the trials of a Wilson ``share``. None for an interval that
    cannot be rebuilt from the row (a share derived from ratios, or over seeds)."""
    measured = row.get("measured")
    if not measured:
        return None
    if row.get("kind", "ratio") == "ratio" and row.get("per_round"):
        return rounds_interval(row["per_round"], confidence)
    if row.get("kind") == "share" and not row.get("per_round"):
        trials = int(measured["n"])
        successes = measured["estimate"] * trials
        if trials >= 1 and abs(successes - round(successes)) < 1e-6:
            return share_interval(round(successes), trials, confidence)
    return None


def in_family(row: dict[str, Any]) -> bool:
    """Whether a row's verdict rests on an interval, and so counts in the simultaneous family."""
    return row.get("kind", "ratio") in ("ratio", "share") and bool(row.get("measured")) and bool(row.get("ci"))


def add_simultaneous(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every judged row with its verdict under simultaneous coverage of the run's table.

    The family is every row judged on an interval (``in_family``), m of them. Each is judged
    again at ``1 - alpha/m``, where alpha is what its own interval spends (1 - its
    ``confidence``: 0.05, or a sequential look's alpha), so by the union bound all m intervals
    cover together with probability >= 95% (a sequential run's looks included). A row judged
    without an interval (exact, projection) keeps its verdict. Rows are returned new; the
    inputs are not changed.

    Each judged row gains ``simultaneous``: {verdict, ci, confidence, family}; verdict and ci
    are None where the interval cannot be rebuilt from the row (``simultaneous_interval``).
    """
    family = sum(in_family(r) for r in rows)
    out = []
    for row in rows:
        if not row.get("measured"):
            out.append(row)
            continue
        if not in_family(row):
            same = {"verdict": row["verdict"], "ci": row.get("ci"), "confidence": None, "family": family}
            out.append({**row, "simultaneous": same})
            continue
        confidence = 1 - (1 - row.get("confidence", CONFIDENCE)) / family
        interval = simultaneous_interval(row, confidence)
        judged = None
        if interval is not None:
            claimed = row.get("claimed_here", row["claimed"])
            judged = verdict(
                interval,
                claimed,
                row.get("tolerance", 0.20),
                kind=row.get("kind", "ratio"),
                margin=row.get("margin", 0.10),
            ).value
        sim = {
            "verdict": judged,
            "ci": [interval.low, interval.high] if interval is not None else None,
            "confidence": confidence,
            "family": family,
        }
        out.append({**row, "simultaneous": sim})
    return out
