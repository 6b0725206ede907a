"""What a repeat record says, computed from its runs (pure functions; bench/repeat.py runs and
renders): verdict agreement, why a verdict differs between runs, the runs judged together,
interval overlap between runs, and each claim's computed repeat chances (bench/repeat_forecast.py).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.repeat_forecast import Forecast, RunRow

TARGET_FAMILIES = ("validation", "training")  # the ones that must agree in 9 of 10 runs
# The level of a row kept before rows kept theirs: those runs held 5-7 rounds, where the budget
# fixes a single look at 95% (bench/sequential.py: Schedule.spending). bench.stats holds the same
# figure, but loads SciPy, which rendering a record need not.
OLD_ROWS_CONFIDENCE = 0.95
INTERVAL_TEXT = re.compile(r"(\S+) \[(\S+), (\S+)\]")


def agreement(runs: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per claim: the most common verdict, how many runs gave it, and every verdict's count (pure)."""
    out = {}
    for cid in sorted({c for r in runs for c in r}, key=lambda c: (c[0], c)):
        counts = Counter(r[cid] for r in runs if cid in r)
        verdict, agree = counts.most_common(1)[0]
        out[cid] = {"verdict": verdict, "agree": agree, "runs": sum(counts.values()), "counts": dict(counts)}
    return out


def run_intervals(run: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Each claim's (estimate, low, high) in one run: from its measured row, or, in records made
    before rows were kept, parsed back from the table's ``"est [low, high]"`` text (3 digits)."""
    if "rows" in run:
        return {cid: (r["estimate"], r["low"], r["high"]) for cid, r in run["rows"].items()}
    out = {}
    for cid, text in run["intervals"].items():
        match = INTERVAL_TEXT.fullmatch(text)
        if match:
            out[cid] = tuple(float(x) for x in match.groups())
    return out


def straddled(low: float, high: float, band: tuple[float, float], claimed: float) -> list[float]:
    """The verdict's edges lying inside an interval (pure): the band's two, and 1 for a claim
    with a direction. An interval holding one of them is why a verdict can differ between runs."""
    edges = [*band, *([1.0] if claimed != 1.0 else [])]
    return sorted(e for e in edges if low < e < high)


Band = tuple[tuple[float, float], float, str]  # (band, claimed value, family) of one claim


def why_flipped(record: dict[str, Any], bands: dict[str, Band]) -> dict[str, str]:
    """For each claim whose verdict is not the same in every run: which runs gave which verdict
    (or none), and the edges each run's interval spanned (pure). ``bands``: see ``claim_bands``."""
    out = {}
    runs = record["runs"]
    for cid, a in record["agreement"].items():
        if a["agree"] == len(runs) or cid not in bands:
            continue
        band, claimed, _family = bands[cid]
        by_verdict: dict[str, list[str]] = {}
        for i, one in enumerate(runs):
            interval = run_intervals(one).get(cid)
            held = straddled(interval[1], interval[2], band, claimed) if interval else []
            note = f"{i + 1}" + (f" (spans {', '.join(f'{e:.3g}' for e in held)})" if held else "")
            by_verdict.setdefault(one["verdicts"].get(cid, "not judged"), []).append(note)
        parts = "; ".join(f"{v} in run {', '.join(notes)}" for v, notes in by_verdict.items())
        out[cid] = f"band [{band[0]:.3g}, {band[1]:.3g}] around {claimed:g}x: {parts}"
    return out


def claim_bands(record: dict[str, Any]) -> dict[str, Band]:
    """Each judged claim's band, claimed value and family: as the runs kept them, else (records
    made before runs kept their rows) from the registry."""
    kept = {
        cid: ((row["band"][0], row["band"][1]), row["claimed"], row["family"])
        for one in record["runs"]
        for cid, row in one.get("rows", {}).items()
        if row.get("band") and row.get("family")
    }
    missing = [c for c in record["agreement"] if c not in kept]
    if not missing:
        return kept
    from bench.claims import load_claims
    from bench.stats import claim_band

    claims = {c.id: c for c in load_claims() if c.id in missing and c.claimed is not None}
    return {
        **{cid: (claim_band(c.claimed, c.tolerance, c.margin), c.claimed, c.family) for cid, c in claims.items()},
        **kept,
    }


def pooled(record: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each ratio claim judged on all runs together: the 95% interval of the runs' estimates
    (each a geometric mean over its rounds; runs are independent, so n = runs), by the same
    rule and registry as one run. A claim one run leaves on an edge is decided here when the
    runs together are precise enough."""
    import numpy as np

    from bench.claims import load_claims
    from bench.stats import interval_of, verdict

    claims = {c.id: c for c in load_claims()}
    out = {}
    for cid in record["agreement"]:
        claim = claims.get(cid)
        if claim is None or claim.kind != "ratio" or claim.claimed is None:
            continue
        estimates = [iv[0] for one in record["runs"] if (iv := run_intervals(one).get(cid)) is not None]
        if not estimates:
            continue
        interval = interval_of(np.array(estimates))
        word = verdict(interval, claim.claimed_here(), claim.tolerance, kind=claim.kind, margin=claim.margin)
        out[cid] = (interval, word.value)
    return out


def run_rows(record: dict[str, Any], cid: str) -> list[RunRow]:
    """One claim's figures in every run that kept its row (``bench.repeat_forecast.RunRow``)."""
    from bench.repeat_forecast import RunRow

    rows = []
    for one in record["runs"]:
        row = one.get("rows", {}).get(cid)
        if row is not None and row.get("n"):
            per_round = tuple(row.get("per_round") or ())
            confidence = row.get("confidence") or OLD_ROWS_CONFIDENCE
            rows.append(RunRow(row["estimate"], row["low"], row["high"], row["n"], confidence, per_round))
    return rows


def forecasts(record: dict[str, Any]) -> dict[str, Forecast]:
    """Each validation and training claim's computed repeat chances (``bench.repeat_forecast``),
    judged against the registry as ``pooled`` judges; claims with fewer than 2 kept rows are left out."""
    from bench.claims import load_claims
    from bench.repeat_forecast import forecast

    claims = {c.id: c for c in load_claims()}
    out = {}
    for cid in record["agreement"]:
        claim = claims.get(cid)
        if claim is None or claim.kind != "ratio" or claim.claimed is None or claim.family not in TARGET_FAMILIES:
            continue
        result = forecast(run_rows(record, cid), claim.claimed_here(), claim.tolerance, claim.margin)
        if result is not None:
            out[cid] = result
    return out


def overlap(record: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per claim with an interval wider than a point: how many pairs of runs have overlapping
    intervals, of how many pairs both judged it (pure). Intervals that miss each other say the
    run-level drift is larger than one run's interval admits. Exact quantities (bytes, a point
    per run) have no interval to overlap and are left out."""
    out = {}
    per_run = [run_intervals(one) for one in record["runs"]]
    for cid in record["agreement"]:
        spans = [(iv[1], iv[2]) for iv in (r.get(cid) for r in per_run) if iv is not None]
        if not spans or all(low == high for low, high in spans):
            continue
        pairs = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :]]
        out[cid] = (sum(a[0] <= b[1] and b[0] <= a[1] for a, b in pairs), len(pairs))
    return out
