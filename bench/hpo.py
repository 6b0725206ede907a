"""Measurements of the search claims: parallel trials (H1), pruning (H2), both (H3), cores (S1),
and a projection to many nodes (S4).

Every search runs as the user runs it (``python -m diffusion.hpo run`` in a fresh process) on
a fresh journal-file study. For H1 and S1 all runs do the same work: the same fixed list of
parameter sets is enqueued, and pruning is off. Runs are repeated in a new random order.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HpoPlan:
    """What the search benchmark runs.

    Attributes:
        preset: data and model size of every trial.
        trials: trials per search (the seed: 20).
        epochs: epochs per trial; pruning may act from epoch 3 (the seed's rule).
        jobs: parallel threads or worker processes (the seed: 4; here at most the cores).
        repeats: repetitions of every run, for intervals.
        seed: parameter list, sampler and run order.
        core_pair: the core counts S1 compares, (fewer, more): the report's (4, 8) where the
            machine has 8 cores, else half its cores against them (``core_pair_for``).
        only: the runs to make, by name (empty: all; a device call that has time for S1 alone).
    """

    preset: str = "tiny"
    trials: int = 20
    epochs: int = 6
    jobs: int = 2
    repeats: int = 2
    seed: int = 0
    core_pair: tuple[int, int] = (1, 2)
    only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    name: str
    parallel: str  # "threads" or "workers"
    jobs: int
    pruner: str
    cpus: int | None = None  # pin to this many cores (S1); None: all
    path: str = "neu"  # the path spec every trial trains with


def core_pair_for(cores: int) -> tuple[int, int]:
    """The core counts S1 compares on a machine with ``cores``: those S2 compares (the report's
    4 and 8 where there are 8, else the most against half as many); (1, 1) on one core."""
    from bench.scaling import compared_cores, core_counts

    return compared_cores(core_counts(cores)) or (1, 1)


def cores_run_name(cores: int) -> str:
    return f"workers-{cores}core{'s' if cores > 1 else ''}"


def all_runs(plan: HpoPlan) -> list[Run]:
    fewer, more = plan.core_pair
    return [
        Run("sequential", "threads", 1, "none"),
        Run("threads", "threads", plan.jobs, "none"),
        Run("workers", "workers", plan.jobs, "none"),
        Run("sequential+pruning", "threads", 1, "median"),
        Run("threads+pruning", "threads", plan.jobs, "median"),
        # S1: as many worker processes as pinned cores, at both counts (the report's 4 -> 8 cores).
        *(Run(cores_run_name(k), "workers", k, "none", cpus=k) for k in dict.fromkeys((fewer, more))),
    ]


def check_run_names(text: str, plan: HpoPlan) -> tuple[str, ...]:
    """``--hpo-runs``: comma-separated names of ``plan``'s runs, each once.

    Raises:
        ConfigError: a name that is no run of the plan on this machine (naming the valid ones).
    """
    from diffusion.errors import ConfigError

    valid = [run.name for run in all_runs(plan)]
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    for name in names:
        if name not in valid:
            raise ConfigError(
                f"--hpo-runs: {name[:80]!r} is no search of the suite here; choose from {', '.join(valid)}."
            )
    return names


def runs(plan: HpoPlan) -> list[Run]:
    """The runs of ``plan``: every one, or those ``plan.only`` names."""
    return [run for run in all_runs(plan) if not plan.only or run.name in plan.only]


def fixed_params(n: int, seed: int) -> list[dict[str, Any]]:
    """n parameter sets drawn once from the search space, the same for every run."""
    from diffusion.hpo.space import SEARCH_SPACE, Choice

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        params: dict[str, Any] = {}
        for name, dist in SEARCH_SPACE.items():
            if isinstance(dist, Choice):
                params[name] = dist.options[int(rng.integers(len(dist.options)))]
            else:
                params[name] = float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        out.append(params)
    return out


def run_search(run: Run, plan: HpoPlan, params: list[dict[str, Any]], directory: Path, tag: str) -> dict[str, Any]:
    """One search in a fresh process; returns wall time and per-trial records."""
    from diffusion.hpo.search import SearchConfig, counts, create_study
    from diffusion.hpo.storage import open_storage

    config = SearchConfig(preset=plan.preset, epochs=plan.epochs, seed=plan.seed, pruner=run.pruner, path=run.path)
    url = f"journal:{directory / (tag + '.journal')}"
    study = create_study(tag, open_storage(url), config)
    for p in params:
        study.enqueue_trial(p)
    cmd = [
        sys.executable,
        "-m",
        "diffusion.hpo",
        "run",
        "--study",
        tag,
        "--storage",
        url,
        "--n-trials",
        str(len(params)),
        "--preset",
        plan.preset,
        "--epochs",
        str(plan.epochs),
        "--seed",
        str(plan.seed),
        "--pruner",
        run.pruner,
        "--path",
        run.path,
        "--no-progress",
        "--workers" if run.parallel == "workers" else "--n-jobs",
        str(run.jobs),
    ]
    cpus = sorted(os.sched_getaffinity(0))[: run.cpus] if run.cpus else None
    timed = run_timed(cmd, "search", cpus=cpus)
    if "error" in timed:
        return {"run": asdict(run), "error": timed["error"]}
    import optuna

    study = optuna.load_study(study_name=tag, storage=open_storage(url))
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    return {
        "run": asdict(run),
        "wall_s": timed["wall_s"],
        "cpu_s": timed["cpu_s"],
        "best_params": _best_params(study),
        "counts": counts(study),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "epochs_run": t.user_attrs.get("epochs_run"),
                "seconds": t.user_attrs.get("seconds"),
                "rss_mib_end": t.user_attrs.get("rss_mib_end"),
                "value": t.value,
            }
            for t in trials
        ],
    }


def run_timed(cmd: list[str], what: str, *, cpus: list[int] | None = None) -> dict[str, Any]:
    """A command of this checkout in a fresh process (pinned to ``cpus`` if given): its wall
    seconds, the CPU seconds it used, when it started (epoch seconds), and why it failed."""
    from bench.roles import failure, tree_env

    cpu_before = child_cpu_s()
    started = time.time()
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=tree_env(ROOT),
        cwd=ROOT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    out = {"wall_s": time.perf_counter() - start, "cpu_s": child_cpu_s() - cpu_before, "started": started}
    if proc.returncode != 0:
        out["error"] = failure(what, proc)
    return out


def child_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (a search and its workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _best_params(study: Any) -> dict[str, Any] | None:
    try:
        return dict(study.best_trial.params)
    except ValueError:  # no completed trial
        return None


def measure_hpo(
    plan: HpoPlan,
    on_run: Callable[[int, Run, dict[str, Any]], None] | None = None,
    done: Mapping[Hashable, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """All runs, ``plan.repeats`` times each, in a new random order per repeat. ``done``: records
    of finished searches by (repeat, run name), from a cut run's partial record; they are reused,
    and the order of the rest is the same as in a run from scratch."""
    params = fixed_params(plan.trials, plan.seed)
    rng = np.random.default_rng(plan.seed)
    plan_runs = runs(plan)
    done = done or {}
    records = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-hpo-") as tmp:
        for repeat in range(plan.repeats):
            for i in rng.permutation(len(plan_runs)):
                run = plan_runs[i]
                if (repeat, run.name) in done:
                    records.append(done[(repeat, run.name)])
                    continue
                record = {**run_search(run, plan, params, Path(tmp), f"{run.name}-{repeat}"), "repeat": repeat}
                records.append(record)
                if on_run is not None:
                    on_run(repeat, run, record)
    return {
        "plan": asdict(plan),
        "params": params,
        "records": records,
        "wall_s": time.perf_counter() - start,
        "reused": len([r for r in records if (r["repeat"], r["run"]["name"]) in done]),
        "cores": len(os.sched_getaffinity(0)),
    }
