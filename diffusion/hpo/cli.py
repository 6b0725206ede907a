"""``python -m diffusion.hpo {run,init,worker,sbatch,best}``: hyperparameter search with Optuna.

Arguments are checked before TensorFlow (and, where possible, Optuna) load. Every subcommand
takes its storage from ``--storage``, else ``$OPTUNA_STORAGE``, else ``results/hpo/STUDY.log``,
and prints which one it uses. Exit status: 0 done; 2 bad input, or the storage cannot be opened
(fail at once); 3 (``worker``) the study is not in the storage yet (retry later).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
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
from diffusion.hpo.search import PRUNERS, SearchConfig
from diffusion.hpo.storage import ENV_VAR, ResolvedStorage, describe, has_secret, redact, resolve_storage
from diffusion.outputs import check_outputs
from diffusion.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]
EXIT_NOT_READY = 3  # `worker`: no such study yet; a cluster job retries (2 means retrying cannot help)
SITE_FLAGS = ("account", "constraint", "qos", "partition")  # sbatch options a site may require
NOT_READY_TRIES, NOT_READY_SLEEP_S = 120, 5  # how long other tasks wait for task 0's `init`: 10 minutes
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


# `+`: the search suite names its studies after its runs ("sequential+pruning-0").
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
STUDY_CHARS = "1-100 of A-Z a-z 0-9 _ . + - (the first a letter or digit)"
# sbatch reads an #SBATCH value up to whitespace or '#', and takes '"' and '\\' as quoting (not
# a shell's single quotes, so shlex.quote would put quotes into the value); bash reads the line
# as a comment that a newline would end. A value without these characters is safe for both.
SBATCH_UNSAFE = re.compile(r"""[\s"'\\#]|[^ -~]""")


# sbatch's --time formats (its man page); anything else is refused by sbatch on the cluster, after
# the script was copied there.
SLURM_TIME = re.compile(
    r"[0-9]{1,6}(:[0-9]{1,2}){0,2}|[0-9]{1,4}-[0-9]{1,2}(:[0-9]{1,2}){0,2}|UNLIMITED|INFINITE", re.IGNORECASE
)
SLURM_TIME_FORMS = (
    "MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS"
)


def check_time(value: str) -> str:
    """Refuse a wall-time limit that is none of sbatch's forms.

    Raises:
        ConfigError: naming the forms and the value.
    """
    if not SLURM_TIME.fullmatch(value):
        raise ConfigError(f"`--time` must be one of sbatch's forms {SLURM_TIME_FORMS}, but got {value!r}.")
    return value


def check_study(name: str) -> str:
    """Refuse a study name that is not a plain word: it becomes a file name and a SLURM job name.

    Raises:
        ConfigError: any character outside ``STUDY_CHARS``.
    """
    if not STUDY_NAME.fullmatch(name):
        raise ConfigError(f"`--study` must be {STUDY_CHARS}, but got {name!r}.")
    return name


def sbatch_value(flag: str, value: str) -> str:
    """``value`` for an ``#SBATCH`` line, refused if sbatch or bash could read it otherwise."""
    if not value or SBATCH_UNSAFE.search(value):
        raise ConfigError(
            f"`{flag}` must be printable ASCII without whitespace, quotes, '\\' or '#' (it goes into an "
            f"#SBATCH line), but got {value!r}."
        )
    return value


def storage_lines(storage: str) -> list[str]:
    """The script's OPTUNA_STORAGE lines. A URL that may hold a password is read from the job's
    environment instead, so the password never lands in the script, its logs or the terminal."""
    if not has_secret(storage):
        return [f"export OPTUNA_STORAGE={shlex.quote(storage)}"]
    return [
        comment(f"export OPTUNA_STORAGE={redact(storage)} (with the password) before sbatch"),
        ': "${OPTUNA_STORAGE:?must be exported before sbatch: the storage URL with its password}"',
    ]


def comment(text: str) -> str:
    """``text`` as one shell comment line: a newline in a value would end the comment and run the rest."""
    return "# " + text.encode("unicode_escape").decode("ascii")


def cmd_sbatch(args: Any, storage_spec: ResolvedStorage) -> int:
    config = config_from(args)
    if storage_spec.journal is not None or storage_spec.url.startswith("sqlite"):
        note = "# A journal file works across nodes only on a shared file system with working locks; PostgreSQL is safer.\n"
    else:
        note = ""
    study = shlex.quote(args.study)
    never_appeared = f"study {args.study} never appeared in the storage; task 0 creates it (see its hpo-*_0.out)"
    # Every value is quoted, the checked ones too: a later change to a check must not open the script.
    search_flags = shlex.join(
        [
            *("--preset", config.preset, "--epochs", str(config.epochs), "--path", config.path),
            *("--seed", str(config.seed), "--pruner", config.pruner, "--startup-trials", str(config.startup_trials)),
            *("--warmup-epochs", str(config.warmup_epochs)),
        ]
    )
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={sbatch_value('--study', 'hpo-' + args.study)}",
        f"#SBATCH --array=0-{args.workers - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={args.cpus_per_task}",
        f"#SBATCH --time={check_time(sbatch_value('--time', args.time))}",
        "#SBATCH --output=hpo-%A_%a.out",
    ]
    lines += [
        f"#SBATCH --{flag}={sbatch_value('--' + flag, getattr(args, flag))}"
        for flag in SITE_FLAGS
        if getattr(args, flag)
    ]
    lines += [
        "# Generated by `python -m diffusion.hpo sbatch`. Each array task is one worker of the same study;",
        "# workers coordinate through the storage only, and a killed task's trial is retried by the others.",
        comment(f"Storage: {storage_spec.display()} (from {storage_spec.source})."),
        note.rstrip(),
        "set -eo pipefail",
        args.setup or "",
        "set -u  # only after the set-up line: module and venv scripts read unset variables",
        'export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK" TF_NUM_INTRAOP_THREADS="$SLURM_CPUS_PER_TASK"',
        *storage_lines(storage_spec.url),
        "# Task 0 creates the study (idempotent); the others wait for it to exist.",
        'if [ "$SLURM_ARRAY_TASK_ID" = 0 ]; then',
        f"  python -m diffusion.hpo init --study {study} {search_flags}",
        "fi",
        f"# The worker reads ${ENV_VAR}. It runs trials in child processes of {args.recycle} trials each",
        "# (TensorFlow keeps memory per trial that only a new process gives back) until the study has",
        f"# {args.n_trials} finished. Exit status 3: the study is not there yet, so retry; 2 (bad storage or input)",
        "# and any other failure end the task at once.",
        f"for attempt in $(seq {NOT_READY_TRIES}); do",
        "  status=0",
        '  srun --ntasks=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" '
        f"python -m diffusion.hpo worker --study {study} --n-trials {args.n_trials} --recycle {args.recycle} "
        "|| status=$?",
        f'  [ "$status" = {EXIT_NOT_READY} ] || exit "$status"',
        f"  sleep {NOT_READY_SLEEP_S}",
        "done",
        f"echo {shlex.quote(never_appeared)} >&2",
        f"exit {EXIT_NOT_READY}",
    ]
    print("\n".join(line for line in lines if line))
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
