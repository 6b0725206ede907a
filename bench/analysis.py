"""From worker records to claim verdicts and ablation rows. Pure: no I/O, no rendering.

Every row is driven by the claim's registry fields (metric, beside, factor, product_of, kind,
status); nothing here branches on a claim's id or a role's name.

Two statements per row: the verdict at 95% per claim (``verdict``, ``ci``), and the verdict under
simultaneous 95% coverage of every claim judged with an interval in the run (``simultaneous``:
Bonferroni, each of the m intervals at ``1 - alpha/m``; bench/simultaneous.py). In a sequential run
(bench/sequential.py) the watched claims are judged at their look's level, whose alpha takes the
place of 0.05. A row's shape and the rule's judgement of one interval are bench/claim_rows.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.claim_rows import PerRound, claim_row, interval_dict, judged_row
from bench.claims import METRICS, Claim
from bench.simultaneous import add_simultaneous
from bench.stats import (
    CONFIDENCE,
    Verdict,
    check_confidence,
    interval_of,
    median,
    paired_ratios,
    product_by_round,
    rounds_interval,
)

# The families whose speed claims a sequential run watches: measured in turns, round after round.
# Memory and disk (M) are whole-process readings, not noisy, and do not hold the rounds open.
WATCHED_FAMILIES = ("validation", "training")


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


def claim_roles(claim: Claim, roles: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The (reference, measured) role names for a claim: base and candidate, or the ablation
    whose knobs are the claim's factor. None if the plan has no such role."""
    if not claim.factor:
        return "base", "candidate"
    for role in roles:
        if role.get("reference") == "base" and set(role.get("knobs", ())) == set(claim.factor):
            return "base", role["name"]
    return None


def _context(records: list[dict[str, Any]], base_role: str, cand_role: str, metric: str) -> str:
    """The numbers a reader needs beside a ratio, so a verdict cannot mislead."""
    phase = METRICS[metric].phase

    def both(key: str, fmt: str) -> str:
        b, c = phase_median(records, base_role, phase, key), phase_median(records, cand_role, phase, key)
        return f"{format(b, fmt) if b is not None else '-'} -> {format(c, fmt) if c is not None else '-'}"

    if phase == "validate":
        # Records measured in turns time the first (traced) call, not a whole first pass.
        first = (
            "first_val_call_s" if phase_median(records, base_role, phase, "first_val_call_s") else "first_val_pass_s"
        )
        return (
            f"samples/pass {both('val_samples', '.0f')}; val-loss stderr {both('val_loss_stderr', '.4f')}; "
            f"first {'call' if first == 'first_val_call_s' else 'pass'} s {both(first, '.2f')}"
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
        "measured": interval_dict(rounds_interval(ratios)) if ratios else None,
    }


def assess_speed_claim(
    claim: Claim,
    records: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    knobs: dict[str, dict[str, Any]],
    *,
    confidence: float = CONFIDENCE,
) -> tuple[dict[str, Any], PerRound]:
    """One speed-suite claim's row at ``confidence``, and its per-round ratios (for products)."""
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
        rounds_interval(ratios, confidence),
        reason=reason,
        per_round=ratios,
        confidence=confidence,
        base_value=reading["base_value"],
        candidate_value=reading["candidate_value"],
        beside=_reading(records, base_role, cand_role, claim.beside) if claim.beside else None,
    )
    return row, ratios


def assess_product(
    claim: Claim, factor_ratios: dict[str, PerRound], *, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    parts = [factor_ratios.get(p) or {} for p in claim.product_of]
    product = product_by_round(parts)
    if not product:
        return claim_row(claim, reason=f"not measured: no round measured all of {', '.join(claim.product_of)}")
    rounds = sorted(product)
    return judged_row(
        claim,
        interval_of(np.array([product[r] for r in rounds]), confidence),
        per_round=product,
        confidence=confidence,
        reason=f"product of {' x '.join(claim.product_of)} per round, over rounds {', '.join(map(str, rounds))}",
    )


def is_watched(claim: Claim) -> bool:
    """Whether a sequential run watches the claim: a measured ratio of the speed suite in the V or T
    family (a product of such factors included)."""
    return (
        claim.status == "measured"
        and claim.suite == "speed"
        and claim.kind == "ratio"
        and claim.family in WATCHED_FAMILIES
    )


def watched_claims(
    claims: list[Claim], roles: list[dict[str, Any]], base: dict[str, Any], candidate: dict[str, Any]
) -> dict[str, Claim]:
    """The claims a sequential run waits for, by id: watched (``is_watched``) and measurable in
    this plan. A claim whose factor the two paths share, or whose ablation is not run, would
    never be decided and would hold every run to its maximum; a product needs its factors."""
    out: dict[str, Claim] = {}
    for claim in sorted(claims, key=lambda c: bool(c.product_of)):
        if not is_watched(claim):
            continue
        if claim.product_of:
            if all(p in out for p in claim.product_of):
                out[claim.id] = claim
        elif not any(base[k] == candidate[k] for k in claim.factor) and claim_roles(claim, roles) is not None:
            out[claim.id] = claim
    return {c.id: out[c.id] for c in claims if c.id in out}


def watched_ratios(
    watched: dict[str, Claim], records: list[dict[str, Any]], roles: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Each watched claim's per-round ratios so far, in round order, as ``assess_claims`` judges
    them: what ``bench.sequential.decide`` takes after every round."""
    per_round: dict[str, PerRound] = {}
    for claim_id, claim in sorted(watched.items(), key=lambda item: bool(item[1].product_of)):
        if claim.product_of:
            per_round[claim_id] = product_by_round([per_round.get(p) or {} for p in claim.product_of])
            continue
        pair = claim_roles(claim, roles)
        assert claim.metric is not None and pair is not None  # watched_claims checked both
        per_round[claim_id] = role_ratios(records, *pair, claim.metric)
    return {c: np.array([ratios[r] for r in sorted(ratios)], float) for c, ratios in per_round.items()}


def round_stages(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each round's wall seconds by stage (set-up, warm-ups, validation, training, finish), in
    round order, from its first record that has them (every record of a round of turns carries
    the round's): where a run's budget went. Empty for records from before ``stages_s``."""
    by_round: dict[int, dict[str, float]] = {}
    for rec in records:
        if isinstance(rec.get("stages_s"), dict) and "round" in rec:
            by_round.setdefault(int(rec["round"]), rec["stages_s"])
    return [by_round[r] for r in sorted(by_round)]


def rounds_done(records: list[dict[str, Any]]) -> int:
    """How many distinct rounds the records hold (a round whose workers all failed counts too)."""
    return len({int(rec["round"]) for rec in records if "round" in rec})


def assess_claims(
    claims: list[Claim],
    records: list[dict[str, Any]] | None,
    roles: list[dict[str, Any]],
    base: dict[str, Any],
    candidate: dict[str, Any],
    suite_rows: dict[str, dict[str, Any]] | None = None,
    *,
    confidence: float = CONFIDENCE,
    stop: str | None = None,
    not_run: Callable[[Claim], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every claim's row, in registry order; product rows see the factors measured before them.

    Args:
        records: worker records of the speed suite, or None if it did not run.
        roles: the speed suite's roles (``Role.record()``), which name each ablation's knobs.
        base, candidate: the two paths' knobs.
        suite_rows: rows measured by other suites (the search suite), by claim id, or None.
        confidence: the level the watched claims (``is_watched``) are judged at: 0.95 for a
            fixed number of rounds, the stopping look's ``Schedule.confidence`` in a sequential
            run. Other claims are judged at 0.95.
        stop: why the speed suite's rounds stopped (``Decision.stop_note``), kept on its rows
            beside ``n``, the rounds it ran; None for a fixed number of rounds.
        not_run: the row of a measured claim this run has no reading of (bench/suites.py:
            ``not_run_row`` says how to run its suite); None: a plain "not measured".

    Returns:
        The rows; every judged row carries ``simultaneous`` (``add_simultaneous``), every
        speed-suite row ``n`` and ``stop``.
    """
    check_confidence(confidence)
    factor_ratios: dict[str, PerRound] = {}
    knobs = {"base": base, "candidate": candidate}
    ordered = sorted(claims, key=lambda c: bool(c.product_of))  # products after their factors
    rows = {}
    for claim in ordered:
        level = confidence if is_watched(claim) else CONFIDENCE
        if claim.status == "pending":
            rows[claim.id] = claim_row(claim, verdict=Verdict.PENDING.value, reason=claim.reason)
        elif claim.status == "not applicable":
            rows[claim.id] = claim_row(claim, verdict=Verdict.NOT_APPLICABLE.value, reason=claim.reason)
        elif claim.suite == "speed" and records is not None and claim.product_of:
            rows[claim.id] = assess_product(claim, factor_ratios, confidence=level)
        elif claim.suite == "speed" and records is not None:
            rows[claim.id], factor_ratios[claim.id] = assess_speed_claim(claim, records, roles, knobs, confidence=level)
        elif suite_rows is not None and claim.id in suite_rows:
            rows[claim.id] = suite_rows[claim.id]
        elif not_run is not None:
            rows[claim.id] = not_run(claim)
        else:
            rows[claim.id] = claim_row(claim, reason="not measured in this run")
        if claim.suite == "speed" and claim.status == "measured" and records is not None:
            rows[claim.id] = {**rows[claim.id], "n": rounds_done(records), "stop": stop}
    return add_simultaneous([rows[c.id] for c in claims])


def path_summary(records: list[dict[str, Any]], role: str) -> dict[str, Any]:
    """Medians over rounds of the figures shown per path (first calls, throughput, memory)."""
    keys = {
        "validate": [
            "first_val_pass_s",
            "first_val_call_s",
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
