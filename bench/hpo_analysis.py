"""The search claims' readings (``HPO_READINGS``, each metric of claims.toml's search suite named
once) and rows: pure functions of the search suite's record (bench/hpo.py measures it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from bench.claim_rows import claim_row, judged_row
from bench.claims import SEED_JOBS, Claim
from bench.hpo import ROOT, cores_run_name
from bench.reading import Reading
from bench.stats import Interval, Verdict, paired_ratios, rounds_interval, share_interval, trials_to_decide


def walls(raw: dict[str, Any], name: str) -> dict[int, float]:
    return {r["repeat"]: r["wall_s"] for r in raw["records"] if r["run"]["name"] == name and "wall_s" in r}


def _speedup(raw: dict[str, Any], base: str, cand: str, reason: str) -> Reading:
    """Wall-time speedup of one run over another, paired by repeat."""
    b, c = walls(raw, base), walls(raw, cand)
    ratios = paired_ratios(b, c, higher_is_better=False)
    if not ratios:
        return Reading(None, f"not measured: no repeat ran both {base} and {cand}")
    return Reading(
        rounds_interval(ratios),
        reason,
        float(np.median(list(b.values()))),
        float(np.median(list(c.values()))),
        ratios,
    )


def _plan(raw: dict[str, Any]) -> tuple[int, int, int]:
    return raw["plan"]["jobs"], raw["cores"], raw["plan"]["trials"]


def thread_speedup(raw: dict[str, Any]) -> Reading:
    jobs, cores, trials = _plan(raw)
    workers = _speedup(raw, "sequential", "workers", "").interval
    wtext = f"{workers.estimate:.2f}x [{workers.low:.2f}, {workers.high:.2f}]" if workers else "-"
    return _speedup(
        raw,
        "sequential",
        "threads",
        f"{jobs} threads (Optuna n_jobs, as the seed) vs 1 on {cores} cores, the same {trials} enqueued trials, "
        f"no pruning; {jobs} worker processes instead: {wtext}",
    )


def pruned_share(raw: dict[str, Any]) -> Reading:
    """Share of finished trials that MedianPruner stopped, over all repeats (Wilson interval)."""
    trials = [
        t for r in raw["records"] if r["run"]["name"] == "sequential+pruning" and "trials" in r for t in r["trials"]
    ]
    if not trials:
        return Reading(None, "not measured: no pruned run")
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    share = share_interval(pruned, len(trials))
    epochs = raw["plan"]["epochs"]
    saved = 1 - sum(t["epochs_run"] or 0 for t in trials) / (epochs * len(trials))
    return Reading(
        share,
        f"MedianPruner (startup 5 trials, no pruning before epoch 3), {epochs} epochs: {pruned} of {len(trials)} "
        f"trials pruned; epochs saved {saved:.0%}",
    )


def pruning_speedup(raw: dict[str, Any]) -> Reading:
    jobs, _, _ = _plan(raw)
    return _speedup(raw, "threads", "threads+pruning", f"{jobs} threads without vs with MedianPruner")


def pruned_time_saved(raw: dict[str, Any]) -> Reading:
    """Share of the sequential search's wall time that pruning saves: 1 - 1/speedup, per repeat."""
    got = _speedup(raw, "sequential", "sequential+pruning", "sequential search without vs with MedianPruner")
    if got.interval is None:
        return got
    iv = got.interval
    share = Interval(1 - 1 / iv.estimate, 1 - 1 / iv.low, 1 - 1 / iv.high, iv.n)
    return Reading(
        share, got.reason + " (share of wall time saved)", got.base_value, got.candidate_value, got.per_round
    )


def pruned_parallel_speedup(raw: dict[str, Any]) -> Reading:
    jobs, _, _ = _plan(raw)
    return _speedup(raw, "sequential", "threads+pruning", f"{jobs} threads with pruning vs 1 without")


def core_speedup(raw: dict[str, Any]) -> Reading:
    """S1: the search with as many worker processes as pinned cores, at more cores against fewer
    (the report's 8 vs 4 where the machine has 8)."""
    jobs, cores, trials = _plan(raw)
    if "core_pair" not in raw["plan"]:  # a record from before the pinned pair: 1 core vs all
        return _speedup(
            raw,
            "sequential-1core",
            "workers",
            f"doubling cores and workers as the seed's 4 -> 8 cores: 1 worker pinned to 1 core vs {jobs} worker "
            f"processes on {min(jobs, cores)} cores (not 8 vs 4: this machine has {cores})",
        )
    fewer, more = raw["plan"]["core_pair"]
    waves = math.ceil(trials / fewer) / math.ceil(trials / more)
    where = "as the report states it" if (fewer, more) == (4, 8) else f"not 8 vs 4: this machine has {cores} cores"
    return _speedup(
        raw,
        cores_run_name(fewer),
        cores_run_name(more),
        f"{more} worker processes on {more} pinned cores vs {fewer} on {fewer} ({where}), the same {trials} "
        f"enqueued trials, no pruning; whole waves of trials allow at most ceil({trials}/{fewer})/"
        f"ceil({trials}/{more}) = {waves:.2f}x (computed)",
    )


def projection(raw: dict[str, Any]) -> Reading:
    """Search time with W workers projected from the plan's trials: W workers finish ceil(N / W)
    waves of trials. Computed, not measured; ``simulated`` puts the simulation beside it."""
    n = raw["plan"]["trials"]
    trials = [t for r in raw["records"] if r["run"]["name"] == "threads+pruning" for t in r.get("trials", [])]
    seconds = [t["seconds"] for t in trials if t["seconds"]]
    mean = f" (mean {np.mean(seconds):.1f} s each)" if seconds else ""
    waves = {w: math.ceil(n / w) for w in (4, 128)}
    ratio = waves[4] / waves[128]
    return Reading(
        Interval(ratio, ratio, ratio, 1),
        f"computed: {n} trials{mean}; 4 workers need ceil({n}/4) = {waves[4]} waves, 128 need "
        f"ceil({n}/128) = {waves[128]}: {waves[4]}/{waves[128]} = {ratio:.0f}x at most. 128 workers pay off only "
        f"with >= 128 trials, and a TPE sampler learns little when most trials run at once",
    )


def simulated(reading: Reading, evidence: str) -> tuple[Reading, str | None]:
    """A projection with the committed simulation record ``evidence`` (bench.swarm) beside it:
    the simulated ratio becomes the row's value and the verdict is labelled ``simulated``; the
    arithmetic stays in the reason. Without a readable record, the reading as it was."""
    from bench.swarm_report import cite

    cited = cite(ROOT / evidence)
    if cited is None:
        return replace(reading, reason=f"{reading.reason}; no simulation record at {evidence}"), None
    ratio, said = cited
    if ratio is None:
        return replace(reading, reason=f"{reading.reason}; simulated ({evidence}): {said}"), "simulated"
    return Reading(Interval(ratio, ratio, ratio, 1), f"simulated ({evidence}): {said}; {reading.reason}"), "simulated"


HPO_READINGS: dict[str, Callable[[dict[str, Any]], Reading]] = {
    "hpo_thread_speedup": thread_speedup,
    "hpo_pruned_share": pruned_share,
    "hpo_pruning_speedup": pruning_speedup,
    "hpo_pruned_time_saved": pruned_time_saved,
    "hpo_pruned_parallel_speedup": pruned_parallel_speedup,
    "hpo_core_speedup": core_speedup,
    "hpo_projection": projection,
}


def rss_growth_per_trial(raw: dict[str, Any], name: str = "sequential") -> float | None:
    """Slope of the worker's RSS over trials (MiB per trial), first repeat of a one-process run."""
    rec = next((r for r in raw["records"] if r["run"]["name"] == name and "trials" in r), None)
    if rec is None:
        return None
    rss = [t["rss_mib_end"] for t in sorted(rec["trials"], key=lambda t: t["number"]) if t["rss_mib_end"] is not None]
    return float(np.polyfit(np.arange(len(rss)), rss, 1)[0]) if len(rss) >= 3 else None


def hpo_rows(raw: dict[str, Any], claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """Rows for the search suite's claims, keyed by claim id, in the compare CLI's row format."""
    jobs, _, _ = _plan(raw)
    errors = sorted({r["error"] for r in raw["records"] if "error" in r})
    err = f"; {len(errors)} failed run(s): {errors[0]}" if errors else ""
    rows: dict[str, dict[str, Any]] = {}
    for claim in claims:
        if claim.suite != "hpo" or claim.status != "measured" or claim.metric not in HPO_READINGS:
            continue
        reading, label = HPO_READINGS[claim.metric](raw), None
        if claim.evidence is not None:
            reading, label = simulated(reading, claim.evidence)
        claimed = claim.claimed_here(jobs)
        restated = (
            f"claimed {claim.claimed:g}x at the seed's {SEED_JOBS} jobs, restated for {jobs}: {claimed:.3g}x; "
            if claimed != claim.claimed
            else ""
        )
        if reading.interval is None:
            rows[claim.id] = claim_row(claim, claimed_here=claimed, reason=reading.reason + err)
            continue
        row = judged_row(
            claim,
            reading.interval,
            claimed=claimed,
            reason=restated + reading.reason + err,
            per_round=reading.per_round,
            base_value=reading.base_value,
            candidate_value=reading.candidate_value,
            label=label,
        )
        if claim.kind == "share" and row["verdict"] == Verdict.INCONCLUSIVE.value and reading.interval.n >= 3:
            needed = trials_to_decide(reading.interval.estimate, claimed, claim.tolerance)
            if needed is not None:
                row["reason"] += f"; about {needed} trials would decide it at this share"
        rows[claim.id] = row
    return rows
