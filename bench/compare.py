"""Measure two training paths against each other and give every claim a verdict.

``python -m bench.compare alt neu`` measures ALT and NEU and the one-knob ablations between
them in fresh worker processes over interleaved rounds, then prints the claim tables with
95% intervals and verdicts, the ablations and the environment. ``--from FILE`` renders a
saved result instead of measuring.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import suites
from bench.suites import SCALING_ROUNDS, measure_side_suites, search_plan, side_rows, suite_names
from diffusion.cli import ROUNDS, SEED, TRAIN_SECONDS, Parser, bounded, check_writable_dir, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import read_json_record, write_json_atomic, write_text_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import format_path, parse_path
from diffusion.presets import PRESETS, get_preset
from diffusion.shapes import check

SCHEMA = "pmt-bench/compare/2"
# Records of these schemas hold the same measurements under an earlier verdict rule: they render
# only re-judged (--reassess).
OLD_SCHEMAS = ("pmt-bench/compare/1",)
GPU_SCHEMA = "pmt-bench/gpu/1"  # bench.gpu's records, which --from renders too


# A day: past it a run would hold a machine for longer than any CI job or SLURM slot allows.
BUDGET_MINUTES = bounded(float, positive=True, high=24 * 60.0, why=" (a day)")
SPEED_ROUNDS = 16


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", help="base path spec (default alt)")
    parser.add_argument("candidate", nargs="?", help="candidate path spec (default neu)")
    parser.add_argument(
        "--preset", default="seed", help=f"one of {', '.join(PRESETS)} (default seed: the report's model)"
    )
    parser.add_argument(
        "--rounds",
        type=ROUNDS,
        help=f"rounds at most: the speed suite stops earlier once every V/T claim is decided (default "
        f"{SPEED_ROUNDS}); the scaling suite runs them all (default {SCALING_ROUNDS})",
    )
    parser.add_argument(
        "--budget-minutes",
        type=BUDGET_MINUTES,
        default=14.0,
        help="wall time for the speed suite; no round starts that would not end in it (default 14)",
    )
    parser.add_argument(
        "--train-seconds", type=TRAIN_SECONDS, default=2.5, help="steady-state training time per job (default 2.5)"
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
        "--resume",
        action="store_true",
        help="continue a cut run from the finished jobs kept beside --json (the same command, the same code)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="order of jobs within rounds (default 0)")
    parser.add_argument("--json", type=Path, help="write the result record here")
    parser.add_argument("--markdown", type=Path, help="write Markdown tables here, and a PNG plot beside them")
    parser.add_argument("--from", dest="source", type=Path, help="render a saved result instead of measuring")
    parser.add_argument(
        "--reassess",
        action="store_true",
        help="with --from: judge the saved measurements again under the current registry and verdict rule",
    )
    parser.add_argument("--claims", type=Path, help="claims registry (default: bench/claims.toml)")
    parser.add_argument(
        "--suite",
        default="speed",
        help="speed (V, T, M claims), hpo (H, S1, S4), scaling (S2: cores by affinity), quality (Q, P, W, H4, C1: "
        "both recipes from search to verified model), scale (the speed suite at tiny, small and seed, each with "
        "--budget-minutes, ratios against model size) or all (speed, hpo, scaling, quality; default speed)",
    )
    parser.add_argument("--hpo-preset", default="tiny", help="preset of the search suite's trials (default tiny)")
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
    parser.add_argument("--quality-preset", default="tiny", help="preset of the quality suite (default tiny)")
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
        "--work-dir",
        type=Path,
        default=Path(".bench-work"),
        help="the quality suite's finished jobs; a rerun of the same plan resumes from them (default .bench-work)",
    )
    return parser


def load_result(path: Path, *, reassess: bool = False) -> dict[str, Any]:
    """Read a saved comparison.

    Raises:
        ConfigError: missing, not JSON, not a comparison record of this schema (an older
            one only with ``reassess``), or a field of the wrong shape (``bench.shapes``).
    """
    from bench.shapes import COMPARE, GPU  # here, not at the top: bench.stats loads SciPy

    result = read_json_record(path, "--from")
    where = f"--from {str(path)!r}"
    if result.get("schema") == GPU_SCHEMA:  # a bench.gpu record: its own tables
        check(result, GPU, where)
        if reassess:
            raise ConfigError("--reassess applies to comparison records, not to a bench.gpu record.")
        return result
    if result.get("schema") in OLD_SCHEMAS and not reassess:
        raise ConfigError(
            f"--from {str(path)!r} has schema {result['schema']!r}, judged by an earlier verdict rule; "
            "add --reassess to judge its measurements under the current one."
        )
    if result.get("schema") not in (SCHEMA, *OLD_SCHEMAS):
        raise ConfigError(
            f"--from {str(path)!r} has schema {result.get('schema')!r}; expected {SCHEMA!r} or {GPU_SCHEMA!r}."
        )
    check(result, COMPARE, where)
    return result


def measure_speed(
    args: Any,
    claims: list[Any],
    base: Any,
    candidate: Any,
    kept: list[Any],
    *,
    preset: str | None = None,
    memory_rounds: int | None = None,
) -> dict[str, Any]:
    """The speed suite (bench/speed.py): memory in whole processes, then V/T in frozen turns,
    round after round until every V/T claim is decided, the budget is spent or --rounds is reached."""
    from bench.ablations import ablation_rows
    from bench.analysis import path_summary, rounds_done
    from bench.partial import Partial, run_identity
    from bench.progress import JobProgress
    from bench.shapes import WORKER_RECORD
    from bench.speed import Sequential, SpeedPlan, measure

    preset = preset or args.preset
    plan = SpeedPlan(
        base,
        candidate,
        preset,
        max_rounds=args.rounds or SPEED_ROUNDS,
        budget_s=args.budget_minutes * 60,
        train_seconds=args.train_seconds,
        ablations=not args.no_ablations,
        both_ways=args.both_ways,
        xla=args.xla,
        warm_together=args.warm_together,
        **({} if memory_rounds is None else {"memory_rounds": memory_rounds}),
        disk=not args.no_disk,
        seed=args.seed,
    )
    roles = plan.roles()
    role_dicts = [r.record() for r in roles]
    identity = run_identity(plan.record(), "bench/speed.py")
    suffix = "" if preset == args.preset else f"-{preset}"
    memory, turns = (
        Partial.beside(args.json, identity, resume=args.resume, part=part + suffix, shape=WORKER_RECORD)
        for part in ("memory", "speed")
    )
    kept += [memory, turns]
    reused = len(memory.done()) + len(turns.done())
    total = plan.memory_rounds * 2 + plan.max_rounds * len(roles) - reused
    name = "speed" + (f" at {preset}" if suffix else "")
    with JobProgress(name + (f" ({reused} jobs reused)" if reused else ""), total) as progress:

        def on_job(stage: str, role: Any, record: dict[str, Any]) -> None:
            progress.done(f"{stage} {role.name}", record)

        sequential = Sequential(claims, role_dicts, base.knobs(), candidate.knobs(), max_rounds=plan.max_rounds)
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
            **{k: measured[k] for k in ("rounds", "memory_rounds", "reused", "wall_s")},
            **sequential.record(),
        },
    }


def measure_scale(args: Any, claims: list[Any], base: Any, candidate: Any, kept: list[Any]) -> tuple[Any, Any]:
    """The scale suite (bench/scale.py): the speed suite's turns at each preset, smallest first,
    each with the whole --budget-minutes (no memory rounds: scale reads speed only). Returns the scale record and the speed suite at the last preset
    (seed, the report's model), which fills the claim table."""
    from bench.analysis import assess_claims
    from bench.scale import SCALE_PRESETS, entry

    entries, speed = [], None
    for preset in SCALE_PRESETS:
        speed = measure_speed(args, claims, base, candidate, kept, preset=preset, memory_rounds=0)
        rows = assess_claims(
            claims, speed["records"], speed["roles"], base.knobs(), candidate.knobs(), **judging(speed["sequential"])
        )
        entries.append(entry(preset, speed, rows) | {"records": speed["records"], "roles": speed["roles"]})
    return {"presets": entries}, speed


def judging(sequential: dict[str, Any] | None, *, ablations: bool = False) -> dict[str, Any]:
    """The level (and, for claim rows, the stop) a run's speed rows are judged at: the look its
    sequential rule stopped at; 95% for a record from before the rule."""
    if not sequential or sequential.get("confidence") is None:
        return {}
    return {"confidence": sequential["confidence"], **({} if ablations else {"stop": sequential["stop"]})}


def measure(args: Any, base_spec: str, cand_spec: str, kept: list[Any]) -> dict[str, Any]:
    """Run the chosen suites; ``kept`` gains their partial records (bench/partial.py), which
    the caller removes once the result is written."""
    from bench.analysis import assess_claims
    from bench.claims import load_claims
    from diffusion.environment import environment

    claims = load_claims(args.claims)
    base, candidate = parse_path(base_spec), parse_path(cand_spec)
    start = time.perf_counter()
    scale = None
    if args.suite == "scale":
        scale, speed = measure_scale(args, claims, base, candidate, kept)
    else:
        speed = measure_speed(args, claims, base, candidate, kept) if args.suite in ("speed", "all") else None
    side = measure_side_suites(args, base, candidate, kept)
    if args.json is not None:
        # Raw measurements first: an error in the analysis below must not cost the measuring time.
        write_json_atomic(
            args.json.with_suffix(".raw.json"), {"schema": SCHEMA + "-raw", "speed": speed, **side, "scale": scale}
        )
    suite_rows = side_rows(side, claims)
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suite": args.suite,
        "preset": args.preset,
        "rounds": speed["sequential"]["rounds"] if speed else ((side.get("scaling") or {}).get("rounds") or 0),
        "wall_s": time.perf_counter() - start,
        "base": {
            "spec": format_path(base),
            "knobs": base.knobs(),
            "summary": speed["summary"]["base"] if speed else None,
        },
        "candidate": {
            "spec": format_path(candidate),
            "knobs": candidate.knobs(),
            "summary": speed["summary"]["candidate"] if speed else None,
        },
        "roles": speed["roles"] if speed else [],
        "claims": assess_claims(
            claims,
            speed["records"] if speed else None,
            speed["roles"] if speed else [],
            base.knobs(),
            candidate.knobs(),
            suite_rows=suite_rows,
            **judging(speed["sequential"] if speed else None),
        ),
        "sequential": speed["sequential"] if speed else None,
        "scale": scale,
        "ablations": speed["ablations"] if speed else [],
        "environment": (speed or {}).get("environment") or environment(preset=args.preset),
        "records": speed["records"] if speed else [],
        **side,
    }


def reassess(result: dict[str, Any], claims_path: Path | None) -> dict[str, Any]:
    """The same measurements judged again: claims, ablations and search rows recomputed from the
    saved worker and search records under the current registry and rule."""
    from bench.ablations import ablation_rows
    from bench.analysis import assess_claims
    from bench.claims import load_claims
    from bench.runner import plan_roles

    claims = load_claims(claims_path)
    base, candidate = parse_path(result["base"]["spec"]), parse_path(result["candidate"]["spec"])
    roles = result.get("roles") or []
    if any("reference" not in r for r in roles):  # records from before roles were typed
        typed = {r.name: r.record() for r in plan_roles(base, candidate, both_ways=True)}
        roles = [typed[r["name"]] for r in roles if r["name"] in typed]
    records = result.get("records") or None
    return {
        **result,
        "schema": SCHEMA,
        "roles": roles,
        "claims": assess_claims(
            claims,
            records,
            roles,
            base.knobs(),
            candidate.knobs(),
            suite_rows=side_rows(result, claims),
            **judging(result.get("sequential")),
        ),
        "ablations": ablation_rows(records, roles, **judging(result.get("sequential"), ablations=True))
        if records
        else [],
        "reassessed": {
            "from_schema": result["schema"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "note": "measurements unchanged; claims judged again under the current registry and verdict rule",
        },
    }


def check_paths(args: Any) -> None:
    """No file this run writes is one it reads (the record, the registry) or another it writes."""
    from bench.partial import partial_path
    from bench.report import scaling_plot_name

    png = args.markdown.with_suffix(".png") if args.markdown is not None else None
    raw = args.json.with_suffix(".raw.json") if args.json is not None and args.source is None else None
    partials = (
        []
        if args.json is None or args.source is not None
        else [
            (f"--json's partial record ({part})", partial_path(args.json, part))
            for part in ("memory", "speed", *(s.partial for s in suites.SIDE_SUITES if s.partial))
        ]
    )
    outputs = [
        ("--json", args.json),
        ("--json's raw record", raw),
        *partials,
        ("--markdown", args.markdown),
        ("--markdown's plot", png),
        ("--markdown's scaling plot", png.with_name(scaling_plot_name(png.name)) if png is not None else None),
        ("--markdown's scale plot", png.with_name(scaling_plot_name(png.name, "scale")) if png is not None else None),
    ]
    claims = args.claims or Path(__file__).with_name("claims.toml")
    check_outputs(outputs, [("--from", args.source), ("--claims", claims)])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_paths(args)
    for given in (args.base, args.candidate):
        if given is not None:
            parse_path(given)
    get_preset(args.preset)
    if args.suite not in suite_names():
        raise ConfigError(f"--suite must be one of {', '.join(suite_names())}, but got {args.suite!r}.")
    get_preset(args.hpo_preset)
    get_preset(args.quality_preset)
    if args.hpo_runs:
        search_plan(args)  # a bad --hpo-runs is refused before any suite runs
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown")):
        if path is not None:
            check_writable_file(path, what)
    if args.markdown is not None:
        check_writable_file(args.markdown.with_suffix(".png"), "--markdown plot")
    if args.suite in ("quality", "all") and args.source is None:
        check_writable_dir(args.work_dir, "--work-dir")  # now, not after the suites before it
    if args.resume and (args.source is not None or args.json is None):
        raise ConfigError("--resume continues a cut measurement: give the same command with its --json, not --from.")
    if args.reassess and args.source is None:
        raise ConfigError("--reassess re-judges a saved result: give it with --from FILE.")
    if args.claims is not None:
        from bench.claims import load_claims

        load_claims(args.claims)

    kept: list[Any] = []
    if args.source is not None:
        result = load_result(args.source, reassess=args.reassess)
        if args.reassess:
            result = reassess(result, args.claims)
        from bench.baseline import knob_diff

        for given, key in ((args.base, "base"), (args.candidate, "candidate")):
            # A knob an older record lacks takes the value every path had then (knob_diff); a
            # bench.gpu record measures one path on two devices, and has no base or candidate.
            saved = result.get(key)
            differ = knob_diff(saved["knobs"], parse_path(given)) if given is not None and saved else []
            if differ:
                raise ConfigError(
                    f"{key} {given!r} does not match the saved result's {saved['spec']!r}: {'; '.join(differ)}."
                )
    else:
        result = measure(args, args.base or "alt", args.candidate or "neu", kept)

    if result.get("schema") == GPU_SCHEMA:
        from bench.gpu_report import markdown, plot, render
    else:
        from bench.report import markdown, render
        from bench.report_plot import plot

    if args.json is not None:
        write_json_atomic(args.json, result)
    for partial in kept:  # the result holds every finished job now
        partial.finish()
    if args.markdown is not None:
        png = args.markdown.with_suffix(".png")
        plot(result, png)
        if result.get("scaling"):
            from bench.report import scaling_plot_name
            from bench.report_plot import plot_scaling

            plot_scaling(result, png.with_name(scaling_plot_name(png.name)))
        if result.get("scale"):
            from bench.report import scaling_plot_name
            from bench.scale import plot as plot_scale

            plot_scale(result["scale"], png.with_name(scaling_plot_name(png.name, "scale")))
        write_text_atomic(args.markdown, markdown(result, plot_name=png.name))
    render(result)
    return 0


if __name__ == "__main__":
    run(main)
