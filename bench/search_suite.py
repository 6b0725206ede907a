"""The search suite as bench.compare runs it (its entry in bench/suites.py): its options, its
plan from them, measuring with each finished search kept for --resume, its readings and rows.
The searches themselves are bench/hpo.py's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.compare_options import CompareOptions

from diffusion.cli import Parser, bounded


def search_options(parser: Parser) -> None:
    parser.add_argument(
        "--hpo-trials",
        type=bounded(int, low=1, high=1000),
        default=20,
        help="trials per search (default 20, as the seed)",
    )
    parser.add_argument(
        "--hpo-epochs", type=bounded(int, low=1, high=100), default=6, help="epochs per trial (default 6)"
    )
    parser.add_argument(
        "--hpo-repeats",
        type=bounded(int, low=1, high=20),
        default=3,
        help="repeats of every search (default 3: fewer give no verdict)",
    )
    parser.add_argument(
        "--hpo-runs",
        default="",
        metavar="NAME[,NAME...]",
        help="only these searches of the search suite (default all): sequential, threads, workers, "
        "sequential+pruning, threads+pruning, and workers-Kcores at the two core counts S1 compares here",
    )


def search_plan(args: Any, opts: CompareOptions) -> Any:
    """The search suite's ``HpoPlan`` on this machine's cores, ``--hpo-runs`` checked.

    Raises:
        ConfigError: ``--hpo-runs`` names a search the suite does not make here.
    """
    import os

    from bench.hpo import HpoPlan, check_run_names, core_pair_for

    plan = HpoPlan(
        preset=opts.preset_or("tiny").name,
        trials=args.hpo_trials,
        epochs=args.hpo_epochs,
        repeats=args.hpo_repeats,
        seed=opts.seed,
        core_pair=core_pair_for(len(os.sched_getaffinity(0))),
    )
    return replace(plan, only=check_run_names(args.hpo_runs, plan)) if args.hpo_runs else plan


def measure_search(plan: Any, opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    """The search suite: the same fixed trials sequential, parallel, pruned, and as many workers
    as pinned cores at two core counts (S1); each finished search is kept for --resume."""
    from dataclasses import asdict

    from bench.hpo import measure_hpo, runs
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress

    identity = run_identity(asdict(plan), "bench/hpo.py")
    partial = Partial.beside(opts.json, identity, resume=opts.resume, part="search")
    kept.append(partial)
    done = partial.done()
    with JobProgress(
        "search" + (f" ({len(done)} searches reused)" if done else ""), plan.repeats * len(runs(plan)) - len(done)
    ) as progress:

        def on_run(repeat: int, run: Any, record: dict[str, Any]) -> None:
            partial.append((repeat, run.name), record)
            progress.done(f"repeat {repeat + 1}/{plan.repeats} {run.name}", record)

        return measure_hpo(plan, on_run=on_run, done=done)


def search_metrics() -> Iterable[str]:
    from bench.hpo_analysis import HPO_READINGS

    return HPO_READINGS


def search_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.hpo_analysis import hpo_rows

    return hpo_rows(raw, claims)
