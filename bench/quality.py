"""The quality suite: both recipes from search to verified model, and time to quality.

A recipe is the report's whole path to a model (section 4): a hyperparameter search, a final
training, a verification (with the PMT selection). The base recipe (ALT) searches
sequentially without pruning and trains the default model for 5 epochs; the candidate (NEU)
searches with parallel trials and median pruning and trains its best configuration for 30
epochs. Every phase runs as a user runs it, in a fresh process, timed on the wall clock with
its CPU time (``getrusage`` of the finished child). One round per seed; rounds pair by seed.

Time to quality (MLPerf Training's definition): wall time from process start until the
validation loss, evaluated every epoch on the clock, first reaches a target; the target is
the base recipe's median final loss on the whole validation set. Runs that never reach it
within the epoch budget are counted, not dropped.

Finished jobs are kept in a work directory named by the plan: a rerun of the same plan
reuses them (resume), another plan starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.hpo import ROOT, HpoPlan, Run, fixed_params, run_search, run_timed
from diffusion.cli import check_writable_dir
from diffusion.errors import ConfigError
from diffusion.files import read_json_record, write_json_atomic

SCHEMA = "pmt-bench/quality/1"


@dataclass(frozen=True)
class Recipe:
    """One setup's whole path to a verified model.

    Attributes:
        role: ``base`` or ``candidate``: which side of every ratio it is.
        path: the path spec of its search trials and final training.
        epochs: epochs of the final training.
        search: how its search runs (parallelism, pruner).
        tuned: the final training uses the search's best parameters; else the preset's defaults.
    """

    role: str
    path: str
    epochs: int
    search: Run
    tuned: bool


@dataclass(frozen=True)
class QualityPlan:
    """What the quality suite runs.

    Attributes:
        preset: data and default model of every training (tiny: every phase fits a session).
        seeds: rounds; each seeds the search's parameter list, the training and the verification.
        base_epochs, candidate_epochs: final-training epochs (the report: 5 and 30).
        trials, trial_epochs, jobs: the search (the report: 20 trials; 4 parallel jobs).
        events, steps: verification: generated events and DDIM steps.
        ttq_runs, ttq_max_epochs: time-to-quality runs per recipe, and the budget of each.
    """

    preset: str = "tiny"
    seeds: int = 3
    base_epochs: int = 5
    candidate_epochs: int = 30
    trials: int = 20
    trial_epochs: int = 6
    jobs: int = 2
    events: int = 1000
    steps: int = 50
    ttq_runs: int = 6  # the fewest runs whose order statistics give a 95% interval of the median
    ttq_max_epochs: int = 60

    def digest(self, base: str, candidate: str) -> str:
        """Names the work directory: the fields that change what a job computes. More seeds or
        time-to-quality runs add jobs to the same directory (a target that moved renames the
        time-to-quality jobs)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("seeds", "ttq_runs")}
        spec = json.dumps({**fields, "base": base, "candidate": candidate, "code": code_digest()}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:12]


def code_digest() -> str:
    """The system under test and this suite's own code: a job measured with other code is not
    reused (a changed model or metric means another measurement)."""
    h = hashlib.sha256(SCHEMA.encode())
    for path in sorted([*(ROOT / "diffusion").rglob("*.py"), ROOT / "bench" / "quality.py", ROOT / "bench" / "hpo.py"]):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def recipes(plan: QualityPlan, base: str, candidate: str) -> tuple[Recipe, Recipe]:
    return (
        Recipe("base", base, plan.base_epochs, Run("sequential", "threads", 1, "none", path=base), tuned=False),
        Recipe(
            "candidate",
            candidate,
            plan.candidate_epochs,
            Run("parallel+pruning", "threads", plan.jobs, "median", path=candidate),
            tuned=True,
        ),
    )


def train_cmd(
    recipe: Recipe,
    plan: QualityPlan,
    seed: int,
    out: Path,
    config: Path | None,
    *,
    epochs: int | None = None,
    target_loss: float | None = None,
) -> list[str]:
    """``diffusion.train`` for the recipe: its epochs unless ``epochs`` is given (a budget)."""
    cmd = [sys.executable, "-m", "diffusion.train", "--path", recipe.path, "--preset", plan.preset]
    cmd += ["--epochs", str(epochs or recipe.epochs), "--seed", str(seed)]
    cmd += ["--out", str(out / "run"), "--json", str(out / "train.json"), "--no-progress"]
    if config is not None:
        cmd += ["--config", str(config)]
    if target_loss is not None:
        cmd += ["--target-loss", repr(target_loss)]
    return cmd


class Work:
    """Finished jobs as JSON files in one directory: a rerun of the same plan reuses them."""

    def __init__(self, directory: Path) -> None:
        self.directory = check_writable_dir(directory, "--work-dir")

    def job(self, name: str, make: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The job's record, made now (in its own folder) or reused; and whether it was reused.

        Raises:
            ConfigError: a finished job's file is no JSON object (hand-edited, or another tool's).
        """
        done = self.directory / f"{name}.json"
        if done.exists():
            try:
                return read_json_record(done, "--work-dir's finished job"), True
            except ConfigError as exc:
                raise ConfigError(f"{exc} Remove it to run the job again.") from None
        folder = self.directory / name
        # A job killed before its record was written starts afresh: its half-written run
        # (a checkpoint, a study journal) would refuse a new start or mix two runs' trials.
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        record = make(folder)
        if "error" not in record:  # a failed job runs again on resume
            write_json_atomic(done, record)
        return record, False


def search_job(recipe: Recipe, plan: QualityPlan, seed: int) -> Callable[[Path], dict[str, Any]]:
    def make(folder: Path) -> dict[str, Any]:
        hpo = HpoPlan(preset=plan.preset, trials=plan.trials, epochs=plan.trial_epochs, jobs=plan.jobs, seed=seed)
        return run_search(recipe.search, hpo, fixed_params(plan.trials, seed), folder, f"{recipe.role}-{seed}")

    return make


def train_job(
    recipe: Recipe,
    plan: QualityPlan,
    seed: int,
    best: dict[str, Any] | None,
    *,
    epochs: int | None = None,
    target_loss: float | None = None,
) -> Callable[[Path], dict[str, Any]]:
    def make(folder: Path) -> dict[str, Any]:
        config = None
        if recipe.tuned:
            if best is None:
                return {"error": "the search finished no trial: no best parameters to train"}
            config = folder / "best.json"
            write_json_atomic(config, {"params": best})
        cmd = train_cmd(recipe, plan, seed, folder, config, epochs=epochs, target_loss=target_loss)
        record = run_timed(cmd, "diffusion.train")
        if "error" not in record:
            record["summary"] = json.loads((folder / "train.json").read_text())
        return record

    return make


def verify_job(plan: QualityPlan, seed: int, run_dir: Path) -> Callable[[Path], dict[str, Any]]:
    def make(folder: Path) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "diffusion.verify", "--checkpoint", str(run_dir), "--events", str(plan.events)]
        cmd += ["--steps", str(plan.steps), "--seed", str(seed), "--json", str(folder / "verify.json"), "--no-progress"]
        record = run_timed(cmd, "diffusion.verify")
        if "error" not in record:
            record["record"] = json.loads((folder / "verify.json").read_text())
        return record

    return make


def measure_quality(
    plan: QualityPlan,
    base: str,
    candidate: str,
    work_dir: Path,
    on_job: Callable[[str, dict[str, Any], bool], None] | None = None,
) -> dict[str, Any]:
    """Every round (search, final training, verification of both recipes, in a random order
    per round), then the time-to-quality runs; returns the raw record."""
    work = Work(work_dir / f"quality-{plan.preset}-{plan.digest(base, candidate)}")
    pair = recipes(plan, base, candidate)
    start = time.perf_counter()

    def job(name: str, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        record, reused = work.job(name, make)
        if on_job is not None:
            on_job(name, record, reused)
        return record

    rounds = []
    for seed in range(plan.seeds):
        result: dict[str, Any] = {"seed": seed, "recipes": {}}
        # Alternate which recipe goes first, so that drift over a run does not land on one side.
        for recipe in pair if seed % 2 == 0 else pair[::-1]:
            tag = f"seed{seed}-{recipe.role}"
            search = job(f"{tag}-search", search_job(recipe, plan, seed))
            train = job(f"{tag}-train", train_job(recipe, plan, seed, search.get("best_params")))
            verify = (
                job(f"{tag}-verify", verify_job(plan, seed, work.directory / f"{tag}-train" / "run"))
                if "error" not in train
                else {"error": "no model: the final training failed"}
            )
            result["recipes"][recipe.role] = {"search": search, "train": train, "verify": verify}
        rounds.append(result)

    ttq = measure_ttq(plan, pair, rounds, job)
    return {
        "schema": SCHEMA,
        "plan": asdict(plan),
        "cores": len(os.sched_getaffinity(0)),
        "recipes": [dataclasses.asdict(r) for r in pair],
        "rounds": rounds,
        "ttq": ttq,
        "work_dir": str(work.directory),
        "wall_s": time.perf_counter() - start,
    }


def measure_ttq(
    plan: QualityPlan, pair: tuple[Recipe, ...], rounds: list[dict[str, Any]], job: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Time to quality: ``plan.ttq_runs`` runs per recipe, interleaved, each until the target."""
    base_losses = [
        r["recipes"]["base"]["verify"]["record"]["metrics"]["val_loss"]["generated"]
        for r in rounds
        if "record" in r["recipes"]["base"]["verify"]
    ]
    if not base_losses:
        return {"error": "no verified base model: no target"}
    target = float(np.median(base_losses))
    runs: list[dict[str, Any]] = []
    for run in range(plan.ttq_runs):
        for recipe in pair if run % 2 == 0 else pair[::-1]:
            best = rounds[run % len(rounds)]["recipes"][recipe.role]["search"].get("best_params")
            path = ttq_path(recipe.path, plan.preset)
            timed = dataclasses.replace(recipe, path=path)
            tuned = (
                hashlib.sha256(json.dumps(best, sort_keys=True).encode()).hexdigest()[:8] if recipe.tuned else "default"
            )
            record = job(
                f"ttq{run}-{recipe.role}-target{target:.6g}-{tuned}",
                train_job(timed, plan, 100 + run, best, epochs=plan.ttq_max_epochs, target_loss=target),
            )
            runs.append({"run": run, "role": recipe.role, **time_to_target(record, target)})
    return {
        "target": target,
        "target_rule": "median over seeds of the base recipe's final validation loss on the whole validation set",
        "max_epochs": plan.ttq_max_epochs,
        "runs": runs,
    }


def ttq_path(spec: str, preset: str) -> str:
    """The spec with validation over the whole fixed set, in the path's own batch size: every
    run is judged on the same samples (a path's usual pass covers a different prefix)."""
    from diffusion.paths import format_path, parse_path
    from diffusion.presets import get_preset

    path = parse_path(spec)
    n_val = get_preset(preset).n_val
    if n_val % path.val_batch_size:
        raise ConfigError(
            f"time to quality validates on all {n_val} samples of preset {preset!r}, which "
            f"val_batch_size {path.val_batch_size} of {spec!r} does not divide."
        )
    return format_path(dataclasses.replace(path, val_batches=n_val // path.val_batch_size))


def time_to_target(record: dict[str, Any], target: float) -> dict[str, Any]:
    """Seconds from process start to the end of the first epoch at or below the target."""
    if "error" in record:
        return {"error": record["error"]}
    history = record["summary"]["history"]
    hit = next((h for h in history if h["val_loss"] <= target), None)
    return {
        "reached": hit is not None,
        "seconds": hit["time"] - record["started"] if hit else None,
        "epoch": hit["epoch"] if hit else None,
        "epochs_run": len(history),
        "best_loss": min(h["val_loss"] for h in history),
    }


# ---- analysis: pure functions of the raw record ----------------------------------------------


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
        phases: the phases that must have finished for the value to exist.
    """

    read: Callable[[dict[str, Any]], float]
    higher_is_better: bool
    phases: tuple[str, ...] = ("search", "train", "verify")


QUALITY_READINGS: dict[str, QualityReading] = {
    "quality_val_loss": QualityReading(lambda r: _verify(r)["metrics"]["val_loss"]["generated"], False),
    "quality_fidelity": QualityReading(lambda r: _verify(r)["metrics"]["fidelity"]["generated"], True),
    "quality_physics_score": QualityReading(lambda r: _verify(r)["metrics"]["physics_score"]["generated"], True),
    "quality_multiplicity": QualityReading(lambda r: _verify(r)["metrics"]["multiplicity_success"]["generated"], True),
    "quality_energy_violation": QualityReading(lambda r: _verify(r)["metrics"]["energy_violation"]["generated"], False),
    "selection_detection_rate": QualityReading(
        lambda r: _verify(r)["selection"]["detection_rate"]["shapley_generated"], True
    ),
    "selection_time": QualityReading(lambda r: _verify(r)["selection"]["selection_s"], False),
    "workflow_time_to_best": QualityReading(_phases, False),
    "workflow_final_training": QualityReading(lambda r: r["train"]["wall_s"], False, ("train",)),
    "workflow_validation": QualityReading(
        lambda r: sum(h["val_pass_s"] for h in r["train"]["summary"]["history"]), False, ("train",)
    ),
    "cost_cpu_s": QualityReading(lambda r: r["search"]["cpu_s"] + r["train"]["cpu_s"], False, ("search", "train")),
}
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
        if claim.metric == "cost_cpu_s":
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

    return {
        "metrics": {n: {k: med(v) for k, v in row.items()} for n, row in metrics.items()},
        "detection_rate": {n: {k: med(v) for k, v in row.items()} for n, row in detection.items()},
        "seeds": len(raw["rounds"]),
    }
