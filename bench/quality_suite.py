"""The quality suite as bench.compare runs it (its entry in bench/suites.py): its options, its
plan, and measuring with finished jobs kept in --work-dir; the jobs are bench/quality.py's,
the analysis bench/quality_analysis.py's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.compare_options import CompareOptions

from diffusion.cli import Parser, bounded


@dataclass(frozen=True)
class QualityRun:
    """The quality suite's plan and where its finished jobs live (a rerun resumes from them)."""

    plan: Any
    work_dir: Path


def quality_options(parser: Parser) -> None:
    parser.add_argument(
        "--quality-seeds",
        type=bounded(int, low=1, high=20),
        default=3,
        help="rounds of the quality suite, one seed each (default 3)",
    )
    parser.add_argument(
        "--quality-events",
        type=bounded(int, low=20, high=100_000),
        default=1000,
        help="generated events per verification (default 1000)",
    )
    parser.add_argument(
        "--ttq-runs",
        type=bounded(int, low=1, high=50),
        default=6,
        help="time-to-quality runs per recipe (default 6: a 95%% interval of the median)",
    )
    parser.add_argument(
        "--quality-concurrent",
        type=bounded(int, low=1, high=32),
        default=1,
        help="pipelines (a recipe's search, training and verification for one seed) run at once "
        "(default 1). Above 1, for a machine with room for several (a GPU): quality only, every "
        "time claim reads 'not measured', no time to quality, no search of the recipe that trains "
        "its defaults",
    )
    parser.add_argument(
        "--quality-roles",
        choices=("both", "base", "candidate"),
        default="both",
        help="the recipes run (default both). One alone gives no ratio, only its final models "
        "beside the ceiling: for a preset where the other recipe does not fit the time",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(".bench-work"),
        help="the quality suite's finished jobs; a rerun of the same plan resumes from them (default .bench-work)",
    )


def quality_plan(args: Any, opts: CompareOptions) -> QualityRun:
    from bench.quality import QualityPlan

    plan = QualityPlan(
        preset=opts.preset_or("tiny"),
        seeds=args.quality_seeds,
        trials=args.hpo_trials,
        trial_epochs=args.hpo_epochs,
        events=args.quality_events,
        ttq_runs=args.ttq_runs,
        concurrent=args.quality_concurrent,
        roles=("base", "candidate") if args.quality_roles == "both" else (args.quality_roles,),
    )
    return QualityRun(plan, args.work_dir)


def measure_quality_suite(run: QualityRun, opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    """Both recipes' search, final training and verification per seed, then time to quality;
    finished jobs resume from --work-dir."""
    from bench.progress import JobProgress
    from bench.quality import measure_quality
    from bench.quality_analysis import ttq_summary, verification_summary

    plan = run.plan
    with JobProgress("quality", plan.job_count()) as progress:

        def on_job(name: str, record: dict[str, Any], reused: bool) -> None:
            progress.done(name + (" (reused)" if reused else ""), record)

        raw = measure_quality(plan, opts.base, opts.candidate, run.work_dir, on_job=on_job)
    return {**raw, "ttq_summary": ttq_summary(raw), "verification": verification_summary(raw)}


def quality_metrics() -> Iterable[str]:
    from bench.quality_analysis import QUALITY_READINGS, SHARE_READINGS

    return (*QUALITY_READINGS, *SHARE_READINGS)


def quality_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.quality_analysis import quality_rows

    return quality_rows(raw, claims)
