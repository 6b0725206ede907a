"""``python -m diffusion.hpo {run,init,worker,sbatch,best}``: hyperparameter search with Optuna.

Arguments are checked before TensorFlow (and, where possible, Optuna) load. Every subcommand
takes its storage from ``--storage``, else ``$OPTUNA_STORAGE``, else ``results/hpo/STUDY.log``,
and prints which one it uses. Exit status: 0 done; 2 bad input, or the storage cannot be opened
(fail at once); 3 (``worker``) the study is not in the storage yet (retry later).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffusion.cli import (
    FRAMEWORK_LOGS,
    SEED,
    Parser,
    bounded,
    check_writable_file,
    load_backend,
    quiet_frameworks,
    run,
)
from diffusion.errors import ConfigError, StudyNotFound
from diffusion.files import write_json_atomic
from diffusion.hpo.sbatch import SITE_FLAGS, sbatch_script
from diffusion.hpo.search import PRUNERS, SearchConfig
from diffusion.hpo.storage import ENV_VAR, ResolvedStorage, resolve_storage
from diffusion.hpo.workers import EXIT_NOT_READY, recycle, run_study
from diffusion.outputs import check_outputs
from diffusion.presets import PRESETS

# Upper bounds on counts keep a mistyped number from queueing years of trials or starting
# thousands of processes; every real search here is far below them.
TRIALS = bounded(int, low=1, high=100_000)
EXIT_CODES = (
    "exit status: 0 done; 2 bad input or the storage cannot be opened (fail at once); "
    "3 the study is not in the storage yet (retry)"
)


def build_parser() -> Parser:
    parser = Parser(prog="python -m diffusion.hpo", description=__doc__.splitlines()[0], epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(p: Parser, *, trials: bool = True) -> None:
        p.add_argument("--study", required=True, help="study name")
        p.add_argument(
            "--storage",
            help=f"a journal file (PATH or journal:PATH), sqlite:///F or postgresql://USER:PW@HOST/DB; "
            f"default ${ENV_VAR}, else results/hpo/STUDY.log",
        )
        if trials:
            p.add_argument(
                "--n-trials", type=TRIALS, required=True, help="finished (complete or pruned) trials to reach"
            )

    def search(p: Parser) -> None:
        p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)} (default tiny)")
        p.add_argument("--epochs", type=bounded(int, low=1, high=1000), default=5, help="epochs per trial (default 5)")
        p.add_argument("--path", default="neu", help="path spec trials train with (default neu)")
        p.add_argument("--seed", type=SEED, default=0, help="sampler and training seed (default 0)")
        p.add_argument("--pruner", default="median", help=f"one of {', '.join(PRUNERS)} (default median)")
        p.add_argument(
            "--startup-trials",
            type=bounded(int, low=0, high=100_000),
            default=5,
            help="finished trials before pruning starts (default 5)",
        )
        p.add_argument(
            "--warmup-epochs",
            type=bounded(int, low=0, high=1000),
            default=3,
            help="no pruning before this epoch (default 3)",
        )

    p = sub.add_parser(
        "run", help="run a study on this machine with threads or worker processes", epilog=FRAMEWORK_LOGS
    )
    common(p)
    search(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--n-jobs", type=bounded(int, low=1, high=256), default=1, help="threads in this process (default 1)"
    )
    group.add_argument(
        "--workers",
        type=bounded(int, low=1, high=1000),
        help="separate worker processes joining the study (default: none, trials run in threads of this process)",
    )
    p.add_argument(
        "--recycle",
        type=TRIALS,
        default=5,
        help="with --workers: replace a worker process after this many trials (default 5); TensorFlow "
        "keeps ~100 MiB of compiled-step state per trial that only a new process gives back",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress: neither the bar (on a terminal) nor the line per finished trial (when piped)",
    )

    p = sub.add_parser(
        "worker",
        help="join an existing study as one process (e.g. a SLURM array task)",
        epilog=f"{EXIT_CODES}. {FRAMEWORK_LOGS}",
    )
    common(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--max-trials",
        type=TRIALS,
        help="exit after this many trials (memory: see `run --recycle`; default: when the study is done)",
    )
    group.add_argument(
        "--recycle",
        type=TRIALS,
        help="run trials in a fresh child process, replaced after this many trials, until the study is done "
        "(memory: see `run --recycle`; default: trials run in this process)",
    )

    p = sub.add_parser("sbatch", help="print a SLURM array script that starts W workers on a shared storage")
    common(p)
    search(p)
    p.add_argument("--workers", type=bounded(int, low=1, high=1000), required=True, help="array tasks, one worker each")
    p.add_argument("--time", default="04:00:00", help="wall-time limit per task (default 04:00:00)")
    p.add_argument(
        "--cpus-per-task", type=bounded(int, low=1, high=1024), default=4, help="cores per worker (default 4)"
    )
    p.add_argument(
        "--recycle", type=TRIALS, default=5, help="trials per worker process (default 5; see `run --recycle`)"
    )
    for flag in SITE_FLAGS:
        p.add_argument(f"--{flag}", help=f"SLURM --{flag} (e.g. required at NERSC); left out when not given")
    p.add_argument(
        "--setup",
        help="shell line each task runs first, verbatim, e.g. 'module load python; . ~/venv/bin/activate'",
    )

    p = sub.add_parser(
        "init",
        help="create the study with its search settings (idempotent); cluster jobs run it once",
        epilog=EXIT_CODES,
    )
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


# `+`: the search suite names its studies after its runs ("sequential+pruning-0").
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
STUDY_CHARS = "1-100 of A-Z a-z 0-9 _ . + - (the first a letter or digit)"


def check_study(name: str) -> str:
    """Refuse a study name that is not a plain word: it becomes a file name and a SLURM job name.

    Raises:
        ConfigError: any character outside ``STUDY_CHARS``.
    """
    if not STUDY_NAME.fullmatch(name):
        raise ConfigError(f"`--study` must be {STUDY_CHARS}, but got {name!r}.")
    return name


def cmd_run(args: Any, storage_spec: ResolvedStorage) -> int:
    config = config_from(args)
    print(storage_spec.line(), flush=True)
    quiet_frameworks()
    from diffusion.hpo.search import create_study
    from diffusion.hpo.storage import open_storage

    storage = open_storage(storage_spec.url, workers=args.workers or args.n_jobs)
    study = create_study(args.study, storage, config)
    if not args.workers:
        load_backend()  # its threads train here (worker processes load their own); the storage answered first
    return run_study(
        study, config, storage_spec, args.study, args.n_trials, workers=args.workers, every=args.recycle,
        n_jobs=args.n_jobs, no_progress=args.no_progress,
    )  # fmt: skip


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


def cmd_sbatch(args: Any, storage_spec: ResolvedStorage) -> int:
    print(sbatch_script(args, config_from(args), storage_spec))
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


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    # A crash inside TensorFlow prints no Python error; this prints every thread's stack on
    # SIGSEGV and friends, so a crashed search says where it was.
    faulthandler.enable()
    return dispatch(argv)


def dispatch(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Check the arguments and run the subcommand (``main`` without the crash handler, for tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_study(args.study)
    if args.command in ("run", "sbatch", "init"):
        config_from(args)  # validates preset, path, pruner, epochs before anything loads
    storage = resolve_storage(args.storage, args.study, environ)  # one rule for every subcommand
    commands = {"run": cmd_run, "init": cmd_init, "worker": cmd_worker, "sbatch": cmd_sbatch, "best": cmd_best}
    return commands[args.command](args, storage)


if __name__ == "__main__":
    run(main)
