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

On a machine with room for several jobs at once (a GPU with many cores), ``concurrent > 1``
runs the rounds' pipelines side by side. Then no job's wall or CPU time is its own, so such a
run measures quality only: every time claim reads "not measured", time to quality is not
run, and neither is the search of a recipe that trains its defaults (it feeds time claims
alone). Its jobs live in their own work directory, so a later run of one job at a time never
reuses a time measured beside others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.hpo import ROOT, HpoPlan, Run, fixed_params, run_search, run_timed
from bench.quality_analysis import NOT_TIMED
from diffusion.cli import check_writable_dir
from diffusion.errors import ConfigError
from diffusion.files import read_json_record, write_json_atomic
from diffusion.paths import TrainingPath, format_path
from diffusion.presets import Preset, get_preset

SCHEMA = "pmt-bench/quality/1"
ROLES = ("base", "candidate")
PHASES = ("search", "train", "verify")
# Why a recipe's jobs, or its search, are not run.
NOT_RUN = "not run: the run's recipes were --quality-roles {roles}"
UNTUNED_SEARCH = (
    "not run: with jobs at once only quality is measured, and this recipe trains its defaults, "
    "so its search would feed time claims alone"
)


@dataclass(frozen=True)
class Recipe:
    """One setup's whole path to a verified model.

    Attributes:
        role: ``base`` or ``candidate``: which side of every ratio it is.
        path: the path of its search trials and final training.
        epochs: epochs of the final training.
        search: how its search runs (parallelism, pruner).
        tuned: the final training uses the search's best parameters; else the preset's defaults.
    """

    role: str
    path: TrainingPath
    epochs: int
    search: Run
    tuned: bool

    def record(self) -> dict[str, Any]:
        """The recipe as records keep it, its path as a spec."""
        return {**asdict(self), "path": format_path(self.path)}


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
        concurrent: pipelines (one recipe's search, training and verification for one seed)
            run at once; above 1 the run measures quality only (see the module's docstring).
        roles: the recipes run (``base``, ``candidate``); with one, no claim has a ratio, and the
            record gives that recipe's models beside the ceiling (where the other does not fit).
    """

    preset: Preset = field(default_factory=lambda: get_preset("tiny"))
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
    concurrent: int = 1
    roles: tuple[str, ...] = ROLES

    @property
    def times_measured(self) -> bool:
        """Whether a job's wall and CPU time are its own (it ran alone)."""
        return self.concurrent == 1

    def job_count(self) -> int:
        """Jobs a run starts or reuses: per seed each recipe's search, training and verification
        (with jobs at once the base recipe's search is not run), then time to quality's."""
        per_seed = 3 * len(self.roles) - (0 if self.times_measured or "base" not in self.roles else 1)
        both = set(self.roles) == set(ROLES)
        return self.seeds * per_seed + (self.ttq_runs * 2 if self.times_measured and both else 0)

    def record(self) -> dict[str, Any]:
        """The plan as records keep it, its preset by name."""
        return {**asdict(self), "preset": self.preset.name}

    def digest(self, base: TrainingPath, candidate: TrainingPath) -> str:
        """Names the work directory: the fields that change what a job computes or how its time
        reads (``concurrent``). More seeds or time-to-quality runs add jobs to the same directory
        (a target that moved renames the time-to-quality jobs)."""
        fields = {k: v for k, v in self.record().items() if k not in ("seeds", "ttq_runs", "concurrent", "roles")}
        fields["times_measured"] = self.times_measured
        paths = {"base": format_path(base), "candidate": format_path(candidate)}
        spec = json.dumps({**fields, **paths, "code": code_digest()}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:12]


def code_digest() -> str:
    """The system under test and this suite's own code: a job measured with other code is not
    reused (a changed model or metric means another measurement)."""
    h = hashlib.sha256(SCHEMA.encode())
    for path in sorted([*(ROOT / "diffusion").rglob("*.py"), ROOT / "bench" / "quality.py", ROOT / "bench" / "hpo.py"]):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def recipes(plan: QualityPlan, base: TrainingPath, candidate: TrainingPath) -> tuple[Recipe, Recipe]:
    # A search's trials run in `python -m diffusion.hpo run`, which takes the path as a spec.
    base_search = Run("sequential", "threads", 1, "none", path=format_path(base))
    candidate_search = Run("parallel+pruning", "threads", plan.jobs, "median", path=format_path(candidate))
    return (
        Recipe("base", base, plan.base_epochs, base_search, tuned=False),
        Recipe("candidate", candidate, plan.candidate_epochs, candidate_search, tuned=True),
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
    cmd = [sys.executable, "-m", "diffusion.train", "--path", format_path(recipe.path), "--preset", plan.preset.name]
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
        hpo = HpoPlan(preset=plan.preset.name, trials=plan.trials, epochs=plan.trial_epochs, jobs=plan.jobs, seed=seed)
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
    base: TrainingPath,
    candidate: TrainingPath,
    work_dir: Path,
    on_job: Callable[[str, dict[str, Any], bool], None] | None = None,
) -> dict[str, Any]:
    """Every round (search, final training, verification of both recipes, in an order that
    alternates per round), then the time-to-quality runs; returns the raw record. With
    ``plan.concurrent > 1`` the pipelines run that many at once and time to quality is not run."""
    work = Work(work_dir / f"quality-{plan.preset.name}-{plan.digest(base, candidate)}")
    pair = recipes(plan, base, candidate)
    start = time.perf_counter()
    said = threading.Lock()  # pipelines at once report their jobs one at a time

    def job(name: str, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        record, reused = work.job(name, make)
        if on_job is not None:
            with said:
                on_job(name, record, reused)
        return record

    def pipeline(seed: int, recipe: Recipe) -> dict[str, Any]:
        tag = f"seed{seed}-{recipe.role}"
        if recipe.role not in plan.roles:
            return {phase: {"error": NOT_RUN.format(roles=",".join(plan.roles))} for phase in PHASES}
        if plan.times_measured or recipe.tuned:
            search = job(f"{tag}-search", search_job(recipe, plan, seed))
        else:
            search = {"error": UNTUNED_SEARCH}
        train = job(f"{tag}-train", train_job(recipe, plan, seed, search.get("best_params")))
        verify = (
            job(f"{tag}-verify", verify_job(plan, seed, work.directory / f"{tag}-train" / "run"))
            if "error" not in train
            else {"error": "no model: the final training failed"}
        )
        return {"search": search, "train": train, "verify": verify}

    # Alternate which recipe goes first, so that drift over a run does not land on one side.
    order = [(seed, recipe) for seed in range(plan.seeds) for recipe in (pair if seed % 2 == 0 else pair[::-1])]
    if plan.concurrent == 1:
        done = [pipeline(*p) for p in order]
    else:
        pool = ThreadPoolExecutor(max_workers=plan.concurrent)
        try:
            done = list(pool.map(lambda p: pipeline(*p), order))
        finally:  # a cut starts no further job; the running ones end with their children
            pool.shutdown(wait=True, cancel_futures=True)
    rounds: list[dict[str, Any]] = [{"seed": seed, "recipes": {}} for seed in range(plan.seeds)]
    for (seed, recipe), result in zip(order, done, strict=True):
        rounds[seed]["recipes"][recipe.role] = result

    if not plan.times_measured:
        ttq = {"error": NOT_TIMED.format(n=plan.concurrent)}
    elif set(plan.roles) != set(ROLES):
        ttq = {"error": NOT_RUN.format(roles=",".join(plan.roles))}
    else:
        ttq = measure_ttq(plan, pair, rounds, job)
    return {
        "schema": SCHEMA,
        "plan": plan.record(),
        "cores": len(os.sched_getaffinity(0)),
        "recipes": [r.record() for r in pair],
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


def ttq_path(path: TrainingPath, preset: Preset) -> TrainingPath:
    """The path with validation over the whole fixed set, in its own batch size: every run is
    judged on the same samples (a path's usual pass covers a different prefix)."""
    n_val = preset.n_val
    if n_val % path.val_batch_size:
        raise ConfigError(
            f"time to quality validates on all {n_val} samples of preset {preset.name!r}, which "
            f"val_batch_size {path.val_batch_size} of {format_path(path)!r} does not divide."
        )
    return dataclasses.replace(path, val_batches=n_val // path.val_batch_size)


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
