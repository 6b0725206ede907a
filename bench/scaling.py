"""Cores by CPU affinity: every path trained and validated pinned to 1, 2, 4, ... cores (S2).

Each job is a fresh worker pinned to its first k usable cores (``os.sched_setaffinity``) with
the framework's thread pools set to k before it loads (TF_NUM_INTRAOP_THREADS, OMP_NUM_THREADS,
PJRT_NPROC for XLA's CPU client: bench/worker.py). Each record says what the worker then used:
CPU seconds per wall second of every phase, and its threads by name at the end. Rounds
interleave every path and core count in a new random order. Pure analysis below the plan; no
rendering.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.analysis import claim_row, interval_dict, judged_row, metric_rounds, phase_median, role_ratios
from bench.claims import Claim
from bench.roles import Role
from bench.stats import median, rounds_interval
from diffusion.paths import TrainingPath

TABLE_METRICS = ("train_samples_per_s", "val_pass_s")  # the worker-record readings of the scaling table
# The suite's claim readings: what each metric of claims.toml compares between core counts.
SCALING_READINGS = {"scaling_train_speedup": "train_samples_per_s"}
# The report's S1 and S2 compare 8 cores with 4.
REPORT_CORES = (4, 8)
# How XLA's CPU client names its Eigen pool's threads (``tf_XLAEigen`` on JAX 0.11): one per core
# it was given, which is how a record shows the pool a pinned worker got.
XLA_POOL_THREAD = "XLAEigen"


def core_counts(usable: int) -> list[int]:
    """1, 2, 4, ... up to the usable cores, and the usable count itself if not a power of 2."""
    counts, k = [], 1
    while k <= usable:
        counts.append(k)
        k *= 2
    return counts if counts[-1] == usable else [*counts, usable]


def role_name(path: str, cores: int) -> str:
    return f"{path}@{cores}core{'s' if cores > 1 else ''}"


def scaling_roles(paths: dict[str, TrainingPath], counts: list[int]) -> list[Role]:
    """One role per path and core count; each measures validation and training."""
    return [
        Role(role_name(name, k), path, ("validate", "train"), cpus=k) for name, path in paths.items() for k in counts
    ]


def counts_of(roles: tuple[Role, ...]) -> tuple[list[str], list[int]]:
    """The path specs and core counts of ``scaling_roles``'s roles, in their order."""
    return list(dict.fromkeys(r.spec for r in roles)), list(dict.fromkeys(r.cpus or 0 for r in roles))


def thread_medians(records: list[dict[str, Any]], role: str) -> dict[str, float | None]:
    """Median over a role's workers of its thread count at the end, and of the threads of XLA's
    CPU pool among them (``XLA_POOL_THREAD``; none under TensorFlow)."""
    census = [rec["threads"] for rec in records if rec.get("role") == role and isinstance(rec.get("threads"), dict)]
    counts = [c["count"] for c in census if c.get("count")]
    pools = [sum(n for name, n in c["by_name"].items() if XLA_POOL_THREAD in name) for c in census if c.get("by_name")]
    return {
        "threads": median(np.array(counts, dtype=float)) if counts else None,
        "xla_pool_threads": median(np.array(pools, dtype=float)) if pools else None,
    }


def scaling_table(records: list[dict[str, Any]], paths: list[str], counts: list[int]) -> list[dict[str, Any]]:
    """Per path and core count: medians, speedup over 1 core paired by round, parallel
    efficiency (speedup / cores), and what the pinned workers used: cores busy (CPU seconds per
    wall second of the whole phase, first call included) and threads."""
    rows = []
    for path in paths:
        one = role_name(path, counts[0])
        for k in counts:
            name = role_name(path, k)
            row: dict[str, Any] = {"path": path, "cores": k, "role": name}
            for metric in TABLE_METRICS:
                values = metric_rounds(records, name, metric)
                ratios = role_ratios(records, one, name, metric)
                speedup = rounds_interval(ratios) if ratios else None
                row[metric] = median(np.array(list(values.values()))) if values else None
                row[f"{metric}_speedup"] = interval_dict(speedup)
                row[f"{metric}_efficiency"] = speedup.estimate / (k / counts[0]) if speedup else None
            row["train_cores_busy"] = phase_median(records, name, "train", "cores_busy")
            row["val_cores_busy"] = phase_median(records, name, "validate", "cores_busy")
            rows.append({**row, **thread_medians(records, name)})
    return rows


def compared_cores(counts: list[int]) -> tuple[int, int] | None:
    """The core counts S1 and S2 compare: the report's 4 and 8 where the machine has both, else
    the most cores against half as many (or the next count below); None on one core."""
    if len(counts) < 2:
        return None
    if all(k in counts for k in REPORT_CORES):
        return REPORT_CORES
    high = counts[-1]
    return (high // 2 if high // 2 in counts else counts[-2]), high


def s2_row(claim: Claim, records: list[dict[str, Any]], path: str, counts: list[int]) -> dict[str, Any]:
    """Final training at 8 against 4 cores as the report states it, paired by round; on a
    machine with fewer cores the most against half as many (2 vs 1 on 2 cores), and the row
    says so."""
    pair = compared_cores(counts)
    if pair is None:
        return claim_row(claim, reason="not measured: this machine has one usable core")
    low, high = pair
    as_stated = "as the report states it" if pair == REPORT_CORES else f"not 8 vs 4: this machine has {counts[-1]}"
    metric = SCALING_READINGS[claim.metric or ""]
    ratios = role_ratios(records, role_name(path, low), role_name(path, high), metric)
    if not ratios:
        return claim_row(claim, reason=f"not measured: no round measured {path} at both {low} and {high} cores")
    base = metric_rounds(records, role_name(path, low), metric)
    cand = metric_rounds(records, role_name(path, high), metric)
    return judged_row(
        claim,
        rounds_interval(ratios),
        per_round=ratios,
        base_value=median(np.array(list(base.values()))),
        candidate_value=median(np.array(list(cand.values()))),
        unit="/s",
        reason=(
            f"{path} training samples/s at {high} vs {low} cores by CPU affinity ({as_stated}); thread pools set "
            f"to the cores; S1, the search on more cores, is the search suite's row"
        ),
    )


def search_cores_row(claim: Claim, counts: list[int]) -> dict[str, Any]:
    """S1 (the search on 8 vs 4 cores) as the scaling suite sees it: not measured, and why. The
    search suite's own row, where it ran, replaces this one (bench.compare merges it last)."""
    pair = compared_cores(counts)
    cores = f"{pair[1]} vs {pair[0]}" if pair else "more vs fewer"
    return claim_row(
        claim,
        reason=(
            f"not measured at {cores} cores: the scaling suite times one training worker at a time per core "
            f"count (S2), never a search's trials side by side; the search suite (--suite hpo) measures S1, "
            f"as 1 core against its parallel workers, and did not run here"
        ),
    )


def scaling_rows(raw: dict[str, Any], claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """Rows of the scaling suite's claims, by claim id (the final training is the candidate's),
    and S1's (the search on more cores) saying why this suite does not measure it."""
    rows = {
        claim.id: s2_row(claim, raw["records"], raw["paths"][-1], raw["counts"])
        for claim in claims
        if claim.suite == "scaling" and claim.status == "measured"
    }
    for claim in claims:
        if claim.metric == "hpo_core_speedup" and claim.status == "measured":
            rows[claim.id] = search_cores_row(claim, raw["counts"])
    return rows
