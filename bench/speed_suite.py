"""The speed and scale suites as bench.compare runs them: the plan (bench/speed.py) measured
with its partial records kept beside ``--json`` and its sequential rule asked after every
round, then the ablations, summaries and the level its rows are judged at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from diffusion.cli import Parser, bounded
from diffusion.errors import ConfigError

SPEED_ROUNDS = 16
# A day: past it a run would hold a machine for longer than any CI job or SLURM slot allows.
BUDGET_MINUTES = bounded(float, positive=True, high=24 * 60.0, why=" (a day)")

if TYPE_CHECKING:
    from bench.compare_options import CompareOptions


def measure_speed(plan: Any, opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    """The speed suite (bench/speed.py): memory in whole processes, then V/T in frozen turns,
    round after round until every V/T claim is decided, the budget is spent or --rounds is reached."""
    from bench.ablations import ablation_rows
    from bench.analysis import path_summary, rounds_done
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress
    from bench.shapes import WORKER_RECORD
    from bench.speed import Sequential, measure

    claims = list(opts.claims)
    roles = plan.roles()
    role_dicts = [r.record() for r in roles]
    identity = run_identity(plan.record(), "bench/speed.py")
    # The scale suite runs this at presets of its own: their partial records are kept apart.
    suffix = "" if opts.preset_or("seed") == plan.preset else f"-{plan.preset.name}"
    memory, turns = (
        Partial.beside(opts.json, identity, resume=opts.resume, part=part + suffix, shape=WORKER_RECORD)
        for part in ("memory", "speed")
    )
    kept += [memory, turns]
    reused = len(memory.done()) + len(turns.done())
    total = plan.memory_rounds * 2 + plan.max_rounds * len(roles) - reused
    name = "speed" + (f" at {plan.preset.name}" if suffix else "")
    with JobProgress(name + (f" ({reused} jobs reused)" if reused else ""), total) as progress:

        def on_job(stage: str, role: Any, record: dict[str, Any]) -> None:
            progress.done(f"{stage} {role.name}", record)

        sequential = Sequential(
            claims, role_dicts, plan.base.knobs(), plan.candidate.knobs(), max_rounds=plan.max_rounds
        )
        measured = measure(plan, rule=sequential.rule, on_job=on_job, kept=(memory, turns))
    records = measured["records"]
    turn_records = [rec for rec in records if rec.get("measured_for") != "memory"]
    if sequential.decision is None or sequential.decision.n != rounds_done(turn_records):
        sequential.judge(turn_records)  # the last round: the rule is not asked after it
    ok = [rec for rec in records if "environment" in rec]
    if not ok:
        raise ConfigError(f"every worker failed; first: {records[0].get('error') if records else 'none ran'}")
    return {
        "records": records,
        "roles": role_dicts,
        "ablations": ablation_rows(records, role_dicts, **judging(sequential.record(), ablations=True)),
        "environment": ok[0]["environment"],
        "summary": {"base": path_summary(records, "base"), "candidate": path_summary(records, "candidate")},
        "sequential": {
            **{k: measured[k] for k in ("rounds", "memory_rounds", "reused", "data_s", "wall_s")},
            **sequential.record(),
        },
    }


def measure_scale(
    plan: Any, opts: CompareOptions, kept: list[Any], *, not_run: Callable[[Any], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scale suite (bench/scale.py): the speed suite's turns at each preset, smallest first,
    each with the whole --budget-minutes (no memory rounds: scale reads speed only). Returns the
    scale record and the speed suite at the last preset (seed, the report's model), which fills
    the claim table. ``not_run`` gives the rows of claims it does not read (bench/suites.py)."""
    from bench.analysis import assess_claims
    from bench.scale import SCALE_PRESETS, entry
    from diffusion.presets import get_preset

    entries, speed = [], {}
    for name in SCALE_PRESETS:
        speed = measure_speed(replace(plan, preset=get_preset(name), memory_rounds=0), opts, kept)
        rows = assess_claims(
            list(opts.claims),
            speed["records"],
            speed["roles"],
            plan.base.knobs(),
            plan.candidate.knobs(),
            not_run=not_run,
            **judging(speed["sequential"]),
        )
        entries.append(entry(name, speed, rows) | {"records": speed["records"], "roles": speed["roles"]})
    return {"presets": entries}, speed


def judging(sequential: dict[str, Any] | None, *, ablations: bool = False) -> dict[str, Any]:
    """The level (and, for claim rows, the stop) a run's speed rows are judged at: the look its
    sequential rule stopped at; 95% for a record from before the rule."""
    if not sequential or sequential.get("confidence") is None:
        return {}
    return {"confidence": sequential["confidence"], **({} if ablations else {"stop": sequential["stop"]})}


def speed_options(parser: Parser) -> None:
    parser.add_argument(
        "--budget-minutes",
        type=BUDGET_MINUTES,
        default=14.0,
        help="wall time for the speed suite; no round starts that would not end in it (default 14)",
    )
    parser.add_argument("--no-ablations", action="store_true", help="measure only base and candidate")
    parser.add_argument("--no-disk", action="store_true", help="skip M3/M4 (a one-epoch fit per path; slow at seed)")
    parser.add_argument("--both-ways", action="store_true", help="also measure the candidate with each knob set back")
    parser.add_argument(
        "--xla", action="store_true", help="also measure the candidate with XLA (beyond the report; no claim reads it)"
    )
    parser.add_argument(
        "--warm-together",
        action="store_true",
        help="warm-ups (first pass, first steps) side by side instead of alone: for many-core GPU machines, where "
        "they dominate a round; first-call times then include the neighbours'",
    )
    parser.add_argument(
        "--whole-val-passes",
        action="store_true",
        help="each validation pass in one turn, whole, instead of spread over turns of 0.25 s (the default): "
        "to compare the two on a machine",
    )


def speed_plan(args: Any, opts: CompareOptions) -> Any:
    """The speed suite's ``SpeedPlan`` (the scale suite runs it at each of its presets)."""
    from bench.speed import SpeedPlan

    return SpeedPlan(
        opts.base,
        opts.candidate,
        opts.preset_or("seed"),
        max_rounds=opts.rounds or SPEED_ROUNDS,
        budget_s=args.budget_minutes * 60,
        train_seconds=opts.train_seconds,
        ablations=not args.no_ablations,
        both_ways=args.both_ways,
        xla=args.xla,
        warm_together=args.warm_together,
        whole_val_passes=args.whole_val_passes,
        disk=not args.no_disk,
        seed=opts.seed,
    )
