"""``python -m diffusion.hpo {run,worker,sbatch,best}``: hyperparameter search with Optuna.

Arguments are checked before TensorFlow (and, where possible, Optuna) load.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffusion.cli import Parser, check_writable_file, quiet_frameworks, run, write_json_atomic
from diffusion.errors import ConfigError
from diffusion.hpo.search import PRUNERS, SearchConfig
from diffusion.hpo.storage import default_storage, describe, redact
from diffusion.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> Parser:
    parser = Parser(prog="python -m diffusion.hpo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(p: Parser, *, trials: bool = True) -> None:
        p.add_argument("--study", required=True, help="study name")
        p.add_argument(
            "--storage", help="journal:PATH (default results/hpo/STUDY.journal), sqlite:///F, postgresql://..."
        )
        if trials:
            p.add_argument("--n-trials", type=int, required=True, help="finished (complete or pruned) trials to reach")

    def search(p: Parser) -> None:
        p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)} (default tiny)")
        p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
        p.add_argument("--path", default="neu", help="path spec trials train with (default neu)")
        p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
        p.add_argument("--pruner", default="median", help=f"one of {', '.join(PRUNERS)} (default median)")
        p.add_argument(
            "--startup-trials", type=int, default=5, help="finished trials before pruning starts (default 5)"
        )
        p.add_argument("--warmup-epochs", type=int, default=3, help="no pruning before this epoch (default 3)")

    p = sub.add_parser("run", help="run a study on this machine with threads or worker processes")
    common(p)
    search(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--n-jobs", type=int, default=1, help="threads in this process (default 1)")
    group.add_argument("--workers", type=int, help="separate worker processes joining the study")
    p.add_argument(
        "--recycle",
        type=int,
        default=5,
        help="with --workers: replace a worker process after this many trials (default 5); TensorFlow "
        "keeps ~100 MiB of compiled-step state per trial that only a new process gives back",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("worker", help="join an existing study as one process (e.g. a SLURM array task)")
    common(p)
    p.add_argument("--max-trials", type=int, help="exit after this many trials (memory: see `run --recycle`)")

    p = sub.add_parser("sbatch", help="print a SLURM array script that starts W workers on a shared storage")
    common(p)
    search(p)
    p.add_argument("--workers", type=int, required=True, help="array tasks, one worker each")
    p.add_argument("--time", default="04:00:00", help="wall-time limit per task (default 04:00:00)")
    p.add_argument("--cpus-per-task", type=int, default=4, help="cores per worker (default 4)")
    p.add_argument("--partition", help="SLURM partition")

    p = sub.add_parser("init", help="create a study (idempotent), for cluster jobs")
    common(p, trials=False)
    search(p)

    p = sub.add_parser("best", help="write the best trial's parameters for `diffusion.train --config`")
    common(p, trials=False)
    p.add_argument("--out", type=Path, required=True, help="best.json to write")
    return parser


def config_from(args: Any) -> SearchConfig:
    return SearchConfig(
        preset=args.preset,
        epochs=args.epochs,
        path=args.path,
        seed=args.seed,
        pruner=args.pruner,
        startup_trials=args.startup_trials,
        warmup_epochs=args.warmup_epochs,
    )


def check_counts(args: Any) -> None:
    if getattr(args, "n_trials", 1) < 1:
        raise ConfigError(f"--n-trials must be at least 1, but got {args.n_trials}.")
    if getattr(args, "n_jobs", 1) < 1:
        raise ConfigError(f"--n-jobs must be at least 1, but got {args.n_jobs}.")
    for name in ("recycle", "max_trials"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, but got {getattr(args, name)}.")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, but got {args.workers}.")


def worker_command(study: str, storage: str, n_trials: int, max_trials: int | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "diffusion.hpo",
        "worker",
        "--study",
        study,
        "--storage",
        storage,
        "--n-trials",
        str(n_trials),
    ]
    return cmd + (["--max-trials", str(max_trials)] if max_trials else [])


def summary_line(c: dict[str, int], best: float | None) -> str:
    best_text = f"{best:.4f}" if best is not None else "-"
    return (
        f"finished {c['finished']} (complete {c['complete']}, pruned {c['pruned']}), running {c['running']}, "
        f"failed {c['fail']}, best {best_text}"
    )


def best_value(study: Any) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def cmd_run(args: Any) -> int:
    config = config_from(args)
    storage_url = args.storage or default_storage(args.study)
    quiet_frameworks()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from diffusion.hpo.search import counts, create_study, work_in_threads
    from diffusion.hpo.storage import open_storage

    storage = open_storage(storage_url, workers=args.workers or args.n_jobs)
    study = create_study(args.study, storage, config)
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=args.no_progress,
    ) as progress:
        task = progress.add_task("trials", total=args.n_trials, status="")

        def refresh() -> dict[str, int]:
            c = counts(study)
            progress.update(
                task, completed=min(c["finished"], args.n_trials), status=summary_line(c, best_value(study))
            )
            return c

        if args.workers:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            command = worker_command(args.study, storage_url, args.n_trials, args.recycle)

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
        c = refresh()
    wall = time.perf_counter() - start
    print(
        f"study {args.study!r} on {describe(storage_url)} ({redact(storage_url)}): {summary_line(c, best_value(study))}; "
        f"{wall:.1f} s"
    )
    return 0 if c["finished"] >= args.n_trials else 1


def cmd_worker(args: Any) -> int:
    storage_url = args.storage or default_storage(args.study)
    quiet_frameworks()
    from diffusion.hpo.search import load_study, make_objective, work
    from diffusion.hpo.storage import open_storage

    study, config = load_study(args.study, open_storage(storage_url))
    ran = work(study, make_objective(config), args.n_trials, max_trials=args.max_trials)
    print(f"worker {os.getpid()} ran {ran} trial(s) of study {args.study!r}")
    return 0


def storage_line(storage: str) -> str:
    """The script's STORAGE assignment; a URL with a password is read from the environment instead,
    so the password never lands in the script, its logs or the terminal."""
    if redact(storage) == storage:
        return f"export OPTUNA_STORAGE={shlex.quote(storage)}"
    return f': "${{OPTUNA_STORAGE:?export OPTUNA_STORAGE={redact(storage)} (with the password) before sbatch}}"'


def cmd_sbatch(args: Any) -> int:
    config = config_from(args)
    if args.storage is None or args.storage.startswith(("journal:", "sqlite")):
        note = "# A journal file works across nodes only on a shared file system with working locks; PostgreSQL is safer.\n"
    else:
        note = ""
    storage = args.storage or default_storage(args.study)
    search_flags = (
        f"--preset {config.preset} --epochs {config.epochs} --path {shlex.quote(config.path)} "
        f"--seed {config.seed} --pruner {config.pruner} --startup-trials {config.startup_trials} "
        f"--warmup-epochs {config.warmup_epochs}"
    )
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=hpo-{args.study}",
        f"#SBATCH --array=0-{args.workers - 1}",
        f"#SBATCH --cpus-per-task={args.cpus_per_task}",
        f"#SBATCH --time={args.time}",
        "#SBATCH --output=hpo-%A_%a.out",
    ]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    lines += [
        "# Generated by `python -m diffusion.hpo sbatch`. Each array task is one worker of the same study;",
        "# workers coordinate through the storage only, and a killed task's trial is retried by the others.",
        note.rstrip(),
        "set -euo pipefail",
        'export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK" TF_NUM_INTRAOP_THREADS="$SLURM_CPUS_PER_TASK"',
        storage_line(storage),
        "# Task 0 creates the study (idempotent); the others wait for it to exist.",
        'if [ "$SLURM_ARRAY_TASK_ID" = 0 ]; then',
        f"  python -m diffusion.hpo init --study {shlex.quote(args.study)} {search_flags}",
        "fi",
        "for attempt in $(seq 60); do",
        f"  if python -m diffusion.hpo worker --study {shlex.quote(args.study)} --n-trials {args.n_trials}; "
        "then exit 0; else status=$?; fi",
        '  [ "$status" = 2 ] || exit "$status"  # 2: the study is not there yet; anything else is a failure',
        "  sleep 10",
        "done",
        'echo "the study never appeared in the storage" >&2; exit 2',
    ]
    print("\n".join(line for line in lines if line))
    return 0


def cmd_init(args: Any) -> int:
    config = config_from(args)
    storage_url = args.storage or default_storage(args.study)
    from diffusion.hpo.search import create_study
    from diffusion.hpo.storage import open_storage

    create_study(args.study, open_storage(storage_url), config)
    print(f"study {args.study!r} ready on {redact(storage_url)}")
    return 0


def cmd_best(args: Any) -> int:
    check_writable_file(args.out, "--out")
    storage_url = args.storage or default_storage(args.study)
    if storage_url.startswith("journal:") and not Path(storage_url.removeprefix("journal:")).exists():
        raise ConfigError(
            f"no study named {args.study!r}: journal {storage_url.removeprefix('journal:')!r} does not exist."
        )
    from diffusion.hpo.search import load_study
    from diffusion.hpo.storage import open_storage

    study, config = load_study(args.study, open_storage(storage_url))
    try:
        trial = study.best_trial
    except ValueError:
        raise ConfigError(f"study {args.study!r} has no completed trial yet.") from None
    record = {
        "schema": 1,
        "study": args.study,
        "storage": redact(storage_url),
        "value": trial.value,
        "trial": trial.number,
        "params": trial.params,
        "search": asdict(config),
        "path": trial.user_attrs.get("path"),
    }
    write_json_atomic(args.out, record)
    print(f"best trial {trial.number}: val loss {trial.value:.4f}, params {trial.params} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_counts(args)
    if args.command in ("run", "sbatch", "init"):
        config_from(args)  # validates preset, path, pruner, epochs before anything loads
    return {"run": cmd_run, "worker": cmd_worker, "sbatch": cmd_sbatch, "best": cmd_best, "init": cmd_init}[
        args.command
    ](args)


if __name__ == "__main__":
    run(main)
