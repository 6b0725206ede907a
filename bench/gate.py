"""CI regression gate: this checkout against a git ref, on the same machine in the same run.

``python -m bench.gate --against REF`` exports REF's files to a temp directory and measures a
path (NEU by default) from REF's code and from this checkout (uncommitted changes included,
and said so) over several rounds: each round starts a fresh worker from each tree, side by
side, and the two take turns of 50 ms (bench/turns.py: ``run_turns``), so both sides' time
falls in the same seconds of the machine's drift. It fails (exit 1) when the 95% interval of
HEAD/REF (training samples/s, validation pass time) lies wholly below 1 - tolerance. The
machine cancels out, so CI needs no number from another machine.

``--baseline FILE`` gates a same-run ratio (NEU over ALT) against a stored one instead, for
users who pin a machine: the file records knobs, per-round ratios, the machine's fingerprint
and a clean commit, and a baseline that does not match is refused (exit 2).

A REF that is HEAD's own commit, with nothing uncommitted, compares nothing (a shallow clone's
``HEAD~1`` fallback did, and passed): it is refused unless ``--aa`` asks for that A/A check.
For CI it writes JUnit XML (``--junit``), a Markdown summary (``--summary``, else appended to
``$GITHUB_STEP_SUMMARY``) and, under GitHub Actions, ``::error::``/``::notice::`` lines.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any

from bench import baseline as stored
from bench.gate_ci import Check, annotation, machine, on_github, write_ci_outputs
from bench.gate_options import (
    JOB_OPTIONS,
    PAIRINGS,
    GateOptions,
    build_parser,
    calibrated_defaults,
    check_paths,
    gate_options,
)
from diffusion.cli import check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.paths import ALT, TrainingPath, parse_path
from diffusion.presets import Preset, get_preset

if TYPE_CHECKING:
    from bench.roles import CodeTree
    from bench.runner import Plan, Runner
    from bench.turns import Starter

RUN_SCHEMA = "pmt-bench/gate-run/2"
GATED_METRICS = stored.GATED_METRICS
UNITS = {"train_samples_per_s": "samples/s", "val_pass_s": "s per validation pass"}


def sent_fields(path: TrainingPath, preset: Preset, options: dict[str, Any], cpus: int | None) -> list[str]:
    """The payload fields a REF tree's worker is sent (``Job.payload`` for another tree: the
    spec, and no unset option), which it must know."""
    from bench.measure import Job

    return list(Job(path, preset, **options, cpus=cpus).payload(as_spec=True))


def ab_plan(
    ref: tuple[CodeTree, TrainingPath],
    head: tuple[CodeTree, TrainingPath],
    preset: Preset,
    rounds: int,
    *,
    options: dict[str, Any],
    cpus: int | None,
    pairing: str,
    seed: int,
) -> Plan:
    """The A/B gate's plan: ``ref`` and ``head`` as (code tree, path), measured the gate's way.
    ``bench.calibrate`` runs this same plan."""
    from bench.roles import Role
    from bench.runner import Plan

    (ref_tree, ref_path), (head_tree, head_path) = ref, head
    roles = (
        Role("ref", ref_path, ("validate", "train"), tree=ref_tree, cpus=cpus),
        Role("head", head_path, ("validate", "train"), reference="ref", tree=head_tree, cpus=cpus),
    )
    return Plan(roles, preset, rounds, job_options=options, seed=seed, turn_seconds=PAIRINGS[pairing])


def gate_checks(
    records: list[dict[str, Any]],
    sides: tuple[tuple[str, str], tuple[str, str]],
    expected: dict[str, tuple[float, float]],
    where: str,
) -> list[Check]:
    """The checks of a measured plan (pure).

    Args:
        sides: (role, label) of the reference and the measured side, e.g. ("ref", "REF main").
        expected: per metric, the no-change ratio and the tolerance.
    """
    import numpy as np

    from bench.analysis import failed_workers, interval_dict, metric_rounds, role_ratios, worker_errors
    from bench.stats import rounds_interval, run_detectable_loss

    (ref, ref_label), (new, new_label) = sides
    checks = []
    for metric, (ratio, tolerance) in expected.items():
        ratios = role_ratios(records, ref, new, metric)
        interval = interval_dict(rounds_interval(ratios)) if ratios else None
        parts = []
        for role, label in sides:
            values = list(metric_rounds(records, role, metric).values())
            parts.append(f"{label} {np.median(values):.4g}" if values else f"{label} -")
        values = ", ".join(parts) + f" {UNITS[metric]}"
        errors = worker_errors(records, ref, new)
        if errors:
            values += f"; {failed_workers(records, ref, new)} worker failure(s): {errors[0]}"
        name = "HEAD/REF" if ref == "ref" else f"{new_label}/{ref_label}"
        # Against the no-change floor (1 - tolerance): what this run's spread lets it see.
        loss = run_detectable_loss(list(ratios.values()), 1 - tolerance)
        checks.append(Check(metric, name, ratio, tolerance, interval, values, where, loss))
    return checks


def report(checks: list[Check]) -> int:
    for check in checks:
        print(check.message, file=sys.stdout if check.passed else sys.stderr)
    return 0 if all(c.passed for c in checks) else 1


def round_detail(records: list[dict[str, Any]], ref: str, new: str, ratio_name: str) -> str:
    """One round's gated ratios, for its progress line (pure)."""
    from bench.analysis import role_ratios, worker_errors

    parts = []
    for metric in GATED_METRICS:
        ratios = list(role_ratios(records, ref, new, metric).values())
        parts.append(f"{metric} {ratios[0]:.3g}x" if ratios else f"{metric} -")
    errors = worker_errors(records, ref, new)
    return f"{ratio_name} " + ", ".join(parts) + (f"; failed: {errors[0]}" if errors else "")


def measure(
    plan: Plan,
    sides: tuple[str, str],
    ratio_name: str,
    *,
    start: Starter | None = None,
    runner: Runner | None = None,
) -> list[dict[str, Any]]:
    """``run_plan`` with a line per finished round on stderr (a bar on a terminal), so minutes
    of measuring are not mistaken for a hang.

    Args:
        sides: the reference and the measured role, whose ratios each round's line shows.
        start, runner: a turn-taking worker's starter and a whole-process job's runner
            (None: the real ones; tests pass fakes).
    """
    from bench.progress import JobProgress
    from bench.runner import run_plan

    pending: dict[int, list[dict[str, Any]]] = {}
    with JobProgress("gate", plan.rounds) as progress:

        def finished(r: int, role: Any, record: dict[str, Any]) -> None:
            pending.setdefault(r, []).append(record)
            if len(pending[r]) == len(plan.roles):
                detail = round_detail(pending.pop(r), *sides, ratio_name)
                progress.done(f"round {r + 1}", record, detail=detail)

        return run_plan(plan, start=start, on_job=finished, **({"runner": runner} if runner else {}))


def ab_gate(
    args: GateOptions,
    against: tuple[str, str],
    preset: Preset,
    rounds: int,
    tolerance: float,
    cpus: int | None,
    pairing: str,
    *,
    start: Starter | None = None,
) -> tuple[list[Check], dict[str, Any]]:
    """Measure --path from REF's tree and (or --candidate) from this checkout; check HEAD/REF.

    A REF whose worker cannot take turns is measured in whole processes instead, said so,
    unless turns were asked for by name (then it is refused, exit 2).

    Args:
        against: REF's name and commit, from ``bench.trees.resolve_against``.
        start: starts a turn-taking worker (None: a real one; tests pass fakes).
    """
    from bench import trees

    ref_name, commit = against
    ref_path, head_path = args.path, args.head_path
    head = trees.head_tree()
    options = {**JOB_OPTIONS, "train_seconds": args.train_seconds}
    job_fields = sent_fields(ref_path, preset, options, cpus)
    ref_label = f"REF {ref_name}" + ("" if commit.startswith(ref_name) else f" {trees.short(commit)}")
    with trees.exported(commit, ref_label) as ref_tree:
        plan = ab_plan(
            (ref_tree, ref_path),
            (head, head_path),
            preset,
            rounds,
            options=options,
            cpus=cpus,
            pairing=pairing,
            seed=args.seed,
        )
        roles = plan.roles
        try:
            knobs = trees.probe(ref_tree, job_fields, [roles[0].spec], turns=plan.turn_seconds is not None)
        except trees.CannotTakeTurns as exc:
            if args.pairing is not None:
                raise
            print(f"note: {exc} Measuring whole processes instead.", flush=True)
            plan = dataclasses.replace(plan, turn_seconds=PAIRINGS["processes"])
            knobs = trees.probe(ref_tree, job_fields, [roles[0].spec])
        ref_knobs = knobs[roles[0].spec]
        subject = f"{head.label} ({roles[1].spec}) against REF {ref_name} = {trees.short(commit)} ({roles[0].spec})"
        setup = (
            f"{preset.name}, {rounds} rounds "
            + ("taking turns" if plan.turn_seconds is not None else "of whole processes")
            + f", tolerance {tolerance:.0%}, "
            f"{'all usable cores' if cpus is None else f'pinned to {cpus} core(s)'}"
        )
        print(
            f"gate: {subject}, {setup}; order of turns from seed {args.seed} (--seed {args.seed} replays it)"
            + ("; an A/A check on purpose (--aa)" if args.aa else "")
            + ("; uncommitted changes are measured as HEAD" if head.label.endswith("+uncommitted") else ""),
            flush=True,
        )
        if ref_knobs != ref_path.knobs():
            changed = ", ".join(
                f"{k} {v!r} -> {ref_path.knobs()[k]!r}" for k, v in ref_knobs.items() if ref_path.knobs().get(k) != v
            )
            print(f"note: {roles[0].spec!r} means other knobs at REF ({changed}); each tree runs its own", flush=True)
        records = measure(plan, ("ref", "head"), "HEAD/REF", start=start)
    checks = gate_checks(
        records,
        (("ref", ref_label), ("head", head.label)),
        dict.fromkeys(GATED_METRICS, (1.0, tolerance)),
        machine(),
    )
    summary = {
        "mode": "against",
        "aa": args.aa,
        "subject": subject,
        "setup": setup,
        "seed": args.seed,
        "ref": {"name": ref_name, "commit": commit, "knobs": ref_knobs},
        "head": {"label": head.label, "commit": head.commit, "knobs": head_path.knobs()},
        "plan": plan.record(),
        "records": records,
    }
    return checks, {**summary, "checks": [c.record() for c in checks]}


def baseline_plan(preset: Preset, base: TrainingPath, candidate: TrainingPath, rounds: int, args: GateOptions) -> Any:
    from bench.roles import Role
    from bench.runner import Plan

    roles = (Role("base", base, ("validate", "train")), Role("candidate", candidate, ("validate", "train"), "base"))
    return Plan(roles, preset, rounds, job_options={**JOB_OPTIONS, "train_seconds": args.train_seconds}, seed=args.seed)


def write_baseline(args: GateOptions, preset: Preset, rounds: int, tolerance: float) -> int:
    """Measure base and candidate on this clean checkout and store their ratios."""

    from bench import trees
    from bench.analysis import interval_dict, role_ratios
    from bench.runner import run_plan
    from bench.stats import rounds_interval

    check_writable_file(args.baseline, "--baseline")
    if not trees.is_clean():
        raise ConfigError("--write-baseline must run from a clean commit, but the tree has uncommitted changes.")
    commit = trees.resolve_ref("HEAD")
    base, candidate = ALT, args.head_path
    records = run_plan(baseline_plan(preset, base, candidate, rounds, args))
    ratios = {m: role_ratios(records, "base", "candidate", m) for m in GATED_METRICS}
    measured = {m: interval_dict(rounds_interval(r)) if r else None for m, r in ratios.items()}
    ok = [r for r in records if "environment" in r]
    if not ok or not all(measured.values()):
        raise ConfigError(
            f"--write-baseline: workers failed; first: {next((r['error'] for r in records if 'error' in r), '-')}"
        )
    record = stored.build(
        commit=commit,
        preset=preset.name,
        rounds=rounds,
        job_options={**JOB_OPTIONS, "train_seconds": args.train_seconds},
        paths={"base": base, "candidate": candidate},
        measured=measured,
        per_round={m: list(r.values()) for m, r in ratios.items()},
        tolerance=tolerance,
        environment=ok[0]["environment"],
    )
    write_json_atomic(args.baseline, record)
    print(
        f"wrote {args.baseline} from {commit}: "
        + ", ".join(f"{m} {v['ratio']:.3g}x" for m, v in record["metrics"].items())
    )
    return 0


def baseline_gate(args: GateOptions, data: dict[str, Any]) -> tuple[list[Check], dict[str, Any]]:
    paths = data["paths"]
    base = parse_path(paths["base"]["spec"])  # a record being read: its specs are parsed here
    candidate = args.candidate if args.candidate is not None else parse_path(paths["candidate"]["spec"])
    rounds = args.rounds or data["rounds"]
    plan = baseline_plan(get_preset(data["preset"]), base, candidate, rounds, args)
    subject = f"{plan.roles[1].spec}/{paths['base']['spec']} against baseline {args.baseline}"
    setup = f"{data['preset']}, {rounds} rounds of whole processes"
    print(f"gate: {subject}, {setup}; order from seed {args.seed} (--seed {args.seed} replays it)", flush=True)
    records = measure(plan, ("base", "candidate"), f"{plan.roles[1].spec}/{paths['base']['spec']}")
    expected = {
        m: (e["ratio"], args.tolerance if args.tolerance is not None else e["tolerance"])
        for m, e in data["metrics"].items()
    }
    checks = gate_checks(
        records, (("base", paths["base"]["spec"]), ("candidate", plan.roles[1].spec)), expected, machine()
    )
    summary = {
        "mode": "baseline",
        "baseline": str(args.baseline),
        "seed": args.seed,
        "subject": subject,
        "setup": setup,
        "plan": plan.record(),
        "records": records,
    }
    return checks, {**summary, "checks": [c.record() for c in checks]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return gate(args)
    except ConfigError as exc:  # refused: one line on stderr (diffusion.cli.run), and CI's annotation
        if on_github():
            print(annotation("error", "bench.gate refused", str(exc)), flush=True)
        raise


def gate(parsed: Any, *, start: Starter | None = None) -> int:
    """The gate for parsed arguments: the exit status of ``main``.

    Args:
        start: starts a turn-taking worker (None: a real one; tests pass fakes).
    """
    check_paths(parsed)
    args = gate_options(parsed)
    began = time.perf_counter()
    preset = args.preset or get_preset("tiny")
    if args.baseline is not None and args.write_baseline:
        defaults = calibrated_defaults(preset.name)
        tolerance = args.tolerance if args.tolerance is not None else defaults["tolerance"]
        return write_baseline(args, preset, args.rounds or defaults["rounds"], tolerance)
    if args.baseline is not None:
        data = stored.load(args.baseline, allow_other_machine=args.allow_other_machine)
        if args.preset is not None and args.preset.name != data["preset"]:
            raise ConfigError(f"--preset must be the baseline's {data['preset']!r}, but got {args.preset.name!r}.")
        checks, summary = baseline_gate(args, data)
    else:
        from bench.trees import resolve_against

        same_path = args.head_path == args.path
        # Before any worker starts: nothing to compare is refused.
        against = resolve_against(args.against, aa=args.aa, same_path=same_path)
        defaults = calibrated_defaults(preset.name)
        tolerance = args.tolerance if args.tolerance is not None else defaults["tolerance"]
        cpus = args.cpus if args.cpus is not None else defaults["cpus"]
        pairing = args.pairing or defaults["pairing"]
        rounds = args.rounds or defaults["rounds"]
        checks, summary = ab_gate(args, against, preset, rounds, tolerance, cpus, pairing, start=start)
        summary["defaults_from"] = defaults["source"]
        summary["setup"] += f" (defaults from {defaults['source']})"
    code = report(checks)
    seconds = time.perf_counter() - began
    print(f"gate {'passed' if code == 0 else 'FIRED'} in {seconds:.0f} s")
    result = {"schema": RUN_SCHEMA, "seconds": seconds, "fired": code != 0, **summary}
    if args.json is not None:
        write_json_atomic(args.json, result)
    write_ci_outputs(args, checks, summary, seconds)
    if args.history is not None:
        from bench import history

        entries = history.entries_from_gate(result, "this gate run")
        for entry in entries:
            history.append(args.history, entry)
        print(f"appended to {args.history}" if entries else f"nothing measured: nothing appended to {args.history}")
    return code


if __name__ == "__main__":
    run(main)
