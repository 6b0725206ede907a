"""The Optuna study: objective, pruner, and the worker loop that threads and processes share.

Workers coordinate only through Optuna's storage: each takes one trial at a time
(``optimize(n_trials=1)``: enqueued and retried trials first), and stops when the study has
its finished trials. A worker killed mid-trial stops beating; the next trial start anywhere
fails its trial and Optuna's retry callback re-enqueues it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import psutil

from diffusion.errors import ConfigError, StudyNotFound, TrainingDiverged
from diffusion.hpo.storage import scrub
from diffusion.paths import TrainingPath, format_path, parse_path
from diffusion.presets import PRESETS, Preset, get_preset

PRUNERS = ("median", "none")
ATTR_CONFIG = "search_config"


@dataclass(frozen=True)
class SearchConfig:
    """What every worker of a study needs; stored in the study so workers agree.

    Attributes:
        preset: data and default model size.
        epochs: epochs per trial; the validation loss is reported after each.
        path: the training path trials use (any spec; NEU by default).
        seed: weight/batch-order seed of every trial, and the sampler seed of the process that
            creates the study (worker processes derive their own: ``worker_sampler_seed``).
        pruner: ``median`` (the seed's MedianPruner) or ``none``.
        startup_trials: trials that finish before the pruner judges others.
        warmup_epochs: no pruning before this epoch (the seed: 3).
    """

    preset: str = "tiny"
    epochs: int = 5
    path: str = "neu"
    seed: int = 0
    pruner: str = "median"
    startup_trials: int = 5
    warmup_epochs: int = 3

    def __post_init__(self) -> None:
        # The spec and the preset's name are how a study stores the config (workers read it
        # back): they are parsed here, once per config, and every trial takes the values.
        object.__setattr__(self, "_preset", get_preset(self.preset))
        object.__setattr__(self, "_path", parse_path(self.path))
        if self.epochs < 1:
            raise ConfigError(f"`epochs` must be at least 1, but got {self.epochs}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"`pruner` must be one of {', '.join(PRUNERS)}, but got {self.pruner!r}.")
        if self.startup_trials < 0 or self.warmup_epochs < 0:
            raise ConfigError("`startup_trials` and `warmup_epochs` must be at least 0.")

    @property
    def preset_value(self) -> Preset:
        return self._preset  # type: ignore[attr-defined]

    @property
    def training_path(self) -> TrainingPath:
        return self._path  # type: ignore[attr-defined]


def make_pruner(config: SearchConfig) -> Any:
    import optuna

    if config.pruner == "none":
        return optuna.pruners.NopPruner()
    # Steps are 1-based epochs, so n_warmup_steps=3 allows pruning from epoch 3 on.
    return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials, n_warmup_steps=config.warmup_epochs)


def create_study(name: str, storage: Any, config: SearchConfig) -> Any:
    """Create the study, or load it if it exists with the same configuration.

    Raises:
        ConfigError: the study exists with another configuration.
    """
    import optuna

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=make_pruner(config),
    )
    stored = study.user_attrs.get(ATTR_CONFIG)
    if stored is None:
        study.set_user_attr(ATTR_CONFIG, asdict(config))
    elif stored != asdict(config):
        raise ConfigError(f"study {name!r} exists with configuration {stored}; this run asks for {asdict(config)}.")
    return study


def worker_sampler_seed(seed: int) -> int:
    """A sampler seed of this process's own, drawn from the study's seed, the process id and
    the clock.

    Every worker process (parallel ones, and each recycled child) loads the study with its own
    sampler. Seeded alike, they all proposed the same configurations while TPE was still
    sampling at random: two workers' first trials were identical. A study spread over processes
    is reproducible from its stored trials, not from one seed.
    """
    import os

    import numpy as np

    entropy = [seed, os.getpid(), time.time_ns() & 0xFFFFFFFF]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def load_study(name: str, storage: Any) -> tuple[Any, SearchConfig]:
    """Load a study and the configuration its creator stored, with a sampler seeded for this
    process (``worker_sampler_seed``).

    Raises:
        StudyNotFound: no such study (the message lists the studies there).
        ConfigError: the storage cannot be read.
    """
    import optuna

    try:
        summaries = optuna.get_all_study_summaries(storage)
    except Exception as exc:
        # A driver's message may quote the connection URL; RDBStorage keeps it as `url`.
        message = scrub(str(exc), storage.url) if isinstance(getattr(storage, "url", None), str) else str(exc)
        raise ConfigError(f"cannot read studies from the storage: {message}") from None
    names = [s.study_name for s in summaries]
    if name not in names:
        raise StudyNotFound(f"no study named {name!r} in this storage; studies there: {', '.join(names) or 'none'}.")
    probe = optuna.load_study(study_name=name, storage=storage)
    config = SearchConfig(**probe.user_attrs.get(ATTR_CONFIG, {}))
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=worker_sampler_seed(config.seed)),
        pruner=make_pruner(config),
    )
    return study, config


@lru_cache(maxsize=4)
def _prepared(preset_name: str) -> Any:
    from diffusion.data import prepare

    return prepare(PRESETS[preset_name])


class RuntimeGate:
    """Lets trials in threads train side by side, but gives building and freeing a trial's
    model the runtime to themselves.

    Building a trainer reseeds the runtime and traces functions; freeing one destroys its
    variables, functions and input pipeline. Done while another thread's step ran, this
    crashed the process now and then (SIGSEGV in a TensorFlow thread) or left a step that
    never returned (a core showed an op thread waiting on a mutex no thread held). A builder
    waits for running epochs to end, and no epoch starts while one waits, so builders are
    not starved.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and self._waiting == 0)
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and self._running == 0)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_runtime = RuntimeGate()


def make_objective(config: SearchConfig, *, threads: int = 1) -> Callable[[Any], float]:
    """The objective: train with the trial's parameters, report validation loss per epoch.

    A NaN or infinite loss prunes the trial and records why (``user_attrs['pruned_reason']``).
    Keras state is cleared between trials (single-threaded workers only: clearing is global),
    and each trial records the worker's RSS at its end so growth per trial can be checked.
    """
    from diffusion.hpo.space import apply_params, suggest

    def objective(trial: Any) -> float:
        import keras
        import optuna

        from diffusion.trainer import Trainer

        params = suggest(trial)
        preset, path = apply_params(config.preset_value, config.training_path, params)
        trial.set_user_attr("path", format_path(path))
        start = time.perf_counter()
        with _runtime.exclusive():
            trainer = Trainer(preset, path, seed=config.seed, data=_prepared(config.preset))
        epochs_run = 0
        try:
            for epoch in range(1, config.epochs + 1):
                with _runtime.shared():
                    trainer.train_epoch()
                    loss = trainer.validate().loss
                epochs_run = epoch
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned by the median rule at epoch {epoch}")
            return loss
        except TrainingDiverged as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        finally:
            trial.set_user_attr("epochs_run", epochs_run)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            with _runtime.exclusive():
                trainer.close()
                del trainer
                if threads == 1:
                    keras.backend.clear_session()
                gc.collect()
            trial.set_user_attr("rss_mib_end", psutil.Process().memory_info().rss / 2**20)

    return objective


def counts(study: Any, trials: list[Any] | None = None) -> dict[str, int]:
    """Trials by state (lower-case names) and ``finished`` (complete + pruned); from ``trials``
    when the caller has just polled them."""
    from optuna.trial import TrialState

    out = {s.name.lower(): 0 for s in TrialState}
    for trial in study.get_trials(deepcopy=False) if trials is None else trials:
        out[trial.state.name.lower()] += 1
    out["finished"] = out["complete"] + out["pruned"]
    return out


def work(
    study: Any,
    objective: Callable[[Any], float],
    n_trials: int,
    *,
    poll_s: float = 0.5,
    stop: threading.Event | None = None,
    max_trials: int | None = None,
) -> int:
    """Run trials one at a time until the study has ``n_trials`` finished (complete or pruned),
    or this worker has run ``max_trials``.

    Returns:
        How many trials this worker ran.
    """
    import optuna

    ran = 0
    while (stop is None or not stop.is_set()) and (max_trials is None or ran < max_trials):
        optuna.storages.fail_stale_trials(study)  # retries the trials of killed workers
        c = counts(study)
        if c["finished"] >= n_trials:
            break
        if c["finished"] + c["running"] >= n_trials and c["waiting"] == 0:
            time.sleep(poll_s)  # the rest is running elsewhere; stay in case a worker dies
            continue
        study.optimize(objective, n_trials=1)
        ran += 1
    return ran


def work_in_threads(study: Any, config: SearchConfig, n_trials: int, n_jobs: int) -> None:
    """``n_jobs`` threads sharing one study (Optuna's n_jobs model, with the worker loop above)."""
    objective = make_objective(config, threads=n_jobs)
    if n_jobs == 1:
        work(study, objective, n_trials)
        return
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work(study, objective, n_trials)
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"hpo-{i}") for i in range(n_jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
