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
from bench.compare_options import CompareOptions, build_parser, options_from
from bench.speed_suite import judging
from bench.suites import measure_side_suites, side_rows
from diffusion.cli import check_writable_dir, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import read_json_record, write_json_atomic, write_text_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import format_path, parse_path
from diffusion.presets import get_preset
from diffusion.shapes import check

SCHEMA = "pmt-bench/compare/2"
# Records of these schemas hold the same measurements under an earlier verdict rule: they render
# only re-judged (--reassess).
OLD_SCHEMAS = ("pmt-bench/compare/1",)
GPU_SCHEMA = "pmt-bench/gpu/1"  # bench.gpu's records, which --from renders too


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


def measure(opts: CompareOptions, kept: list[Any]) -> dict[str, Any]:
    """Run the chosen suites; ``kept`` gains their partial records (bench/partial.py), which
    the caller removes once the result is written."""
    from bench.analysis import assess_claims
    from bench.speed_suite import measure_scale, measure_speed
    from diffusion.environment import environment

    claims = list(opts.claims)
    base, candidate = opts.base, opts.candidate
    start = time.perf_counter()
    scale = speed = None
    if opts.runs("scale"):
        scale, speed = measure_scale(opts.plans["scale"], opts, kept, not_run=suites.not_run_row)
    elif opts.runs("speed"):
        speed = measure_speed(opts.plans["speed"], opts, kept)
    side = measure_side_suites(opts, kept)
    if opts.json is not None:
        # Raw measurements first: an error in the analysis below must not cost the measuring time.
        write_json_atomic(
            opts.json.with_suffix(".raw.json"), {"schema": SCHEMA + "-raw", "speed": speed, **side, "scale": scale}
        )
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suite": opts.suite,
        "preset": opts.preset_or("seed").name,
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
            suite_rows=side_rows(side, claims),
            not_run=suites.not_run_row,
            **judging(speed["sequential"] if speed else None),
        ),
        "sequential": speed["sequential"] if speed else None,
        "scale": scale,
        "ablations": speed["ablations"] if speed else [],
        "environment": (speed or {}).get("environment") or environment(preset=opts.preset_or("seed").name),
        "records": speed["records"] if speed else [],
        **side,
    }


def reassess(result: dict[str, Any], claims: list[Any] | None) -> dict[str, Any]:
    """The same measurements judged again: claims, ablations and search rows recomputed from the
    saved worker and search records under the current registry (None: bench/claims.toml) and rule."""
    from bench.ablations import ablation_rows
    from bench.analysis import assess_claims
    from bench.roles import plan_roles

    claims = claims if claims is not None else suites.load_registry()
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
            not_run=suites.not_run_row,
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
            for part in ("memory", "speed", *(s.partial for s in suites.side_suites() if s.partial))
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


def saved_result(args: Any) -> dict[str, Any]:
    """The record ``--from`` names (judged again with ``--reassess``), checked against the paths given.

    Raises:
        ConfigError: an unreadable record, or a given path whose knobs differ from the record's.
    """
    from bench.baseline import knob_diff

    given = {key: parse_path(spec) for key, spec in (("base", args.base), ("candidate", args.candidate)) if spec}
    if args.preset is not None:
        get_preset(args.preset)  # a bad --preset is refused with --from too, as it always was
    claims = suites.load_registry(args.claims) if args.claims is not None else None
    result = load_result(args.source, reassess=args.reassess)
    if args.reassess:
        result = reassess(result, claims)
    for key, path in given.items():
        # A knob an older record lacks takes the value every path had then (knob_diff); a
        # bench.gpu record measures one path on two devices, and has no base or candidate.
        saved = result.get(key)
        differ = knob_diff(saved["knobs"], path) if saved else []
        if differ:
            raise ConfigError(
                f"{key} {getattr(args, key)!r} does not match the saved result's {saved['spec']!r}: {'; '.join(differ)}."
            )
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_paths(args)
    if args.resume and (args.source is not None or args.json is None):
        raise ConfigError("--resume continues a cut measurement: give the same command with its --json, not --from.")
    if args.reassess and args.source is None:
        raise ConfigError("--reassess re-judges a saved result: give it with --from FILE.")
    # Parsed once, here: the paths, the preset, the registry and every suite's plan.
    opts = options_from(args) if args.source is None else None
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown")):
        if path is not None:
            check_writable_file(path, what)
    if args.markdown is not None:
        check_writable_file(args.markdown.with_suffix(".png"), "--markdown plot")
    if opts is not None and opts.runs("quality"):
        check_writable_dir(opts.plans["quality"].work_dir, "--work-dir")  # now, not after the suites before it

    kept: list[Any] = []
    if opts is None:
        result = saved_result(args)
    else:
        result = measure(opts, kept)

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
