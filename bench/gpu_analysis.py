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
