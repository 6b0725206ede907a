"""Cores by CPU affinity: every path trained and validated pinned to 1, 2, 4, ... cores (S2).

Each job is a fresh worker pinned to its first k usable cores (``os.sched_setaffinity``) with
the framework's thread pools set to k before it loads (TF_NUM_INTRAOP_THREADS, OMP_NUM_THREADS;
the record's environment shows what the framework then used). Rounds interleave every path
and core count in a new random order. Pure analysis below the plan; no rendering.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.analysis import claim_row, interval_dict, judged_row, metric_rounds, role_ratios
from bench.claims import Claim
from bench.runner import Role
from bench.stats import interval_of, median
from diffusion.paths import TrainingPath

SCALING_METRICS = ("train_samples_per_s", "val_pass_s")


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


def scaling_table(records: list[dict[str, Any]], paths: list[str], counts: list[int]) -> list[dict[str, Any]]:
    """Per path and core count: medians, speedup over 1 core paired by round, and parallel
    efficiency (speedup / cores)."""
    rows = []
    for path in paths:
        one = role_name(path, counts[0])
        for k in counts:
            name = role_name(path, k)
            row: dict[str, Any] = {"path": path, "cores": k, "role": name}
            for metric in SCALING_METRICS:
                values = metric_rounds(records, name, metric)
                ratios = role_ratios(records, one, name, metric)
                speedup = interval_of(np.array(list(ratios.values()))) if ratios else None
                row[metric] = median(np.array(list(values.values()))) if values else None
                row[f"{metric}_speedup"] = interval_dict(speedup)
                row[f"{metric}_efficiency"] = speedup.estimate / (k / counts[0]) if speedup else None
            rows.append(row)
    return rows


def s2_row(claim: Claim, records: list[dict[str, Any]], path: str, counts: list[int]) -> dict[str, Any]:
    """Final training at the most cores against half as many (the report: 8 vs 4), paired by
    round; on a 2-core machine that is 2 vs 1, and the row says so."""
    if len(counts) < 2:
        return claim_row(claim, reason="not measured: this machine has one usable core")
    high = counts[-1]
    low = high // 2 if high // 2 in counts else counts[-2]
    ratios = role_ratios(records, role_name(path, low), role_name(path, high), "train_samples_per_s")
    if not ratios:
        return claim_row(claim, reason=f"not measured: no round measured {path} at both {low} and {high} cores")
    base = metric_rounds(records, role_name(path, low), "train_samples_per_s")
    cand = metric_rounds(records, role_name(path, high), "train_samples_per_s")
    return judged_row(
        claim,
        interval_of(np.array(list(ratios.values()))),
        per_round=ratios,
        base_value=median(np.array(list(base.values()))),
        candidate_value=median(np.array(list(cand.values()))),
        unit="/s",
        reason=(
            f"{path} training samples/s at {high} vs {low} cores by CPU affinity (not 8 vs 4: this machine has "
            f"{counts[-1]}); thread pools set to the cores; S1, the search on more cores, is the search suite's row"
        ),
    )


def scaling_rows(raw: dict[str, Any], claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """Rows of the scaling suite's claims, by claim id (the final training is the candidate's)."""
    return {
        claim.id: s2_row(claim, raw["records"], raw["paths"][-1], raw["counts"])
        for claim in claims
        if claim.suite == "scaling" and claim.status == "measured"
    }
