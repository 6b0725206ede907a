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

import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.swarm_trial import DEFAULT_WORKERS, GRACE_S, ROOT, SETUP_S, Draws, SwarmPlan, load_draws, worker
from diffusion.cli import Parser, bounded, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import read_json_record, write_json_atomic
from diffusion.outputs import check_outputs

SCHEMA = "pmt-bench/swarm/1"
DEFAULT_SOURCE = ROOT / "results" / "search-tiny-epyc-2cpu.json"
MAX_WORKERS = 128  # the report's 4 x 32; the server is started with room for two connections each


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
            args=(
                url,
                study,
                n_trials,
                plan,
                draws,
                scale,
                plan.seed * 1000 + i,
                (ready, go, release),
                out,
                os.getpid(),
            ),
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
    ran = sum(r.get("trials", 0) for r in reports)  # every trial started, a failed one included
    finished = counted["complete"] + counted["pruned"]  # what the search got done
    per_trial = lambda key: sum(r.get(key, 0.0) for r in reports) / ran if ran else None  # noqa: E731
    server = None if cpu_before is None or cpu_after is None or not ran else (cpu_after - cpu_before) / ran
    return {
        "workers": workers,
        "study_trials": n_trials,
        "trials": finished,
        "attempts": ran,
        "complete": counted["complete"],
        "pruned": counted["pruned"],
        "failed": counted["fail"],
        "wall_s": wall,
        "trials_per_hour": finished / wall * 3600 if wall > 0 else None,
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
    """``1,2,4`` -> (1, 2, 4): ascending, distinct, each 1..MAX_WORKERS (an argparse type)."""
    import argparse

    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be worker counts like 1,2,4, but got {text!r}.") from None
    if any(not 1 <= c <= MAX_WORKERS for c in counts):
        raise argparse.ArgumentTypeError(f"must be worker counts in 1..{MAX_WORKERS}, but got {text!r}.")
    if list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"must be distinct and ascending, but got {text!r}.")
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
    from bench.partial import partial_path
    from bench.swarm_report import write_markdown

    png = args.markdown.with_suffix(".png") if args.markdown is not None else None
    kept = partial_path(args.json, "swarm") if args.json is not None and args.source is None else None
    check_outputs(
        [
            ("--json", args.json),
            ("--json's partial record", kept),
            ("--markdown", args.markdown),
            ("--markdown's plot", png),
        ],
        [("--from", args.source), ("--trials-from", args.trials_from)],
    )
    if args.source is not None:
        record = read_json_record(args.source, "--from", schema=SCHEMA)
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

    identity = run_identity(
        {**asdict(plan), "draws": asdict(draws)}, "bench/swarm.py", "bench/swarm_trial.py", "diffusion/hpo"
    )
    partial = Partial.beside(args.json, identity, resume=args.resume, part="swarm")
    done = partial.done()
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
