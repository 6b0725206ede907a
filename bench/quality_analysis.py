"""The quality suite's analysis (bench/quality.py measures): pure functions of its raw record,
from per-seed metric values to the rows of the Q, P, W, H4 and C1 claims."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


def _verify(rec: dict[str, Any]) -> dict[str, Any]:
    return rec["verify"]["record"]


def _phases(rec: dict[str, Any]) -> float:
    """Search + final training + verification. The verification counts what it costs a user
    (generating the model's events, the PMT selection), not this tool's simulated ceiling."""
    return rec["search"]["wall_s"] + rec["train"]["wall_s"] + _verify(rec)["model_s"]


@dataclass(frozen=True)
class QualityReading:
    """How one registry metric reads from a recipe's round.

    Attributes:
        read: the value from one recipe's round record.
        higher_is_better: ratios are "times better for the candidate": candidate / base when
            higher is better, base / candidate otherwise.
        phases: the phases that must have finished for the value to exist (a final model's
            quality needs its training and verification; a tuned recipe's training needs its
            search).
        timed: the value is a time, which a run of several jobs at once does not measure.
    """

    read: Callable[[dict[str, Any]], float]
    higher_is_better: bool
    phases: tuple[str, ...] = ("train", "verify")
    timed: bool = False


QUALITY_READINGS: dict[str, QualityReading] = {
    "quality_val_loss": QualityReading(lambda r: _verify(r)["metrics"]["val_loss"]["generated"], False),
    "quality_fidelity": QualityReading(lambda r: _verify(r)["metrics"]["fidelity"]["generated"], True),
    "quality_physics_score": QualityReading(lambda r: _verify(r)["metrics"]["physics_score"]["generated"], True),
    "quality_multiplicity": QualityReading(lambda r: _verify(r)["metrics"]["multiplicity_success"]["generated"], True),
    "quality_energy_violation": QualityReading(lambda r: _verify(r)["metrics"]["energy_violation"]["generated"], False),
    "selection_detection_rate": QualityReading(
        lambda r: _verify(r)["selection"]["detection_rate"]["shapley_generated"], True
    ),
    "selection_time": QualityReading(lambda r: _verify(r)["selection"]["selection_s"], False, timed=True),
    "workflow_time_to_best": QualityReading(_phases, False, ("search", "train", "verify"), timed=True),
    "workflow_final_training": QualityReading(lambda r: r["train"]["wall_s"], False, ("train",), timed=True),
    "workflow_validation": QualityReading(
        lambda r: sum(h["val_pass_s"] for h in r["train"]["summary"]["history"]), False, ("train",), timed=True
    ),
    "cost_cpu_s": QualityReading(
        lambda r: r["search"]["cpu_s"] + r["train"]["cpu_s"], False, ("search", "train"), timed=True
    ),
}
# Why no time reads from a run of several jobs at once (bench/quality.py, QualityPlan.concurrent).
NOT_TIMED = "{n} jobs ran at once (--quality-concurrent {n}), so no job's time is its own"


def missing_roles(raw: dict[str, Any]) -> list[str]:
    """The recipes a run left out (``--quality-roles``; records before the knob ran both)."""
    kept = raw.get("plan", {}).get("roles", ["base", "candidate"])
    return [role for role in ("base", "candidate") if role not in kept]


def concurrent_jobs(raw: dict[str, Any]) -> int:
    """How many jobs the run had at once (records before the knob ran one at a time)."""
    return int(raw.get("plan", {}).get("concurrent", 1))


SHARE_READINGS = ("selection_overlap",)


def recipe_values(raw: dict[str, Any], metric: str) -> dict[str, dict[int, float]]:
    """Per role, the metric per seed, for rounds where the phases it needs finished."""
    reading = QUALITY_READINGS[metric]
    out: dict[str, dict[int, float]] = {"base": {}, "candidate": {}}
    for rnd in raw["rounds"]:
        for role, rec in rnd["recipes"].items():
            if any("error" in rec[phase] for phase in reading.phases):
                continue
            value = reading.read(rec)
            if value is not None and np.isfinite(value):
                out[role][rnd["seed"]] = float(value)
    return out


def quality_reading(raw: dict[str, Any], metric: str) -> Any:
    """The paired per-seed ratios of a metric and their interval, or why there are none.

    A seed where a recipe scored 0 has no ratio: it is left out, and the reason says so (a
    verdict still needs 3 seeds with ratios).
    """
    from bench.reading import Reading
    from bench.stats import paired_ratios, rounds_interval

    if metric in SHARE_READINGS:
        return overlap_reading(raw)
    if missing_roles(raw):
        return Reading(None, f"no ratio: the {' and '.join(missing_roles(raw))} recipe was not run (--quality-roles)")
    if QUALITY_READINGS[metric].timed and concurrent_jobs(raw) > 1:
        return Reading(None, NOT_TIMED.format(n=concurrent_jobs(raw)))
    values = recipe_values(raw, metric)
    base, cand = values["base"], values["candidate"]
    both = sorted(set(base) & set(cand))
    zero = [s for s in both if base[s] <= 0 or cand[s] <= 0]
    kept = {s: base[s] for s in both if s not in zero}, {s: cand[s] for s in both if s not in zero}
    notes = [f"seed(s) {zero} left out: a recipe scored 0 there, which has no ratio"] if zero else []
    ratios = paired_ratios(*kept, higher_is_better=QUALITY_READINGS[metric].higher_is_better)
    if not ratios:
        return Reading(None, "; ".join([*notes, "no seed where both recipes have a positive value"]))
    notes.append(f"{len(ratios)} seeds, paired; base {_median(base):.4g}, candidate {_median(cand):.4g} (medians)")
    return Reading(rounds_interval(ratios), "; ".join(notes), _median(base), _median(cand), ratios)


def overlap_reading(raw: dict[str, Any]) -> Any:
    """P3: the share of the candidate model's top-n PMTs that two independent Shapley runs
    share, one value per seed, with a Student-t interval over seeds (clipped to [0, 1]): the
    PMTs of one run are not independent trials, the seeds are."""
    from scipy import stats as scipy_stats

    from bench.reading import Reading
    from bench.stats import CONFIDENCE, Interval

    per_seed: dict[int, float] = {}
    top = chance = None
    for rnd in raw["rounds"]:
        rec = rnd["recipes"]["candidate"]
        sel = (rec["verify"].get("record") or {}).get("selection")
        if "error" in rec["verify"] or not sel:
            continue
        per_seed[rnd["seed"]] = sel["top_overlap"]
        top, chance = sel["top"], sel["chance_overlap"]
    if not per_seed:
        return Reading(None, "no verified candidate model with a PMT selection")
    values = np.array(list(per_seed.values()))
    mean, n = float(values.mean()), len(values)
    half = 0.0
    if n >= 2:
        half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    interval = Interval(mean, max(0.0, mean - half), min(1.0, mean + half), n)
    reason = f"top-{top} of two Shapley runs per seed, {n} seeds; chance overlap {chance:.2f}"
    return Reading(interval, reason, per_round=per_seed)


def _median(values: dict[int, float]) -> float:
    return float(np.median(list(values.values()))) if values else float("nan")


def cost_figures(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Core-seconds per recipe three ways (medians over seeds): the measured CPU time; the
    allocation a batch system bills (wall x the machine's cores); and the report's formula,
    trials x trial time x cores / parallel jobs with a core per job (its "4 cores (parallel)
    / 4" for NEU, "1 core" for ALT), which is the summed trial time however the trials
    overlapped, plus the final training at one core."""
    cores = raw.get("cores") or 1
    out: dict[str, dict[str, list[float]]] = {}
    for rnd in raw["rounds"]:
        for role, rec in rnd["recipes"].items():
            if any("error" in rec[p] for p in ("search", "train")):
                continue
            jobs = rec["search"]["run"]["jobs"]
            trial_s = sum(t["seconds"] or 0.0 for t in rec["search"]["trials"])
            figures = out.setdefault(role, {"measured_cpu": [], "allocated": [], "report_formula": []})
            figures["measured_cpu"].append(rec["search"]["cpu_s"] + rec["train"]["cpu_s"])
            figures["allocated"].append((rec["search"]["wall_s"] + rec["train"]["wall_s"]) * cores)
            report_cores = jobs  # a core per parallel job, as the report counts
            figures["report_formula"].append(trial_s * report_cores / jobs + rec["train"]["wall_s"])
    return {role: {k: float(np.median(v)) for k, v in f.items()} for role, f in out.items()}


def ttq_summary(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Per role: runs, how many reached the target, median seconds with a 95% interval of the
    median (binomial order statistics; runs that never reached it count as beyond the budget)."""
    from scipy import stats as scipy_stats

    ttq = raw.get("ttq")
    if not ttq:
        return None
    if "runs" not in ttq:
        return {"error": ttq.get("error", "no time-to-quality runs")}
    roles: dict[str, Any] = {}
    for role in ("base", "candidate"):
        runs = [r for r in ttq["runs"] if r["role"] == role and "error" not in r]
        failed = sum(1 for r in ttq["runs"] if r["role"] == role and "error" in r)
        times = np.sort([r["seconds"] if r["reached"] else np.inf for r in runs])
        n = len(times)
        summary: dict[str, Any] = {"runs": n, "failed": failed, "reached": int(sum(r["reached"] for r in runs))}
        if n:
            summary["median_s"] = float(np.median(times))
            # [X_(lo), X_(n-lo+1)] covers the median when lo <= #(runs below it) <= n - lo.
            lo = int(scipy_stats.binom.ppf(0.025, n, 0.5))
            covered = scipy_stats.binom.cdf(n - lo, n, 0.5) - scipy_stats.binom.cdf(lo - 1, n, 0.5)
            summary["ci_s"] = [float(times[lo - 1]), float(times[n - lo])] if lo >= 1 else None
            summary["ci_note"] = (
                f"order statistics {lo} and {n - lo + 1} of {n} ({covered:.3f} coverage)"
                if lo >= 1
                else f"{n} runs are too few for a 95% interval of the median (needs 6)"
            )
            summary["epochs"] = [r["epoch"] for r in runs]
        roles[role] = summary
    return {"target": ttq["target"], "target_rule": ttq["target_rule"], "max_epochs": ttq["max_epochs"], **roles}


def selection_scope(raw: dict[str, Any]) -> str:
    """How many PMTs the verifications chose and for which trigger (the report's 300 need a
    detector of 600 or more)."""
    for rnd in raw["rounds"]:
        for rec in rnd["recipes"].values():
            sel = (rec["verify"].get("record") or {}).get("selection")
            if sel:
                return f"; {sel['select']} PMTs selected, trigger >= {sel['trigger_k']} hits, {sel['events']} events"
    return ""


def quality_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    """Rows for the quality suite's claims, keyed by claim id, in the compare CLI's row format."""
    from bench.analysis import claim_row, judged_row

    plan = raw["plan"]
    scope = f"preset {plan['preset']}, {plan['base_epochs']} vs {plan['candidate_epochs']} epochs"
    rows: dict[str, dict[str, Any]] = {}
    for claim in claims:
        if claim.suite != "quality" or claim.status != "measured":
            continue
        reading = quality_reading(raw, claim.metric)
        reason = f"{reading.reason}; {scope}"
        if claim.metric.startswith("selection"):
            reason += selection_scope(raw)
        if claim.metric == "cost_cpu_s" and reading.interval is not None:
            figures = cost_figures(raw)
            reason += "; core-seconds " + "; ".join(
                f"{role}: CPU {f['measured_cpu']:.0f}, allocated {f['allocated']:.0f}, report's formula "
                f"{f['report_formula']:.0f}"
                for role, f in figures.items()
            )
        if reading.interval is None:
            rows[claim.id] = claim_row(claim, reason=reason)
            continue
        rows[claim.id] = judged_row(
            claim,
            reading.interval,
            reason=reason,
            per_round=reading.per_round,
            base_value=reading.base_value,
            candidate_value=reading.candidate_value,
        )
    return rows


# Each verification metric as a share that is 1 at its best: the value where higher is better;
# indistinguishability 1 - |2 AUC - 1| for the classifier; 1 - violation for the energy violation.
# val_loss has no ceiling. A model's share of the ceiling is its share over the ceiling's.
TO_SHARE: dict[str, Callable[[float], float]] = {
    "fidelity": lambda v: v,
    "physics_score": lambda v: v,
    "multiplicity_success": lambda v: v,
    "classifier_auc": lambda v: 1 - abs(2 * v - 1),
    "energy_violation": lambda v: 1 - v,
}


def ceiling_share(metric: str, value: float | None, ceiling: float | None) -> float | None:
    """How close a model's value comes to the simulated ceiling (1 = as good as a second
    simulation); None where the metric has no ceiling or a value is missing."""
    if metric not in TO_SHARE or value is None or ceiling is None:
        return None
    best = TO_SHARE[metric](ceiling)
    return TO_SHARE[metric](value) / best if best > 0 else None


def verification_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians over seeds of every verification metric per recipe (and of the simulated
    ceiling), and of the PMT-selection detection rates: the context beside the Q and P rows."""
    metrics: dict[str, dict[str, list[float]]] = {}
    detection: dict[str, dict[str, list[float]]] = {}
    for rnd in raw["rounds"]:
        for role, rec in rnd["recipes"].items():
            record = rec["verify"].get("record")
            if record is None:
                continue
            for name, values in record["metrics"].items():
                row = metrics.setdefault(name, {"base": [], "candidate": [], "ceiling": []})
                row[role].append(values["generated"])
                if values["ceiling"] is not None:
                    row["ceiling"].append(values["ceiling"])
            sel = record.get("selection") or {}
            rates = {**sel.get("detection_rate", {}), "all_pmts": sel.get("detection_rate_all_pmts")}
            for name, rate in rates.items():
                if rate is not None:
                    detection.setdefault(name, {"base": [], "candidate": []})[role].append(rate)

    def med(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    medians = {n: {k: med(v) for k, v in row.items()} for n, row in metrics.items()}
    shares = {
        n: {role: ceiling_share(n, row[role], row["ceiling"]) for role in ("base", "candidate")}
        for n, row in medians.items()
    }
    return {
        "metrics": medians,
        "ceiling_shares": shares,
        "detection_rate": {n: {k: med(v) for k, v in row.items()} for n, row in detection.items()},
        "seeds": len(raw["rounds"]),
    }
