"""One simulated search worker (bench.swarm): the plan it follows, the measured trials it draws
from, the stand-in objective that sleeps them, and the clock on its storage calls."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.errors import ConfigError
from diffusion.files import read_json_record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128)
GRACE_S = 30.0  # after a deadline: a worker finishes its running trial's epoch, reports, exits
SETUP_S = 120.0  # for every worker to open the storage and load the study


@dataclass(frozen=True)
class SwarmPlan:
    """What the simulation runs.

    Attributes:
        workers: the worker counts, each a fresh study of ``trials_per_worker`` x workers trials,
            and at least ``min_trials`` (so that the pruner, which waits for 5, acts at 1 worker too).
        trials_per_worker: trials each worker runs on average (enough waves for a rate).
        min_trials: the fewest trials of a study (the seed's search: 20).
        mean_trial_s: the drawn trials' mean duration after compression; None: as measured.
        deadline_s: a worker takes no trial after this; the parent kills it after ``GRACE_S`` more.
        epochs, startup_trials, warmup_epochs: the search's (MedianPruner from epoch 3).
        seed: the draws of trial times and losses.
    """

    workers: tuple[int, ...] = DEFAULT_WORKERS
    trials_per_worker: int = 4
    min_trials: int = 20
    mean_trial_s: float | None = None
    deadline_s: float = 240.0
    epochs: int = 6
    startup_trials: int = 5
    warmup_epochs: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Draws:
    """Measured trials to draw from: seconds per epoch and final validation loss, one per trial."""

    epoch_s: tuple[float, ...]
    loss: tuple[float, ...]
    source: str = ""
    what: str = ""

    @property
    def mean_trial_s(self) -> float:
        return float(np.mean(self.epoch_s))


def load_draws(path: Path, epochs: int) -> Draws:
    """The complete, unpruned trials of a search record's one-process runs (``sequential``: no
    other trial shares the machine), as seconds per epoch and final loss.

    Raises:
        ConfigError: not a search record, or one without such trials.
    """
    record = read_json_record(path, "--trials-from")
    try:
        runs = record["search"]["records"]
    except (KeyError, TypeError):
        raise ConfigError(
            f"--trials-from {str(path)!r} is not a search record (bench.compare --suite hpo --json)."
        ) from None
    trials = [
        t
        for r in runs
        if isinstance(r, dict) and r.get("run", {}).get("name") == "sequential"
        for t in r.get("trials", [])
        if t.get("state") == "COMPLETE" and t.get("epochs_run") and t.get("seconds") and t.get("value") is not None
    ]
    if len(trials) < 5:
        raise ConfigError(
            f"--trials-from {str(path)!r} holds {len(trials)} complete sequential trials; at least 5 are needed."
        )
    return Draws(
        tuple(t["seconds"] / t["epochs_run"] * epochs for t in trials),
        tuple(float(t["value"]) for t in trials),
        source=str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name,
        what=f"{len(trials)} complete trials of the record's sequential searches",
    )


def losses(final: float, epochs: int, rng: np.random.Generator) -> list[float]:
    """A stand-in learning curve: falling to the drawn trial's final loss, 1.5x it at epoch 1,
    with 3% noise per epoch (the record keeps final losses only)."""
    return [
        final * (1 + 0.5 * (epochs - e) / max(epochs - 1, 1)) * (1 + 0.03 * rng.standard_normal())
        for e in range(1, epochs + 1)
    ]


def make_objective(
    draws: Draws, plan: SwarmPlan, scale: float, seed: int, slept: list[float]
) -> Callable[[Any], float]:
    """A trial that suggests the real search space, sleeps its drawn epochs and reports a loss
    after each; pruned like a real one. ``slept`` collects the seconds each trial slept."""
    import optuna

    from diffusion.hpo.space import suggest

    rng = np.random.default_rng(seed)

    def objective(trial: Any) -> float:
        suggest(trial)
        pick = int(rng.integers(len(draws.epoch_s)))
        per_epoch = draws.epoch_s[pick] * scale / plan.epochs
        curve = losses(draws.loss[pick], plan.epochs, rng)
        total = 0.0
        try:
            for epoch, loss in enumerate(curve, start=1):
                time.sleep(per_epoch)
                total += per_epoch
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned by the median rule at epoch {epoch}")
            return loss
        finally:
            slept.append(total)

    return objective


class StorageClock:
    """Wall time spent in the storage's calls, from every thread (the trial's and its heartbeat's).

    Each public method of the RDBStorage instance is shadowed by a timed one, so Optuna's cache
    in front of it (``_CachedStorage``) works as it always does.
    """

    def __init__(self, storage: Any) -> None:
        self.seconds, self.calls = 0.0, 0
        self._lock = threading.Lock()
        for name in dir(type(storage)):
            method = getattr(storage, name)
            if not name.startswith("__") and callable(method):
                setattr(storage, name, self._timed(method))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - start
                    self.calls += 1

        return timed


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), or exit now if it already
    has: a SIGKILLed run leaves no worker behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a worker still stops at its deadline
    if os.getppid() != parent:
        os._exit(1)


def worker(
    url: str,
    study: str,
    n_trials: int,
    plan: SwarmPlan,
    draws: Draws,
    scale: float,
    seed: int,
    gates: Any,
    out: Any,
    parent: int,
) -> None:
    """One worker process: open the storage, say ready, wait for the start, run trials with the
    search's worker loop until the study has its trials or the deadline stops it, report, then
    hold its connections until the parent has read the server's CPU time."""
    import resource

    from diffusion.hpo.search import load_study, work
    from diffusion.hpo.storage import open_storage

    die_with_parent(parent)
    ready, go, release = gates
    try:
        storage = open_storage(url, workers=2)
        import optuna

        # A trial failed as stale is counted from the storage; 128 workers' tracebacks would bury the progress.
        optuna.logging.set_verbosity(optuna.logging.CRITICAL)
        clock = StorageClock(storage)
        optuna_study, _ = load_study(study, storage)
    except Exception as exc:  # reported, not raised: the parent counts a worker that never started
        out.put({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return
    ready.release()
    if not go.wait(SETUP_S + plan.deadline_s):
        return
    stop = threading.Event()
    timer = threading.Timer(plan.deadline_s, stop.set)
    timer.daemon = True
    timer.start()
    slept: list[float] = []
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    error = None
    try:
        work(optuna_study, make_objective(draws, plan, scale, seed, slept), n_trials, stop=stop)
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    timer.cancel()
    used = resource.getrusage(resource.RUSAGE_SELF)
    out.put(
        {
            "trials": len(slept),
            "slept_s": sum(slept),
            "storage_s": clock.seconds,
            "storage_calls": clock.calls,
            "cpu_s": (used.ru_utime - cpu.ru_utime) + (used.ru_stime - cpu.ru_stime),
            "wall_s": time.perf_counter() - start,
            "stopped_by_deadline": stop.is_set(),
            **({"error": error} if error else {}),
        }
    )
    release.wait(GRACE_S)
