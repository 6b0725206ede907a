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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis import claim_row, interval_dict
from bench.claims import Claim
from bench.stats import Interval, interval_of, verdict

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
    """

    preset: str = "tiny"
    trials: int = 20
    epochs: int = 6
    jobs: int = 2
    repeats: int = 2
    seed: int = 0


@dataclass(frozen=True)
class Run:
    name: str
    parallel: str  # "threads" or "workers"
    jobs: int
    pruner: str
    cpus: int | None = None  # pin to this many cores (S1); None: all


def runs(plan: HpoPlan) -> list[Run]:
    return [
        Run("sequential", "threads", 1, "none"),
        Run("threads", "threads", plan.jobs, "none"),
        Run("workers", "workers", plan.jobs, "none"),
        Run("sequential+pruning", "threads", 1, "median"),
        Run("threads+pruning", "threads", plan.jobs, "median"),
        Run("sequential-1core", "threads", 1, "none", cpus=1),
    ]


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

    config = SearchConfig(preset=plan.preset, epochs=plan.epochs, seed=plan.seed, pruner=run.pruner)
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
        "--no-progress",
        "--workers" if run.parallel == "workers" else "--n-jobs",
        str(run.jobs),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cpus = sorted(os.sched_getaffinity(0))[: run.cpus] if run.cpus else None
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"run": asdict(run), "error": f"search exited {proc.returncode}: {tail}"}
    import optuna

    study = optuna.load_study(study_name=tag, storage=open_storage(url))
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    return {
        "run": asdict(run),
        "wall_s": wall,
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


def measure_hpo(plan: HpoPlan, on_run: Callable[[int, Run, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """All runs, ``plan.repeats`` times each, in a new random order per repeat."""
    params = fixed_params(plan.trials, plan.seed)
    rng = np.random.default_rng(plan.seed)
    plan_runs = runs(plan)
    records = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-hpo-") as tmp:
        for repeat in range(plan.repeats):
            for i in rng.permutation(len(plan_runs)):
                run = plan_runs[i]
                record = {**run_search(run, plan, params, Path(tmp), f"{run.name}-{repeat}"), "repeat": repeat}
                records.append(record)
                if on_run is not None:
                    on_run(repeat, run, record)
    return {
        "plan": asdict(plan),
        "params": params,
        "records": records,
        "wall_s": time.perf_counter() - start,
        "cores": len(os.sched_getaffinity(0)),
    }


# ---- analysis: pure functions of the records -------------------------------------------------


def walls(raw: dict[str, Any], name: str) -> dict[int, float]:
    return {r["repeat"]: r["wall_s"] for r in raw["records"] if r["run"]["name"] == name and "wall_s" in r}


def speedup(raw: dict[str, Any], base: str, cand: str, seed: int = 0) -> Interval | None:
    b, c = walls(raw, base), walls(raw, cand)
    rounds = sorted(set(b) & set(c))
    if not rounds:
        return None
    return interval_of(np.array([b[r] / c[r] for r in rounds]), seed=seed)


def pruned_share(raw: dict[str, Any], name: str) -> tuple[Interval | None, float | None, int]:
    """Share of finished trials that were pruned (Wilson interval over all repeats) and the share
    of epochs that pruning saved."""
    from scipy.stats import binomtest

    trials = [t for r in raw["records"] if r["run"]["name"] == name and "trials" in r for t in r["trials"]]
    if not trials:
        return None, None, 0
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    ci = binomtest(pruned, len(trials)).proportion_ci(confidence_level=0.95, method="wilson")
    epochs = raw["plan"]["epochs"]
    saved = 1 - sum(t["epochs_run"] or 0 for t in trials) / (epochs * len(trials))
    return Interval(pruned / len(trials), float(ci.low), float(ci.high), len(trials)), saved, pruned


def rss_growth_per_trial(raw: dict[str, Any], name: str = "sequential") -> float | None:
    """Slope of the worker's RSS over trials (MiB per trial), first repeat of a one-process run."""
    rec = next((r for r in raw["records"] if r["run"]["name"] == name and "trials" in r), None)
    if rec is None:
        return None
    rss = [t["rss_mib_end"] for t in sorted(rec["trials"], key=lambda t: t["number"]) if t["rss_mib_end"] is not None]
    return float(np.polyfit(np.arange(len(rss)), rss, 1)[0]) if len(rss) >= 3 else None


def _row(claim: Claim, interval: Interval | None, claimed: float, reason: str, **extra: Any) -> dict[str, Any]:
    row = claim_row(claim, claimed=claimed, reason=reason, **extra)
    if interval is not None:
        row |= {
            "measured": interval_dict(interval),
            "ci": [interval.low, interval.high],
            "verdict": verdict(interval, claimed, claim.tolerance).value,
            "rounds": interval.n,
        }
    return row


def hpo_rows(raw: dict[str, Any], claims: list[Claim], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Rows for the search claims, keyed by claim id, in the compare CLI's row format."""
    plan = raw["plan"]
    jobs, cores = plan["jobs"], raw["cores"]
    by_id = {c.id: c for c in claims}
    rows: dict[str, dict[str, Any]] = {}
    errors = sorted({r["error"] for r in raw["records"] if "error" in r})
    err = f"; {len(errors)} failed run(s): {errors[0]}" if errors else ""

    if "H1" in by_id:
        iv = speedup(raw, "sequential", "threads", seed)
        workers = speedup(raw, "sequential", "workers", seed)
        wtext = f"{workers.estimate:.2f}x [{workers.low:.2f}, {workers.high:.2f}]" if workers else "-"
        rows["H1"] = _row(
            by_id["H1"],
            iv,
            float(jobs),
            f"{jobs} threads (Optuna n_jobs, as the seed) vs 1 on {cores} cores, same {plan['trials']} enqueued trials, "
            f"no pruning; the seed's 4 jobs claim linear scaling, so the claim here is {jobs}x. "
            f"{jobs} worker processes instead: {wtext}{err}",
            base_value=np.median(list(walls(raw, "sequential").values())) if walls(raw, "sequential") else None,
            candidate_value=np.median(list(walls(raw, "threads").values())) if walls(raw, "threads") else None,
        )
    if "H2" in by_id:
        share, saved, pruned = pruned_share(raw, "sequential+pruning")
        rows["H2"] = _row(
            by_id["H2"],
            share,
            by_id["H2"].claimed,
            f"MedianPruner (startup 5 trials, no pruning before epoch 3) on the fixed list, {plan['epochs']} epochs: "
            f"{pruned} of {share.n if share else 0} trials pruned (Wilson interval); "
            f"epochs saved {saved:.0%}"
            if share
            else f"no pruned run{err}",
        )
    if "H3" in by_id:
        iv = speedup(raw, "sequential", "threads+pruning", seed)
        gain = by_id["H3"].claimed / by_id["H1"].claimed if "H1" in by_id else 1.0
        rows["H3"] = _row(
            by_id["H3"],
            iv,
            jobs * gain,
            f"{jobs} threads with pruning vs 1 without; the seed's 5.7x = 4 jobs x {gain:.2f} from pruning, "
            f"so the claim here is {jobs} x {gain:.2f} = {jobs * gain:.2f}x{err}",
        )
    if "S1" in by_id:
        iv = speedup(raw, "sequential-1core", "workers", seed)
        rows["S1"] = _row(
            by_id["S1"],
            iv,
            by_id["S1"].claimed,
            f"doubling cores and workers as the seed's 4 -> 8 cores: 1 worker pinned to 1 core vs {jobs} worker "
            f"processes on {min(jobs, cores)} cores. One TensorFlow process already uses every core it may, "
            f"so more workers share the cores rather than add them{err}",
        )
    if "S4" in by_id:
        rows["S4"] = s4_projection(raw, by_id["S4"])
    return rows


def s4_projection(raw: dict[str, Any], claim: Claim) -> dict[str, Any]:
    """Search time with W workers projected from measured trial durations: W workers finish
    ceil(N / W) waves of trials. A projection, not a measurement."""
    trials = [t for r in raw["records"] if r["run"]["name"] == "threads+pruning" and "trials" in r for t in r["trials"]]
    if not trials:
        return _row(claim, None, claim.claimed, "not measured: no pruned parallel run to project from")
    n = raw["plan"]["trials"]
    mean = float(np.mean([t["seconds"] for t in trials if t["seconds"]]))
    waves = {w: math.ceil(n / w) for w in (4, 128)}
    ratio = waves[4] / waves[128]
    interval = Interval(ratio, ratio, ratio, 0)
    row = _row(
        claim,
        interval,
        claim.claimed,
        f"PROJECTION, not a measurement: {n} trials of mean {mean:.1f} s; 4 workers need {waves[4]} waves, "
        f"128 need {waves[128]}: at most {ratio:.0f}x. 128 workers pay off only with >= 128 trials, and a "
        f"TPE sampler learns little when most trials run at once",
    )
    row["projection"] = True
    return row
