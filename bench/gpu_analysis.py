"""The GPU suite's claim rows (S3, S3b, S3c) from a ``bench.gpu`` record (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.analysis import add_simultaneous, claim_row, judged_row
from bench.claims import Claim, load_claims
from bench.stats import median, paired_ratios, rounds_interval

GPU_READINGS = {
    "gpu_forward_speedup": "forward_s",
    "gpu_backward_speedup": "backward_s",
    "gpu_epoch_speedup": "epoch_s",
}


def gpu_claim_rows(record: dict[str, Any], claims: list[Claim] | None = None) -> list[dict[str, Any]]:
    """Rows of the GPU suite's claims from a ``bench.gpu`` record: CPU time / GPU time of one
    reading. The repeats of the two devices are independent timings, paired by index. The
    simultaneous family is the record's own judged rows."""
    rows = []
    cpu, gpu = record.get("cpu") or {}, record["gpu"]
    for claim in claims or load_claims():
        if claim.suite != "gpu" or claim.status != "measured" or claim.metric is None:
            continue
        key = GPU_READINGS[claim.metric]
        if "error" in cpu or not cpu.get(key):
            rows.append(claim_row(claim, reason=f"not measured: {cpu.get('error', 'no CPU readings')}"))
            continue
        base, cand = dict(enumerate(cpu[key])), dict(enumerate(gpu[key]))
        try:
            ratios = paired_ratios(base, cand, higher_is_better=False)
        except ValueError:
            rows.append(claim_row(claim, reason="not measured: a reading of zero (backward no slower than forward)"))
            continue
        rows.append(
            judged_row(
                claim,
                rounds_interval(ratios),
                per_round=ratios,
                base_value=median(np.array(cpu[key])),
                candidate_value=median(np.array(gpu[key])),
                unit="s",
                reason=(
                    f"backend jax; {gpu.get('device_kind')} vs {cpu.get('cores')} CPU cores of the same host; "
                    f"batch 32; {len(ratios)} independent repeats per device, paired by index"
                ),
            )
        )
    return add_simultaneous(rows)


# ---- the step against its stateless ceiling (bench.ceiling's section of the record) ----

WITHIN = 0.95  # the project's step must reach 95% of its ceiling's samples/s (issue 23)
MATMUL_SHARE = 0.5  # ... and half the same-run fp32 matmul rate at TARGET_MATMUL_BATCH
TARGET_MATMUL_BATCH = 16384
TARGET_PRECISION = "float32"


def _rate(record: dict[str, Any], precision: str) -> float:
    return record["gpu"]["matmul_flops_per_s"]["bfloat16" if precision == "mixed_bfloat16" else "float32"]


def ceiling_rows(record: dict[str, Any], part: str = "rows") -> list[dict[str, Any]]:
    """One row per (precision, batch) of the ceiling section's ``part`` (``rows`` or ``small``):
    the ceiling's and each k's median samples/s over the rounds, and the project's path (k =
    the section's ``steps_per_call``) as a share of the ceiling: the median of the rounds'
    shares (each round pairs a ceiling reading with the step's next to it), with their range;
    achieved FLOP/s (analytic FLOPs per sample x samples/s) and its share of the same-run
    matmul rate at the row's precision."""
    section = record.get("ceiling") or {}
    k = str(section.get("steps_per_call", 1))
    per_sample = record["gpu"]["flops_per_sample"]["train_step"]
    rows = []
    for row in section.get(part, []):
        ceiling = row["ceiling"]
        shares = {key: [s / c for s, c in zip(v, ceiling, strict=True)] for key, v in row["step"].items()}
        path = median(np.array(row["step"][k]))
        rows.append(
            {
                "precision": row["precision"],
                "batch": row["batch"],
                "ceiling": median(np.array(ceiling)),
                "steps": {key: median(np.array(v)) for key, v in row["step"].items()},
                "k": int(k),
                "path": path,
                "share": median(np.array(shares[k])),
                "share_range": (min(shares[k]), max(shares[k])),
                "shares": {key: median(np.array(v)) for key, v in shares.items()},
                "flops_per_s": per_sample * path,
                "matmul_share": per_sample * path / _rate(record, row["precision"]),
                "ceiling_matmul_share": per_sample * median(np.array(ceiling)) / _rate(record, row["precision"]),
            }
        )
    return rows


def ceiling_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 23's two targets, each with its figure and whether it is met: the path within 5%
    of its ceiling at every fp32 batch of the section, and >= 50% of the same-run fp32 matmul
    rate at batch 16384. A target whose row is missing is not met, and says so."""
    rows = {(r["precision"], r["batch"]): r for r in ceiling_rows(record)}
    out = []
    for (precision, batch), row in sorted(rows.items()):
        if precision != TARGET_PRECISION:
            continue
        out.append(
            {
                "target": f"step >= {WITHIN:.0%} of its ceiling, {precision} batch {batch}",
                "value": row["share"],
                "met": row["share"] >= WITHIN,
            }
        )
    row = rows.get((TARGET_PRECISION, TARGET_MATMUL_BATCH))
    out.append(
        {
            "target": f">= {MATMUL_SHARE:.0%} of the same-run matmul rate, {TARGET_PRECISION} batch {TARGET_MATMUL_BATCH}",
            "value": row["matmul_share"] if row else None,
            "met": bool(row and row["matmul_share"] >= MATMUL_SHARE),
        }
    )
    return out
