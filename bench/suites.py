"""The suites that run beside the speed suite's records, as one table (``SIDE_SUITES``): each
with its ``--suite`` name, the key of its raw record in a result, how it measures, the claim
rows it fills, and the part name of its partial record beside ``--json``. bench.compare runs,
keeps and judges them by iterating the table; adding one touches the table and its module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffusion.paths import TrainingPath, format_path

SCALING_ROUNDS = 5  # the scaling suite runs every round (no sequential stop)

Measure = Callable[[Any, TrainingPath, TrainingPath, list[Any]], dict[str, Any]]
Rows = Callable[[dict[str, Any], list[Any]], dict[str, dict[str, Any]]]


def search_plan(args: Any) -> Any:
    """The search suite's ``HpoPlan`` on this machine's cores, ``--hpo-runs`` checked.

    Raises:
        ConfigError: ``--hpo-runs`` names a search the suite does not make here.
    """
    import os
    from dataclasses import replace

    from bench.hpo import HpoPlan, check_run_names, core_pair_for

    plan = HpoPlan(
        preset=args.hpo_preset,
        trials=args.hpo_trials,
        epochs=args.hpo_epochs,
        repeats=args.hpo_repeats,
        seed=args.seed,
        core_pair=core_pair_for(len(os.sched_getaffinity(0))),
    )
    return replace(plan, only=check_run_names(args.hpo_runs, plan)) if args.hpo_runs else plan


def measure_search(args: Any, base: TrainingPath, candidate: TrainingPath, kept: list[Any]) -> dict[str, Any]:
    """The search suite: the same fixed trials sequential, parallel, pruned, and as many workers
    as pinned cores at two core counts (S1); each finished search is kept for --resume."""
    from dataclasses import asdict

    from bench.hpo import measure_hpo, runs
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress

    plan = search_plan(args)
    identity = run_identity(asdict(plan), "bench/hpo.py")
    partial = Partial.beside(args.json, identity, resume=args.resume, part="search")
    kept.append(partial)
    done = partial.done()
    with JobProgress(
        "search" + (f" ({len(done)} searches reused)" if done else ""), plan.repeats * len(runs(plan)) - len(done)
    ) as progress:

        def on_run(repeat: int, run: Any, record: dict[str, Any]) -> None:
            partial.append((repeat, run.name), record)
            progress.done(f"repeat {repeat + 1}/{plan.repeats} {run.name}", record)

        return measure_hpo(plan, on_run=on_run, done=done)


def measure_scaling(args: Any, base: TrainingPath, candidate: TrainingPath, kept: list[Any]) -> dict[str, Any]:
    """The scaling suite: both paths at 1, 2, 4, ... cores by CPU affinity, interleaved rounds."""
    import os

    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress
    from bench.runner import Plan, run_plan
    from bench.scaling import core_counts, scaling_roles, scaling_table
    from bench.shapes import WORKER_RECORD

    counts = core_counts(len(os.sched_getaffinity(0)))
    paths = {format_path(base): base, format_path(candidate): candidate}
    roles = scaling_roles(paths, counts)
    plan = Plan(
        tuple(roles),
        args.preset,
        args.rounds or SCALING_ROUNDS,
        job_options={"train_seconds": args.train_seconds},
        seed=args.seed,
    )
    identity = run_identity(plan.record(), "bench/scaling.py")
    partial = Partial.beside(args.json, identity, resume=args.resume, part="scaling", shape=WORKER_RECORD)
    kept.append(partial)
    done = partial.done()
    with JobProgress(
        "scaling" + (f" ({len(done)} jobs reused)" if done else ""), plan.rounds * len(roles) - len(done)
    ) as progress:
        on_job = partial.on_job(lambda r, role, rec: progress.done(f"round {r + 1} {role.name}", rec))
        records = run_plan(plan, done=done, on_job=on_job)
    return {
        "rounds": plan.rounds,
        "counts": counts,
        "paths": list(paths),
        "roles": [r.record() for r in roles],
        "records": records,
        "table": scaling_table(records, list(paths), counts),
    }


def measure_quality_suite(args: Any, base: TrainingPath, candidate: TrainingPath, kept: list[Any]) -> dict[str, Any]:
    """The quality suite: both recipes' search, final training and verification per seed, then
    time to quality; finished jobs resume from --work-dir."""
    from bench.progress import JobProgress
    from bench.quality import QualityPlan, measure_quality
    from bench.quality_analysis import ttq_summary, verification_summary

    plan = QualityPlan(
        preset=args.quality_preset,
        seeds=args.quality_seeds,
        trials=args.hpo_trials,
        trial_epochs=args.hpo_epochs,
        events=args.quality_events,
        ttq_runs=args.ttq_runs,
    )
    jobs = plan.seeds * 6 + plan.ttq_runs * 2
    with JobProgress("quality", jobs) as progress:

        def on_job(name: str, record: dict[str, Any], reused: bool) -> None:
            progress.done(name + (" (reused)" if reused else ""), record)

        raw = measure_quality(plan, format_path(base), format_path(candidate), args.work_dir, on_job=on_job)
    return {**raw, "ttq_summary": ttq_summary(raw), "verification": verification_summary(raw)}


def _hpo_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.hpo import hpo_rows

    return hpo_rows(raw, claims)


def _scaling_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.scaling import scaling_rows

    return scaling_rows(raw, claims)


def _quality_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.quality_analysis import quality_rows

    return quality_rows(raw, claims)


@dataclass(frozen=True)
class Suite:
    """A suite beside the speed suite.

    Attributes:
        name: its ``--suite`` value (``all`` runs every one).
        key: where a result keeps its raw record.
        measure: runs it: ``(args, base, candidate, kept)``; ``kept`` gains its partial record.
        rows: the claim rows of a raw record, by claim id.
        partial: the part name of its partial record beside ``--json`` (None: it keeps its own).
    """

    name: str
    key: str
    measure: Measure
    rows: Rows
    partial: str | None


SIDE_SUITES: tuple[Suite, ...] = (
    Suite("hpo", "search", measure_search, _hpo_rows, "search"),
    Suite("scaling", "scaling", measure_scaling, _scaling_rows, "scaling"),
    Suite("quality", "quality", measure_quality_suite, _quality_rows, None),  # resumes from --work-dir
)


def suite_names() -> tuple[str, ...]:
    """Every ``--suite`` value: the speed suite, the side suites, the scale suite, and all."""
    return ("speed", *(s.name for s in SIDE_SUITES), "scale", "all")


def measure_side_suites(args: Any, base: TrainingPath, candidate: TrainingPath, kept: list[Any]) -> dict[str, Any]:
    """Every side suite ``--suite`` asks for, in the table's order, by its key (None: not run)."""
    return {
        s.key: s.measure(args, base, candidate, kept) if args.suite in (s.name, "all") else None for s in SIDE_SUITES
    }


def side_rows(result: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    """The claim rows of every side suite whose raw record ``result`` holds. Where two suites
    give a row for one claim (the scaling suite notes S1, which the search suite measures), the
    row of the suite that owns the claim (its ``suite`` in the registry) wins."""
    owner = {c.id: c.suite for c in claims}
    rows: dict[str, dict[str, Any]] = {}
    for suite in SIDE_SUITES:
        if result.get(suite.key):
            for cid, row in suite.rows(result[suite.key], claims).items():
                if cid not in rows or owner.get(cid) == suite.name:
                    rows[cid] = row
    return rows
