"""From worker records to claim verdicts and ablation rows. Pure: no I/O, no rendering.

Every row is driven by the claim's registry fields (metric, beside, factor, product_of, kind,
status); nothing here branches on a claim's id or a role's name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.claims import METRICS, SUITE_HINTS, Claim, load_claims
from bench.stats import (
    Interval,
    Verdict,
    claim_band,
    interval_of,
    median,
    paired_ratios,
    product_by_round,
    verdict,
    verdict_reason,
)

PerRound = dict[int, float]


def metric_rounds(records: list[dict[str, Any]], role: str, metric: str) -> PerRound:
    """Value of a metric for a role, per round id (rounds whose worker failed are absent)."""
    spec = METRICS[metric]
    out = {}
    for rec in records:
        if rec.get("role") != role or "error" in rec:
            continue
        data = rec.get("disk") if spec.phase == "disk" else rec.get("phases", {}).get(spec.phase)
        if data is not None and data.get(spec.key) is not None and all(k in data for k in spec.requires):
            out[int(rec["round"])] = float(data[spec.key])
    return out


def phase_median(records: list[dict[str, Any]], role: str, phase: str, key: str) -> float | None:
    # .get: a record measured in turns has no memory or CPU figures.
    values = [
        rec["phases"][phase].get(key)
        for rec in records
        if rec.get("role") == role and "error" not in rec and phase in rec.get("phases", {})
    ]
    values = [v for v in values if v is not None]
    return median(np.array(values)) if values else None


def role_ratios(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> PerRound:
    """Per-round "times better" ratios of one role over another, paired by round id."""
    base, cand = metric_rounds(records, base_role, metric), metric_rounds(records, cand_role, metric)
    try:
        return paired_ratios(base, cand, higher_is_better=METRICS[metric].higher_is_better)
    except ValueError:  # a zero or negative reading (e.g. no growth) has no ratio
        return {}


def worker_errors(records: list[dict[str, Any]], *roles: str) -> list[str]:
    """The distinct error messages of the roles' failed workers (three identical failures: one)."""
    return sorted({rec["error"] for rec in records if rec.get("role") in roles and "error" in rec})


def failed_workers(records: list[dict[str, Any]], *roles: str) -> int:
    """How many of the roles' workers failed (each failed worker once, though messages repeat)."""
    return sum(1 for rec in records if rec.get("role") in roles and "error" in rec)


def interval_dict(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "n": interval.n}


def claim_roles(claim: Claim, roles: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The (reference, measured) role names for a claim: base and candidate, or the ablation
    whose knobs are the claim's factor. None if the plan has no such role."""
    if not claim.factor:
        return "base", "candidate"
    for role in roles:
        if role.get("reference") == "base" and set(role.get("knobs", ())) == set(claim.factor):
            return "base", role["name"]
    return None


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
    **values: Any,
) -> dict[str, Any]:
    """A measured claim's row: the interval, the verdict under the rule, and why."""
    claimed = claim.claimed if claimed is None else claimed
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
        verdict=f"{result.value} (exact)" if claim.kind == "exact" else result.value,
        reason="; ".join(reasons),
        rounds=interval.n,
        **values,
    )


def _context(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> str:
    """The numbers a reader needs beside a ratio, so a verdict cannot mislead."""
    phase = METRICS[metric].phase

    def both(key: str, fmt: str) -> str:
        b, c = phase_median(records, base_role, phase, key), phase_median(records, cand_role, phase, key)
        return f"{format(b, fmt) if b is not None else '-'} -> {format(c, fmt) if c is not None else '-'}"

    if phase == "validate":
        return (
            f"samples/pass {both('val_samples', '.0f')}; val-loss stderr {both('val_loss_stderr', '.4f')}; "
            f"first pass s {both('first_val_pass_s', '.2f')}"
        )
    if phase == "train":
        return (
            f"input-wait share {both('input_wait_share', '.2f')}; first step s {both('first_step_s', '.2f')}; "
            f"cores busy {both('cores_busy', '.2f')}"
        )
    return "measured once: deterministic for a preset"


def _reading(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> dict[str, Any]:
    """Medians and the paired interval of one metric, for the reading shown beside a verdict."""
    base, cand = metric_rounds(records, base_role, metric), metric_rounds(records, cand_role, metric)
    ratios = role_ratios(records, base_role, cand_role, metric)
    return {
        "metric": metric,
        "unit": METRICS[metric].unit,
        "base_value": median(np.array(list(base.values()))) if base else None,
        "candidate_value": median(np.array(list(cand.values()))) if cand else None,
        "measured": interval_dict(interval_of(np.array(list(ratios.values())))) if ratios else None,
    }


def assess_speed_claim(
    claim: Claim,
    records: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    knobs: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], PerRound]:
    """One speed-suite claim's row, and its per-round ratios (for products)."""
    assert claim.metric is not None  # validated by Claim for measured speed claims
    same = [k for k in claim.factor if knobs["base"][k] == knobs["candidate"][k]]
    if same:
        shared = ", ".join(f"{k}={knobs['base'][k]}" for k in same)
        return claim_row(claim, reason=f"not measured: base and candidate share {shared}"), {}
    pair = claim_roles(claim, roles)
    if pair is None:
        return claim_row(claim, reason="not measured: its ablation was not run (--no-ablations)"), {}
    base_role, cand_role = pair
    errors = worker_errors(records, base_role, cand_role)
    ratios = role_ratios(records, base_role, cand_role, claim.metric)
    if not ratios:
        requires = METRICS[claim.metric].requires
        if errors:
            why = errors[0]
        elif requires:
            why = f"no paired rounds whose records carry {', '.join(requires)} (older records lack it)"
        else:
            why = "no paired rounds with a positive reading"
        return claim_row(claim, reason=f"not measured: {why}"), {}
    reading = _reading(records, base_role, cand_role, claim.metric)
    reason = _context(records, base_role, cand_role, claim.metric)
    if errors:
        reason += f"; {len(errors)} worker failure(s): {errors[0]}"
    row = judged_row(
        claim,
        interval_of(np.array(list(ratios.values()))),
        reason=reason,
        per_round=ratios,
        base_value=reading["base_value"],
        candidate_value=reading["candidate_value"],
        beside=_reading(records, base_role, cand_role, claim.beside) if claim.beside else None,
    )
    return row, ratios


def assess_product(claim: Claim, factor_ratios: dict[str, PerRound]) -> dict[str, Any]:
    parts = [factor_ratios.get(p) or {} for p in claim.product_of]
    product = product_by_round(parts)
    if not product:
        return claim_row(claim, reason=f"not measured: no round measured all of {', '.join(claim.product_of)}")
    rounds = sorted(product)
    return judged_row(
        claim,
        interval_of(np.array([product[r] for r in rounds])),
        per_round=product,
        reason=f"product of {' x '.join(claim.product_of)} per round, over rounds {', '.join(map(str, rounds))}",
    )


def assess_claims(
    claims: list[Claim],
    records: list[dict[str, Any]] | None,
    roles: list[dict[str, Any]],
    base: dict[str, Any],
    candidate: dict[str, Any],
    suite_rows: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every claim's row, in registry order; product rows see the factors measured before them.

    Args:
        records: worker records of the speed suite, or None if it did not run.
        roles: the speed suite's roles (``Role.record()``), which name each ablation's knobs.
        base, candidate: the two paths' knobs.
        suite_rows: rows measured by other suites (the search suite), by claim id, or None.
    """
    factor_ratios: dict[str, PerRound] = {}
    knobs = {"base": base, "candidate": candidate}
    ordered = sorted(claims, key=lambda c: bool(c.product_of))  # products after their factors
    rows = {}
    for claim in ordered:
        if claim.status == "pending":
            rows[claim.id] = claim_row(claim, verdict=Verdict.PENDING.value, reason=claim.reason)
        elif claim.status == "not applicable":
            rows[claim.id] = claim_row(claim, verdict=Verdict.NOT_APPLICABLE.value, reason=claim.reason)
        elif claim.suite == "speed" and records is not None and claim.product_of:
            rows[claim.id] = assess_product(claim, factor_ratios)
        elif claim.suite == "speed" and records is not None:
            rows[claim.id], factor_ratios[claim.id] = assess_speed_claim(claim, records, roles, knobs)
        elif suite_rows is not None and claim.id in suite_rows:
            rows[claim.id] = suite_rows[claim.id]
        elif claim.suite == "gpu":  # no GPU in this run: the row waits for a GPU record
            rows[claim.id] = claim_row(claim, verdict=Verdict.PENDING.value, reason=SUITE_HINTS["gpu"])
        else:
            rows[claim.id] = claim_row(claim, reason=f"not measured in this run: {SUITE_HINTS[claim.suite]}")
    return [rows[c.id] for c in claims]


def ablation_metric(phase: str) -> str:
    return {"train": "train_samples_per_s", "validate": "val_pass_s"}[phase]


def ablation_rows(records: list[dict[str, Any]], roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each ablation role: its phase's metric against its reference role, paired by round."""
    rows = []
    for role in roles:
        name, reference = role["name"], role["reference"]
        if reference is None:
            continue
        for phase in role["phases"]:
            metric = ablation_metric(phase)
            ratios = role_ratios(records, reference, name, metric)
            interval = interval_of(np.array(list(ratios.values()))) if ratios else None
            errors = worker_errors(records, name)
            train = phase == "train"
            rows.append(
                {
                    "role": name,
                    "spec": role["spec"],
                    "knobs": role["knobs"],
                    "phase": phase,
                    "metric": metric,
                    "unit": METRICS[metric].unit,
                    "reference": reference,
                    "reference_value": phase_median(records, reference, phase, metric),
                    "value": phase_median(records, name, phase, metric),
                    "ratio": interval_dict(interval),
                    "first_call_s": phase_median(records, name, phase, "first_step_s" if train else "first_val_pass_s"),
                    "samples_per_s": phase_median(
                        records, name, phase, "train_samples_per_s" if train else "val_samples_per_s"
                    ),
                    "val_loss_stderr": None if train else phase_median(records, name, phase, "val_loss_stderr"),
                    "input_wait_share": phase_median(records, name, phase, "input_wait_share") if train else None,
                    "note": f"not measured: {errors[0]}" if interval is None and errors else "",
                }
            )
    return rows


def path_summary(records: list[dict[str, Any]], role: str) -> dict[str, Any]:
    """Medians over rounds of the figures shown per path (first calls, throughput, memory)."""
    keys = {
        "validate": [
            "first_val_pass_s",
            "val_pass_s",
            "val_samples",
            "val_samples_per_s",
            "val_loss",
            "val_loss_stderr",
            "peak_rss_mib",
            "rss_growth_mib",
            "cores_busy",
        ],
        "train": [
            "first_step_s",
            "train_samples_per_s",
            "input_wait_share",
            "step_ms_median",
            "peak_rss_mib",
            "rss_growth_mib",
            "cores_busy",
        ],
    }
    out = {phase: {k: phase_median(records, role, phase, k) for k in ks} for phase, ks in keys.items()}
    disk = [rec["disk"] for rec in records if rec.get("role") == role and "disk" in rec]
    out["disk"] = disk[0] if disk else None
    return out


GPU_READINGS = {
    "gpu_forward_speedup": "forward_s",
    "gpu_backward_speedup": "backward_s",
    "gpu_epoch_speedup": "epoch_s",
}


def gpu_claim_rows(record: dict[str, Any], claims: list[Claim] | None = None) -> list[dict[str, Any]]:
    """Rows of the GPU suite's claims from a ``bench.gpu`` record: CPU time / GPU time of one
    reading. The repeats of the two devices are independent timings, paired by index."""
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
                interval_of(np.array(list(ratios.values()))),
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
    return rows
