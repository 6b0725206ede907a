"""Running a study's trials: in threads of this process or in worker processes (``run``), and in
recycled child processes (``worker --recycle``), with the progress and summary lines they print.
What loads the backend and reads the arguments is diffusion/hpo/cli.py's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from diffusion.hpo.search import SearchConfig
from diffusion.hpo.storage import ENV_VAR, ResolvedStorage, describe

ROOT = Path(__file__).resolve().parents[2]
EXIT_NOT_READY = 3  # `worker`: no such study yet; a cluster job retries (2 means retrying cannot help)


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


def run_study(
    study: Any,
    config: SearchConfig,
    storage_spec: ResolvedStorage,
    name: str,
    n_trials: int,
    *,
    workers: int | None,
    every: int,
    n_jobs: int,
    no_progress: bool,
) -> int:
    """Run ``study`` to ``n_trials`` finished trials, in ``n_jobs`` threads of this process (the
    backend loaded already) or in ``workers`` worker processes of ``every`` trials each, replaced
    while work remains; with a progress bar (a line per trial when piped) unless ``no_progress``.

    Returns:
        0 if the study reached ``n_trials``, else 1; the summary line printed either way.
    """
    from diffusion.hpo.search import counts, work_in_threads
    from diffusion.progress import TrialProgress

    start = time.perf_counter()
    with TrialProgress(n_trials, disable=no_progress) as progress:

        def refresh(*, quiet: bool = False) -> dict[str, int]:
            trials = study.get_trials(deepcopy=False)
            c = counts(study, trials)
            progress.update(trials, bar_status(c, best_value(study)), quiet=quiet)
            return c

        before = refresh(quiet=True)  # a study resumed: its earlier trials count, without a line each
        if before["finished"] and not no_progress:
            print(f"the study holds {before['finished']} finished trial(s) already", file=sys.stderr, flush=True)
        if workers:
            env = worker_env(storage_spec)
            command = worker_command(name, n_trials, every)

            def spawn() -> subprocess.Popen:
                return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)

            procs: list[subprocess.Popen | None] = [spawn() for _ in range(workers)]
            failed: list[int] = []
            while procs:
                c = refresh()
                for i, p in enumerate(procs):
                    if p is None or p.poll() is None:
                        continue
                    if p.returncode:
                        failed.append(p.returncode)
                    # A worker that ran its --recycle trials exits 0; replace it while work remains.
                    procs[i] = spawn() if p.returncode == 0 and c["finished"] < n_trials else None
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
                work_in_threads(study, config, n_trials, n_jobs)
            finally:
                done.set()
                poller.join()  # its last poll ends before the final one, so no line follows the summary
        c = refresh()
    wall = time.perf_counter() - start
    print(
        f"study {name!r} on {describe(storage_spec.url)} ({storage_spec.display()}): "
        f"{summary_line(c, best_value(study))}; "
        f"{wall:.1f} s"
    )
    return 0 if c["finished"] >= n_trials else 1


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
