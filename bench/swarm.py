"""S4 by simulation: ``python -m bench.swarm --json F [--markdown F.md]``.

The report projects 4 nodes x 32 cores = 128 parallel trials against one Optuna storage. This
runs the search's own worker loop (``diffusion.hpo.search.work``: stale-trial checks, counts,
one trial at a time) in 1, 2, 4, ..., 128 worker processes against one PostgreSQL server, with
a stand-in objective: each trial sleeps for the epochs of a trial drawn from a measured search
record (compressed to ``--mean-trial-s``) and reports a loss after every epoch, so the TPE
sampler, the MedianPruner, the heartbeats and the storage do their real work. Per worker count
it measures trials per hour, the time each trial spent in storage calls, and the server's CPU
time per trial; where doubling the workers stops paying is where the search stops scaling.

Every process is bounded: a worker stops taking trials at ``--deadline-s``, and the parent
kills any worker still alive after the grace that follows. Each finished worker count is kept
beside ``--json`` (``--resume`` continues a cut run).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.cli import Parser, bounded, check_writable_file, run, write_json_atomic
from diffusion.errors import ConfigError
from diffusion.outputs import check_outputs, check_readable_file

SCHEMA = "pmt-bench/swarm/1"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "results" / "search-tiny-epyc-2cpu.json"
DEFAULT_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128)
MAX_WORKERS = 128  # the report's 4 x 32; the server is started with room for two connections each
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
    check_readable_file(path, "--trials-from")
    try:
        record = json.loads(path.read_text())
        runs = record["search"]["records"]
    except (ValueError, KeyError, TypeError):
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
        source=str(path.relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name,
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
            if not name.startswith("__") and callable(method) and name not in ("engine", "url"):
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


def worker(
    url: str, study: str, n_trials: int, plan: SwarmPlan, draws: Draws, scale: float, seed: int, gates: Any, out: Any
) -> None:
    """One worker process: open the storage, say ready, wait for the start, run trials with the
    search's worker loop until the study has its trials or the deadline stops it, report, then
    hold its connections until the parent has read the server's CPU time."""
    import resource

    from diffusion.hpo.search import load_study, work
    from diffusion.hpo.storage import open_storage

    ready, go, release = gates
    try:
        storage = open_storage(url, workers=2)
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


def server_cpu_s(port: int) -> float | None:
    """CPU seconds of the PostgreSQL server listening on ``port``: its postmaster, the backends it
    has reaped, and those alive now. None when no such server runs here (an external one)."""
    import psutil

    for proc in psutil.process_iter(["name", "cmdline", "ppid"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] != "postgres" or "-p" not in cmdline or str(port) not in cmdline:
            continue
        try:
            own = proc.cpu_times()
            total = own.user + own.system + own.children_user + own.children_system
            for child in proc.children():
                with_times = child.cpu_times()
                total += with_times.user + with_times.system
            return total
        except psutil.Error:
            return None
    return None


def _count_trials(url: str, study: str) -> dict[str, int]:
    from diffusion.hpo.search import counts, load_study
    from diffusion.hpo.storage import open_storage

    storage = open_storage(url)
    try:
        return counts(load_study(study, storage)[0])
    finally:
        storage.engine.dispose()


def _create(url: str, study: str, plan: SwarmPlan) -> None:
    """The study, created by the parent, whose connections are closed before any worker forks."""
    from diffusion.hpo.search import SearchConfig, create_study
    from diffusion.hpo.storage import open_storage

    storage = open_storage(url)
    config = SearchConfig(
        epochs=plan.epochs,
        pruner="median",
        startup_trials=plan.startup_trials,
        warmup_epochs=plan.warmup_epochs,
        seed=plan.seed,
    )
    create_study(study, storage, config)
    storage.engine.dispose()


def run_count(url: str, port: int | None, plan: SwarmPlan, draws: Draws, workers: int) -> dict[str, Any]:
    """One worker count: a fresh study of ``trials_per_worker * workers`` trials, every worker
    forked from this process, started together, bounded by the deadline and then killed."""
    import multiprocessing

    study = f"swarm-{workers}-{os.getpid()}-{time.time_ns()}"
    n_trials = max(plan.min_trials, plan.trials_per_worker * workers)
    _create(url, study, plan)
    scale = 1.0 if plan.mean_trial_s is None else plan.mean_trial_s / draws.mean_trial_s
    ctx = multiprocessing.get_context("fork")  # the parent's imports are shared, not repeated 128 times
    ready, go, release, out = ctx.Semaphore(0), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(url, study, n_trials, plan, draws, scale, plan.seed * 1000 + i, (ready, go, release), out),
            daemon=True,
        )
        for i in range(workers)
    ]
    reports: list[dict[str, Any]] = []
    try:
        for proc in procs:
            proc.start()
        setup_end = time.monotonic() + SETUP_S
        started = 0
        while started + len(reports) < workers and time.monotonic() < setup_end:
            if ready.acquire(timeout=0.5):
                started += 1
            while not out.empty():
                reports.append(out.get())  # a worker that could not start says why
        if started < workers:
            errors = sorted({r["error"] for r in reports if "error" in r}) or [
                f"{workers - started} workers not ready in {SETUP_S:.0f} s"
            ]
            return {"workers": workers, "error": errors[0]}
        cpu_before = server_cpu_s(port) if port is not None else None
        start = time.perf_counter()
        go.set()
        end = time.monotonic() + plan.deadline_s + GRACE_S
        while len(reports) < workers and time.monotonic() < end:
            try:
                reports.append(out.get(timeout=max(0.1, end - time.monotonic())))
            except queue.Empty:
                break
        wall = time.perf_counter() - start
        cpu_after = server_cpu_s(port) if port is not None else None
    finally:
        release.set()
        for proc in procs:
            proc.join(timeout=10)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    counted = _count_trials(url, study)
    ran = sum(r.get("trials", 0) for r in reports)
    per_trial = lambda key: sum(r.get(key, 0.0) for r in reports) / ran if ran else None  # noqa: E731
    server = None if cpu_before is None or cpu_after is None or not ran else (cpu_after - cpu_before) / ran
    return {
        "workers": workers,
        "study_trials": n_trials,
        "trials": ran,
        "complete": counted["complete"],
        "pruned": counted["pruned"],
        "failed": counted["fail"],
        "wall_s": wall,
        "trials_per_hour": ran / wall * 3600 if wall > 0 else None,
        "busy": sum(r.get("slept_s", 0.0) for r in reports) / (workers * wall) if wall > 0 else None,
        "storage_s_per_trial": per_trial("storage_s"),
        "storage_calls_per_trial": per_trial("storage_calls"),
        "client_cpu_s_per_trial": per_trial("cpu_s"),
        "server_cpu_s_per_trial": server,
        "lost_workers": workers - len(reports),
        "stopped_by_deadline": sum(1 for r in reports if r.get("stopped_by_deadline")),
        "errors": sorted({r["error"] for r in reports if "error" in r}),
        "scale": scale,
    }


def simulate(
    plan: SwarmPlan,
    draws: Draws,
    url: str,
    port: int | None,
    *,
    done: dict[Any, dict[str, Any]] | None = None,
    on_count: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every worker count in order, reusing ``done`` (a cut run's counts, by worker count)."""
    records = []
    for workers in plan.workers:
        record = (done or {}).get(workers)
        if record is None:
            record = run_count(url, port, plan, draws, workers)
            if on_count is not None:
                on_count(record)
        records.append(record)
    return records


def worker_counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4): ascending, distinct, each 1..MAX_WORKERS."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--workers must be worker counts like 1,2,4, but got {text!r}.") from None
    if any(not 1 <= c <= MAX_WORKERS for c in counts):
        raise ConfigError(f"--workers must each be in 1..{MAX_WORKERS}, but got {text!r}.")
    if list(counts) != sorted(set(counts)):
        raise ConfigError(f"--workers must be distinct and ascending, but got {text!r}.")
    return counts


@contextmanager
def storage_for(url: str | None, plan: SwarmPlan) -> Iterator[tuple[str, int | None, str]]:
    """(url, port of a server on this machine or None, its description for the record): the one
    given, or a throw-away server with two connections per worker to spare."""
    from diffusion.hpo.storage import describe, redact

    if url is not None:
        yield url, None, f"{describe(url)} at {redact(url)} (given; its CPU time not measured)"
        return
    from bench import pgserver

    missing = pgserver.missing()
    if missing:
        raise ConfigError(f"cannot start a PostgreSQL server: {missing}; or give --storage postgresql://...")
    with pgserver.postgres_server(max_connections=2 * max(plan.workers) + 20) as (host, port):
        yield f"postgresql://postgres@{host}:{port}/optuna", port, "PostgreSQL 15 on this machine (fsync off)"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.swarm", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=worker_counts, default=DEFAULT_WORKERS, help="worker counts (default 1,2,...,128)"
    )
    parser.add_argument(
        "--trials-per-worker", type=bounded(int, low=1, high=20), default=SwarmPlan.trials_per_worker, help="default 4"
    )
    parser.add_argument(
        "--mean-trial-s",
        type=bounded(float, low=0.2, high=120.0),
        help="compress (or stretch) the drawn trials to this mean length, seconds (default: as measured)",
    )
    parser.add_argument(
        "--deadline-s",
        type=bounded(float, low=10.0, high=900.0),
        default=SwarmPlan.deadline_s,
        help="per worker count: no trial starts after it (default 240)",
    )
    parser.add_argument("--trials-from", type=Path, default=DEFAULT_SOURCE, help="search record to draw trials from")
    parser.add_argument("--storage", help="a PostgreSQL URL (default: a throw-away server on this machine)")
    parser.add_argument("--seed", type=bounded(int, low=0, high=2**31 - 1), default=0)
    parser.add_argument("--json", type=Path, help="the record")
    parser.add_argument("--markdown", type=Path, help="a table and findings, with a PNG plot beside it")
    parser.add_argument("--resume", action="store_true", help="continue a cut run from the counts kept beside --json")
    parser.add_argument("--from", dest="source", type=Path, help="render a saved record; run nothing")
    args = parser.parse_args(argv)
    from bench.swarm_report import write_markdown

    check_outputs(
        [("--json", args.json), ("--markdown", args.markdown)],
        [("--from", args.source), ("--trials-from", args.trials_from)],
    )
    if args.source is not None:
        check_readable_file(args.source, "--from")
        record = json.loads(args.source.read_text())
        if record.get("schema") != SCHEMA:
            raise ConfigError(f"--from {str(args.source)!r} is not a simulation record (schema {SCHEMA}).")
        if args.markdown is not None:
            write_markdown(record, args.markdown)
        _print(record)
        return 0
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown")):
        if path is not None:
            check_writable_file(path, what)
    if args.storage is not None and not args.storage.startswith("postgresql"):
        raise ConfigError("--storage must be a postgresql:// URL (the simulation measures a database server).")
    plan = SwarmPlan(
        workers=args.workers,
        trials_per_worker=args.trials_per_worker,
        mean_trial_s=args.mean_trial_s,
        deadline_s=args.deadline_s,
        seed=args.seed,
    )
    draws = load_draws(args.trials_from, plan.epochs)
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress

    identity = run_identity({**asdict(plan), "draws": asdict(draws)}, "bench/swarm.py", "diffusion/hpo")
    partial = Partial.beside(args.json, identity, resume=args.resume, part="swarm")
    done = {key: rec for key, rec in partial.done().items()}
    start = time.perf_counter()
    with (
        storage_for(args.storage, plan) as (url, port, described),
        JobProgress("swarm", len(plan.workers) - len(done)) as progress,
    ):

        def on_count(rec: dict[str, Any]) -> None:
            partial.append(rec["workers"], rec)
            said = (
                rec.get("error") or f"{rec['trials']} trials in {rec['wall_s']:.1f} s, {rec['trials_per_hour']:,.0f}/h"
            )
            progress.done(f"{rec['workers']} workers", rec, detail=said)

        counts = simulate(plan, draws, url, port, done=done, on_count=on_count)
    from diffusion.environment import environment

    record = {
        "schema": SCHEMA,
        "plan": asdict(plan),
        "draws": {
            "source": draws.source,
            "what": draws.what,
            "mean_trial_s": draws.mean_trial_s,
            "trials": len(draws.epoch_s),
        },
        "storage": described,
        "counts": counts,
        "reused": len(done),
        "wall_s": time.perf_counter() - start,
        "environment": environment(),
    }
    if args.json is not None:
        write_json_atomic(args.json, record)
    if args.markdown is not None:
        write_markdown(record, args.markdown)
    partial.finish()
    _print(record)
    return 0


def _print(record: dict[str, Any]) -> None:
    from bench.swarm_report import findings

    for line in findings(record):
        print(line)


if __name__ == "__main__":
    run(main)
