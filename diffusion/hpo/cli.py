"""``python -m diffusion.hpo {run,init,worker,sbatch,best}``: hyperparameter search with Optuna.

Arguments are checked before TensorFlow (and, where possible, Optuna) load. Every subcommand
takes its storage from ``--storage``, else ``$OPTUNA_STORAGE``, else ``results/hpo/STUDY.log``,
and prints which one it uses. Exit status: 0 done; 2 bad input, or the storage cannot be opened
(fail at once); 3 (``worker``) the study is not in the storage yet (retry later).
"""

from __future__ import annotations

from diffusion.cli import run
from diffusion.hpo.commands import cmd_best, cmd_init, cmd_run, cmd_worker
from diffusion.hpo.options import build_parser, check_study, config_from
from diffusion.hpo.sbatch import cmd_sbatch
from diffusion.hpo.storage import resolve_storage


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
