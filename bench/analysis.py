"""From worker records to claim verdicts and ablation rows. Pure: no I/O, no rendering."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.claims import METRICS, Claim
from bench.stats import Interval, Verdict, interval_of, median, verdict


def metric_rounds(records: list[dict[str, Any]], role: str, metric: str) -> dict[int, float]:
    """Value of a metric for a role, per round (rounds whose worker failed are absent)."""
    phase, _ = METRICS[metric]
    out = {}
    for rec in records:
        if rec.get("role") != role or "error" in rec:
            continue
        if phase == "disk":
            if "disk" in rec:
                out[rec["round"]] = float(rec["disk"][metric])
            continue
        data = rec.get("phases", {}).get(phase)
        if data is None:
            continue
        key = "peak_rss_mib" if metric.endswith("_peak_rss_mib") else metric
        out[rec["round"]] = float(data[key])
    return out


def phase_median(records: list[dict[str, Any]], role: str, phase: str, key: str) -> float | None:
    values = [
        rec["phases"][phase][key]
        for rec in records
        if rec.get("role") == role and "error" not in rec and phase in rec.get("phases", {})
    ]
    values = [v for v in values if v is not None]
    return median(np.array(values)) if values else None


def paired_ratios(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> np.ndarray:
    """Per-round "times better" ratios of candidate over base, paired by round."""
    _, higher_is_better = METRICS[metric]
    base, cand = metric_rounds(records, base_role, metric), metric_rounds(records, cand_role, metric)
    rounds = sorted(set(base) & set(cand))
    b = np.array([base[r] for r in rounds])
    c = np.array([cand[r] for r in rounds])
    if np.any(b <= 0) or np.any(c <= 0):
        return np.array([])
    return c / b if higher_is_better else b / c


def worker_errors(records: list[dict[str, Any]], *roles: str) -> list[str]:
    return sorted({rec["error"] for rec in records if rec.get("role") in roles and "error" in rec})


def interval_dict(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high, "n": interval.n}


def claim_roles(claim: Claim) -> tuple[str, str]:
    if claim.factor:
        return "base", "base+" + "+".join(claim.factor)
    return "base", "candidate"


def _context(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> str:
    """The numbers a reader needs beside a ratio, so a verdict cannot mislead."""
    phase, _ = METRICS[metric]

    def both(key: str, fmt: str) -> str:
        b, c = phase_median(records, base_role, phase, key), phase_median(records, cand_role, phase, key)
        return f"{format(b, fmt) if b is not None else '-'} -> {format(c, fmt) if c is not None else '-'}"

    if phase == "validate":
        return (
            f"samples/pass {both('val_samples', '.0f')}; samples/s {both('val_samples_per_s', '.0f')}; "
            f"val-loss stderr {both('val_loss_stderr', '.4f')}; first pass s {both('first_val_pass_s', '.2f')}"
        )
    if phase == "train":
        return (
            f"input-wait share {both('input_wait_share', '.2f')}; first step s {both('first_step_s', '.2f')}; "
            f"cores busy {both('cores_busy', '.2f')}"
        )
    return "measured once: deterministic for a preset"


def assess_claim(
    claim: Claim,
    records: list[dict[str, Any]],
    factor_ratios: dict[str, np.ndarray],
    shared: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """One claim's row: values, measured ratio with CI, verdict, and the reason."""
    row = claim_row(claim)
    if claim.status == "pending":
        return {**row, "verdict": Verdict.PENDING.value, "reason": claim.reason}
    if claim.product_of:
        parts = [factor_ratios.get(p) for p in claim.product_of]
        if any(p is None or len(p) == 0 for p in parts):
            return {**row, "reason": f"not measured: a factor of {'x'.join(claim.product_of)} was not measured"}
        n = min(len(p) for p in parts)
        ratios = np.prod(np.vstack([p[:n] for p in parts]), axis=0)
        interval = interval_of(ratios, seed=seed)
        return {
            **row,
            "measured": interval_dict(interval),
            "ci": [interval.low, interval.high],
            "verdict": verdict(interval, claim.claimed, claim.tolerance).value,
            "rounds": n,
            "reason": f"product of measured factors {', '.join(claim.product_of)}; compare the whole (V1) above",
        }
    same = [k for k in claim.factor if shared["base"][k] == shared["candidate"][k]]
    if same:
        knobs = ", ".join(f"{k}={shared['base'][k]}" for k in same)
        return {**row, "reason": f"not measured: base and candidate share {knobs}"}
    base_role, cand_role = claim_roles(claim)
    errors = worker_errors(records, base_role, cand_role)
    ratios = paired_ratios(records, base_role, cand_role, claim.metric)
    factor_ratios[claim.id] = ratios
    if len(ratios) == 0:
        planned = any(rec.get("role") == cand_role for rec in records)
        why = errors[0] if errors else ("no paired rounds" if planned else "its ablation was not run (--no-ablations)")
        return {**row, "reason": f"not measured: {why}"}
    interval = interval_of(ratios, seed=seed)
    base_vals = metric_rounds(records, base_role, claim.metric)
    cand_vals = metric_rounds(records, cand_role, claim.metric)
    reason = _context(records, base_role, cand_role, claim.metric)
    if claim.note:
        reason = f"{claim.note}; {reason}"
    if errors:
        reason += f"; {len(errors)} worker failure(s): {errors[0]}"
    return {
        **row,
        "base_value": median(np.array(list(base_vals.values()))),
        "candidate_value": median(np.array(list(cand_vals.values()))),
        "measured": interval_dict(interval),
        "ci": [interval.low, interval.high],
        "verdict": verdict(interval, claim.claimed, claim.tolerance).value,
        "reason": reason,
        "rounds": len(ratios),
    }


def assess_claims(
    claims: list[Claim],
    records: list[dict[str, Any]] | None,
    base: dict[str, Any],
    candidate: dict[str, Any],
    seed: int = 0,
    suite_rows: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every claim's row, in registry order; product rows see the factors measured before them.

    Args:
        records: worker records of the speed suite, or None if it did not run.
        suite_rows: rows measured by other suites (the search suite), by claim id, or None.
    """
    factor_ratios: dict[str, np.ndarray] = {}
    shared = {"base": base, "candidate": candidate}
    ordered = sorted(claims, key=lambda c: bool(c.product_of))  # products after their factors
    rows = {}
    for claim in ordered:
        if claim.status == "pending":
            rows[claim.id] = assess_claim(claim, [], factor_ratios, shared, seed)
        elif claim.suite == "speed" and records is not None:
            rows[claim.id] = assess_claim(claim, records, factor_ratios, shared, seed)
        elif suite_rows is not None and claim.id in suite_rows:
            rows[claim.id] = suite_rows[claim.id]
        else:
            rows[claim.id] = not_run_row(claim)
    return [rows[c.id] for c in claims]


def claim_row(claim: Claim, **values: Any) -> dict[str, Any]:
    """A claim's row with nothing measured yet; ``values`` fill in what was."""
    row: dict[str, Any] = {
        "id": claim.id,
        "family": claim.family,
        "text": claim.text,
        "claimed": claim.claimed,
        "claimed_alt": claim.alt,
        "claimed_neu": claim.neu,
        "tolerance": claim.tolerance,
        "metric": claim.metric,
        "base_value": None,
        "candidate_value": None,
        "measured": None,
        "ci": None,
        "verdict": Verdict.NOT_MEASURED.value,
        "reason": "",
        "rounds": 0,
    }
    return {**row, **values}


def not_run_row(claim: Claim) -> dict[str, Any]:
    return claim_row(claim, reason=f"not measured in this run: add --suite {claim.suite} (or all)")


ABLATION_METRIC = {"train": "train_samples_per_s", "validate": "val_pass_s"}


def ablation_rows(records: list[dict[str, Any]], roles: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """For each ablation role: its phase's metric against its reference (base or candidate)."""
    rows = []
    for role in roles:
        name, reference = role["name"], role["reference"]
        if reference is None:
            continue
        for phase in role["phases"]:
            metric = ABLATION_METRIC[phase]
            ratios = paired_ratios(records, reference, name, metric)
            interval = interval_of(ratios, seed=seed) if len(ratios) else None
            errors = worker_errors(records, name)
            rows.append(
                {
                    "role": name,
                    "spec": role["spec"],
                    "knobs": role["knobs"],
                    "phase": phase,
                    "metric": metric,
                    "reference": reference,
                    "reference_value": phase_median(records, reference, phase, metric),
                    "value": phase_median(records, name, phase, metric),
                    "ratio": interval_dict(interval),
                    "first_call_s": phase_median(
                        records, name, phase, "first_step_s" if phase == "train" else "first_val_pass_s"
                    ),
                    "samples_per_s": phase_median(
                        records, name, phase, "train_samples_per_s" if phase == "train" else "val_samples_per_s"
                    ),
                    "val_loss_stderr": phase_median(records, name, phase, "val_loss_stderr")
                    if phase == "validate"
                    else None,
                    "input_wait_share": phase_median(records, name, phase, "input_wait_share")
                    if phase == "train"
                    else None,
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
