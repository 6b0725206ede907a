"""The handlers of ``python -m diffusion.hpo run, worker, init, best``: each takes the parsed
arguments and the resolved storage, and loads Optuna and TensorFlow only once those were checked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffusion.cli import check_writable_file, load_backend, quiet_frameworks
from diffusion.errors import ConfigError, StudyNotFound
from diffusion.files import write_json_atomic
from diffusion.hpo.options import EXIT_NOT_READY, config_from
from diffusion.hpo.storage import ENV_VAR, ResolvedStorage, describe
from diffusion.outputs import check_outputs

ROOT = Path(__file__).resolve().parents[2]


def worker_command(study: str, n_trials: int, max_trials: int | None = None) -> list[str]:
    """A worker process's command; it gets the storage from ``worker_env`` (not argv, which `ps` shows)."""
    cmd = [sys.executable, "-m", "diffusion.hpo", "worker", "--study", study, "--n-trials", str(n_trials)]
    return cmd + (["--max-trials", str(max_trials)] if max_trials else [])


def worker_env(storage: ResolvedStorage) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env[ENV_VAR] = storage.url
    return env


def summary_line(c: dict[str, int], best: float | None) -> str:
    best_text = f"{best:.4f}" if best is not None else "-"
    return (
        f"finished {c['finished']} (complete {c['complete']}, pruned {c['pruned']}), running {c['running']}, "
        f"failed {c['fail']}, best {best_text}"
    )


def bar_status(c: dict[str, int], best: float | None) -> str:
    """The bar's short status (the bar itself shows finished of total), so the bar keeps its width at 80 columns."""
    best_text = f"{best:.4f}" if best is not None else "-"
    return f"best {best_text}, running {c['running']}, pruned {c['pruned']}, failed {c['fail']}"


def best_value(study: Any) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def cmd_run(args: Any, storage_spec: ResolvedStorage) -> int:
    config = config_from(args)
    print(storage_spec.line(), flush=True)
    quiet_frameworks()
    from diffusion.hpo.search import counts, create_study, work_in_threads
    from diffusion.hpo.storage import open_storage
    from diffusion.progress import TrialProgress

    storage = open_storage(storage_spec.url, workers=args.workers or args.n_jobs)
    study = create_study(args.study, storage, config)
    if not args.workers:
        load_backend()  # its threads train here (worker processes load their own); the storage answered first
    start = time.perf_counter()
    with TrialProgress(args.n_trials, disable=args.no_progress) as progress:

        def refresh(*, quiet: bool = False) -> dict[str, int]:
            trials = study.get_trials(deepcopy=False)
            c = counts(study, trials)
            progress.update(trials, bar_status(c, best_value(study)), quiet=quiet)
            return c

        before = refresh(quiet=True)  # a study resumed: its earlier trials count, without a line each
        if before["finished"] and not args.no_progress:
            print(f"the study holds {before['finished']} finished trial(s) already", file=sys.stderr, flush=True)
        if args.workers:
            env = worker_env(storage_spec)
            command = worker_command(args.study, args.n_trials, args.recycle)

            def spawn() -> subprocess.Popen:
                return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)

            procs: list[subprocess.Popen | None] = [spawn() for _ in range(args.workers)]
            failed: list[int] = []
            while procs:
                c = refresh()
                for i, p in enumerate(procs):
                    if p is None or p.poll() is None:
                        continue
                    if p.returncode:
                        failed.append(p.returncode)
                    # A worker that ran its --recycle trials exits 0; replace it while work remains.
                    procs[i] = spawn() if p.returncode == 0 and c["finished"] < args.n_trials else None
                procs = [p for p in procs if p is not None]
                time.sleep(0.5)
            if failed:
                print(f"warning: {len(failed)} worker(s) exited with {failed}", file=sys.stderr)
        else:
            import threading

            done = threading.Event()

            def poll() -> None:
                while not done.wait(0.5):
                    refresh()

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                work_in_threads(study, config, args.n_trials, args.n_jobs)
            finally:
                done.set()
                poller.join()  # its last poll ends before the final one, so no line follows the summary
        c = refresh()
    wall = time.perf_counter() - start
    print(
        f"study {args.study!r} on {describe(storage_spec.url)} ({storage_spec.display()}): "
        f"{summary_line(c, best_value(study))}; "
        f"{wall:.1f} s"
    )
    return 0 if c["finished"] >= args.n_trials else 1


def cmd_worker(args: Any, storage_spec: ResolvedStorage) -> int:
    print(storage_spec.line(), flush=True)
    quiet_frameworks()
    from diffusion.hpo.search import load_study, make_objective, work
    from diffusion.hpo.storage import open_storage

    try:
        study, config = load_study(args.study, open_storage(storage_spec.url))
    except StudyNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_READY
    if args.recycle:
        return recycle(study, storage_spec, args.study, args.n_trials, args.recycle)
    load_backend()  # the storage answered (a bad one is refused before the backend loads); it trains next
    ran = work(study, make_objective(config), args.n_trials, max_trials=args.max_trials)
    print(f"worker {os.getpid()} ran {ran} trial(s) of study {args.study!r}", flush=True)
    return 0


def recycle(study: Any, storage_spec: ResolvedStorage, name: str, n_trials: int, every: int) -> int:
    """Run child workers of ``every`` trials each, one after another, until the study has
    ``n_trials`` finished. This process never trains, so it never grows (TensorFlow's per-trial
    state dies with each child).

    Returns:
        0, or the first failing child's exit status.
    """
    from diffusion.hpo.search import counts

    command, env = worker_command(name, n_trials, every), worker_env(storage_spec)
    children = 0
    while counts(study)["finished"] < n_trials:
        code = subprocess.run(command, env=env).returncode
        children += 1
        if code:
            return code if code > 0 else 1  # killed by a signal: still a failure the job must see
    print(f"worker {os.getpid()}: study {name!r} done after {children} worker process(es)", flush=True)
    return 0


def cmd_init(args: Any, storage_spec: ResolvedStorage) -> int:
    config = config_from(args)
    print(storage_spec.line(), flush=True)
    from diffusion.hpo.search import create_study
    from diffusion.hpo.storage import open_storage

    create_study(args.study, open_storage(storage_spec.url), config)
    print(f"study {args.study!r} ready on {storage_spec.display()}")
    return 0


def cmd_best(args: Any, storage_spec: ResolvedStorage) -> int:
    source = "--storage's default" if storage_spec.source == "default" else storage_spec.source
    check_outputs([("--out", args.out)], [(source, storage_spec.file)])
    check_writable_file(args.out, "--out")
    print(storage_spec.line(), flush=True)
    journal = storage_spec.journal
    if journal is not None and not journal.exists():
        raise ConfigError(f"no study named {args.study!r}: journal {str(journal)!r} does not exist.")
    from diffusion.hpo.search import load_study
    from diffusion.hpo.storage import open_storage

    study, config = load_study(args.study, open_storage(storage_spec.url))
    try:
        trial = study.best_trial
    except ValueError:
        raise ConfigError(f"study {args.study!r} has no completed trial yet.") from None
    record = {
        "schema": 1,
        "study": args.study,
        "storage": storage_spec.display(),
        "value": trial.value,
        "trial": trial.number,
        "params": trial.params,
        "search": asdict(config),
        "path": trial.user_attrs.get("path"),
    }
    write_json_atomic(args.out, record)
    print(f"best trial {trial.number}: val loss {trial.value:.4f}, params {trial.params} -> {args.out}")
    return 0
