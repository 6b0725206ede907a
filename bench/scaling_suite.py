"""The scaling suite as bench.compare runs it (its entry in bench/suites.py): both paths at 1,
2, 4, ... cores by CPU affinity in interleaved whole-process rounds; the table and S2's row
are bench/scaling.py's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.compare_options import CompareOptions

SCALING_ROUNDS = 5  # the scaling suite runs every round (no sequential stop)


def scaling_plan(args: Any, opts: CompareOptions) -> Any:
    """Both paths at 1, 2, 4, ... cores by CPU affinity, interleaved whole-process rounds."""
    import os

    from bench.runner import Plan
    from bench.scaling import core_counts, scaling_roles
    from diffusion.paths import format_path

    counts = core_counts(len(os.sched_getaffinity(0)))
    paths = {format_path(opts.base): opts.base, format_path(opts.candidate): opts.candidate}
    return Plan(
        tuple(scaling_roles(paths, counts)),
        opts.preset_or("seed"),
        opts.rounds or SCALING_ROUNDS,
        job_options={"train_seconds": opts.train_seconds},
        seed=opts.seed,
    )


def measure_scaling(plan: Any, opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress
    from bench.runner import run_plan
    from bench.scaling import counts_of, scaling_table
    from bench.shapes import WORKER_RECORD

    identity = run_identity(plan.record(), "bench/scaling.py")
    partial = Partial.beside(opts.json, identity, resume=opts.resume, part="scaling", shape=WORKER_RECORD)
    kept.append(partial)
    done = partial.done()
    with JobProgress(
        "scaling" + (f" ({len(done)} jobs reused)" if done else ""), plan.rounds * len(plan.roles) - len(done)
    ) as progress:
        on_job = partial.on_job(lambda r, role, rec: progress.done(f"round {r + 1} {role.name}", rec))
        records = run_plan(plan, done=done, on_job=on_job)
    paths, counts = counts_of(plan.roles)
    return {
        "rounds": plan.rounds,
        "counts": counts,
        "paths": paths,
        "roles": [r.record() for r in plan.roles],
        "records": records,
        "table": scaling_table(records, paths, counts),
    }


def scaling_metrics() -> Iterable[str]:
    from bench.scaling import SCALING_READINGS

    return SCALING_READINGS


def scaling_rows(raw: dict[str, Any], claims: list[Any]) -> dict[str, dict[str, Any]]:
    from bench.scaling import scaling_rows

    return scaling_rows(raw, claims)
