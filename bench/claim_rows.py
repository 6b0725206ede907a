"""A claim's row: the record every suite fills in for a claim (``claim_row``), and a measured
claim's row judged under the verdict rule (``judged_row``). Pure: no I/O, no rendering.

Every suite builds its rows with these (the speed suite in bench/analysis.py, the others in their
own modules), so the report, the plots and the simultaneous verdicts read one shape.
"""

from __future__ import annotations

from typing import Any

from bench.claims import METRICS, Claim
from bench.stats import CONFIDENCE, Interval, Verdict, claim_band, verdict, verdict_reason

PerRound = dict[int, float]


def interval_dict(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "n": interval.n}


def claim_row(claim: Claim, **values: Any) -> dict[str, Any]:
    """A claim's row with nothing measured yet; ``values`` fill in what was."""
    unit = METRICS[claim.metric].unit if claim.metric in METRICS else None
    row: dict[str, Any] = {
        "id": claim.id,
        "family": claim.family,
        "text": claim.text,
        "kind": claim.kind,
        "status": claim.status,
        "source": claim.source,
        "claimed": claim.claimed,
        "claimed_here": claim.claimed,
        "claimed_alt": claim.alt,
        "claimed_neu": claim.neu,
        "tolerance": claim.tolerance,
        "margin": claim.margin,
        "band": list(claim_band(claim.claimed, claim.tolerance, claim.margin)),
        "metric": claim.metric,
        "unit": unit,
        "base_value": None,
        "candidate_value": None,
        "measured": None,
        "ci": None,
        "per_round": None,
        "beside": None,
        "verdict": Verdict.NOT_MEASURED.value,
        "reason": "",
        "rounds": 0,
    }
    return {**row, **values}


def judged_row(
    claim: Claim,
    interval: Interval,
    *,
    claimed: float | None = None,
    reason: str = "",
    per_round: PerRound | None = None,
    confidence: float = CONFIDENCE,
    label: str | None = None,
    **values: Any,
) -> dict[str, Any]:
    """A measured claim's row: the interval, the verdict under the rule, and why.

    ``confidence`` is the level ``interval`` was computed at (a sequential look's, or 0.95);
    the row keeps it, as the simultaneous verdict spends its alpha (``add_simultaneous``).
    ``label``: what the verdict carries in brackets (``VERDICT_LABELS``); an ``exact`` claim's
    is always ``exact``.
    """
    claimed = claim.claimed if claimed is None else claimed
    label = "exact" if claim.kind == "exact" else label
    result = verdict(interval, claimed, claim.tolerance, kind=claim.kind, margin=claim.margin)
    why = verdict_reason(interval, claimed, result, kind=claim.kind)
    reasons = [r for r in (why, claim.note, reason) if r]
    return claim_row(
        claim,
        claimed_here=claimed,
        band=list(claim_band(claimed, claim.tolerance, claim.margin)),
        measured=interval_dict(interval),
        ci=[interval.low, interval.high],
        per_round={str(k): v for k, v in per_round.items()} if per_round else None,
        # A deterministic quantity has no interval: its verdict is labelled as judged on the value.
        verdict=f"{result.value} ({label})" if label else result.value,
        reason="; ".join(reasons),
        rounds=interval.n,
        confidence=confidence,
        **values,
    )
