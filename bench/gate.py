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

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import baseline as stored
from diffusion.cli import CORES, ROUNDS, SEED, TOLERANCE, TRAIN_SECONDS, Parser, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic, write_text_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import TrainingPath, parse_path
from diffusion.presets import get_preset
from diffusion.shapes import check as check_shape

if TYPE_CHECKING:
    from bench.runner import CodeTree, Plan, Runner
    from bench.turns import Starter

RUN_SCHEMA = "pmt-bench/gate-run/2"
GATED_METRICS = stored.GATED_METRICS
UNITS = {"train_samples_per_s": "samples/s", "val_pass_s": "s per validation pass"}
RESULTS = Path(__file__).resolve().parent.parent / "results"
# Provisional until a full calibration (>= 60 A/A and >= 20 planted runs) is committed: a survey
# of turns (4 A/A + 2 planted runs at 4 rounds, 2-CPU AMD EPYC) gave a per-round sd of 0.04 in
# both metrics and A/A intervals within 0.87-1.05, so 5 rounds at 10% leave room on both sides.
PROVISIONAL = {"tolerance": 0.10, "rounds": 5, "cpus": None, "pairing": "turns"}
# More validation passes than compare's 3: at tiny a pass is ~50 ms, and its median is noisy.
JOB_OPTIONS = {"train_seconds": 1.0, "val_passes": 10}
# Short against the machine's drift (stretches of a second or more 20-40% slow, measured),
# long against the ~0.1 ms of one request and answer.
TURN_SECONDS = 0.05
# How the two sides run: the turn length, or None for whole processes one after the other.
PAIRINGS: dict[str, float | None] = {"turns": TURN_SECONDS, "processes": None}


@dataclass(frozen=True)
class Check:
    """One gated metric's outcome; ``message`` says what a reader needs to act.

    Attributes:
        metric: the metric, in "times better" form (HEAD/REF > 1 is faster).
        ratio_name: what the ratio compares ("HEAD/REF", "neu/alt").
        expected: the ratio that means no change (1 for A/B; the stored ratio for a baseline).
        tolerance: the loss allowed before it fires.
        measured: the interval (estimate, low, high, n) or None if no round paired up.
        values: the two sides' medians, named, for the message.
        machine: where it ran.
    """

    metric: str
    ratio_name: str
    expected: float
    tolerance: float
    measured: dict[str, float] | None
    values: str
    machine: str

    @property
    def floor(self) -> float:
        return self.expected * (1 - self.tolerance)

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured["high"] >= self.floor

    @property
    def message(self) -> str:
        head = f"{self.metric}: {self.ratio_name}"
        rule = f"floor {self.floor:.3g}x ({self.expected:.3g}x less {self.tolerance:.0%})"
        if self.measured is None:
            return f"NOT MEASURED {head}: no paired rounds; {self.values}; {rule}; on {self.machine}"
        m = self.measured
        got = f"{m['estimate']:.3g}x [{m['low']:.3g}, {m['high']:.3g}] over {m['n']} rounds"
        status = "ok" if self.passed else "REGRESSION"
        return f"{status} {head} {got}, {rule}; {self.values}; on {self.machine}"

    def record(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "ratio": self.ratio_name,
            "expected": self.expected,
            "tolerance": self.tolerance,
            "floor": self.floor,
            "measured": self.measured,
            "passed": self.passed,
            "message": self.message,
        }


def calibration_records(preset: str) -> list[Path]:
    """The committed calibration records at ``preset`` that ``calibrated_defaults`` reads."""
    return sorted(RESULTS.glob(f"gate-calibration-{preset}-*.json"))


def calibrated_defaults(preset: str) -> dict[str, Any]:
    """Tolerance, rounds and cores from a committed calibration at ``preset`` that met its
    target, else the provisional ones (with ``source`` saying which).

    Raises:
        ConfigError: the record lacks its tolerance or rounds, or pins more cores than this machine has.
    """
    for path in calibration_records(preset):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("meets_target") is True:
            from bench.shapes import CALIBRATED  # here, not at the top: bench.stats loads SciPy

            check_shape(record, CALIBRATED, f"calibration record {path.name}")
            pairing = record.get("pairing", "processes")  # records from before turns measured processes
            if pairing not in PAIRINGS:
                raise ConfigError(f"pairing of {path.name} must be one of {', '.join(PAIRINGS)}, but got {pairing!r}.")
            return {
                "tolerance": record["tolerance"],
                "rounds": record["rounds"],
                "cpus": check_cpus(record.get("cpus"), f"cpus of {path.name}"),
                "pairing": pairing,
                "source": path.name,
            }
    return {**PROVISIONAL, "source": "provisional (no full calibration committed)"}


def check_cpus(cpus: int | None, where: str) -> int | None:
    """``cpus`` if this machine has that many usable cores (None: all of them).

    Raises:
        ConfigError: naming ``where`` the number came from (an option, a calibration record
            made on a larger machine) and the valid range.
    """
    from diffusion.environment import usable_cpus

    if cpus is not None and not 1 <= cpus <= usable_cpus():
        raise ConfigError(f"{where} must be between 1 and this machine's {usable_cpus()} usable cores, but got {cpus}.")
    return cpus


def sent_fields(spec: str, preset: str, options: dict[str, Any], cpus: int | None) -> list[str]:
    """The job fields a worker is sent (unset options stay out of the payload, bench/runner.py),
    which a REF tree's worker must know."""
    from bench.measure import Job

    job = Job(spec, preset, **options, cpus=cpus)
    return [k for k, v in dataclasses.asdict(job).items() if v is not None]


def ab_plan(
    ref: tuple[CodeTree, TrainingPath],
    head: tuple[CodeTree, TrainingPath],
    preset: str,
    rounds: int,
    *,
    options: dict[str, Any],
    cpus: int | None,
    pairing: str,
    seed: int,
) -> Plan:
    """The A/B gate's plan: ``ref`` and ``head`` as (code tree, path), measured the gate's way.
    ``bench.calibrate`` runs this same plan."""
    from bench.runner import Plan, Role

    (ref_tree, ref_path), (head_tree, head_path) = ref, head
    roles = (
        Role("ref", ref_path, ("validate", "train"), tree=ref_tree, cpus=cpus),
        Role("head", head_path, ("validate", "train"), reference="ref", tree=head_tree, cpus=cpus),
    )
    return Plan(roles, preset, rounds, job_options=options, seed=seed, turn_seconds=PAIRINGS[pairing])


EXIT_CODES = """\
exit status:
  0  every check passed (with --write-baseline: the baseline was written)
  1  a regression: a check's 95% interval lies wholly below its floor, or a check could not be
     measured (its workers failed)
  2  bad input or refused, in one line on stderr, before anything is measured or written: a bad
     argument, nothing to compare (REF is HEAD's own commit: --aa checks that on purpose), a REF
     whose worker cannot take this checkout's job, a baseline that does not match"""

# The --help text of each option whose default comes from the calibration in force, filled in
# when help is asked for (GateParser).
CALIBRATED_HELP = {
    "rounds": "interleaved rounds (default at tiny: {rounds})",
    "tolerance": "allowed loss, in [0, 1) (default at tiny: {tolerance:g}, i.e. {tolerance:.0%})",
    "cpus": "pin every worker to this many cores, thread pools to match (default at tiny: {cpus})",
    "pairing": "turns: both trees' workers live side by side, taking 50 ms turns; processes: one whole "
    "worker after the other, for a REF that predates turns (default at tiny: {pairing})",
}


class GateParser(Parser):
    """The gate's parser, whose --help states the defaults of the calibration in force.

    They are read when help is asked for, not when arguments are parsed: reading a calibration
    record loads SciPy (~1 s), which an argument error should not wait for.
    """

    def format_help(self) -> str:
        try:
            defaults = calibrated_defaults("tiny")
            cpus = "all usable cores" if defaults["cpus"] is None else defaults["cpus"]
            source = defaults["source"]
            for action in self._actions:
                if action.dest in CALIBRATED_HELP:
                    text = CALIBRATED_HELP[action.dest].format(**{**defaults, "cpus": cpus})
                    action.help = text.replace("%", "%%")  # argparse %-formats help
        except ConfigError as exc:  # a broken record must not hide the rest of the help
            source = f"none readable ({exc})"
        self.epilog = (
            f"--rounds, --tolerance, --cpus and --pairing default to the calibration in force at the preset;\n"
            f"at tiny: {source}.\n\n{EXIT_CODES}"
        )
        return super().format_help()


def build_parser() -> Parser:
    parser = GateParser(
        prog="python -m bench.gate",
        description=__doc__.splitlines()[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--against",
        metavar="REF",
        help="git ref to measure against (default: [tool.pmt-bench] gate-against in pyproject, else the merge "
        "base with main; with --aa, HEAD)",
    )
    mode.add_argument(
        "--baseline", type=Path, metavar="FILE", help="gate a same-run ratio against this stored baseline instead"
    )
    parser.add_argument(
        "--aa",
        action="store_true",
        help="an A/A check on purpose: REF is HEAD's own commit (refused without it: nothing to compare)",
    )
    parser.add_argument("--path", default="neu", help="path measured from both trees (default neu)")
    parser.add_argument(
        "--candidate", help="path this checkout runs instead (A/B: in place of --path; baseline: of its candidate)"
    )
    parser.add_argument("--preset", help="preset (default tiny; with --baseline, the baseline's)")
    calibrated = "the calibration in force, shown by --help"
    parser.add_argument("--rounds", type=ROUNDS, help=f"interleaved rounds (default: {calibrated})")
    parser.add_argument("--tolerance", type=TOLERANCE, help=f"allowed loss, in [0, 1) (default: {calibrated})")
    parser.add_argument(
        "--train-seconds",
        type=TRAIN_SECONDS,
        default=JOB_OPTIONS["train_seconds"],
        help=f"steady-state training per job (default {JOB_OPTIONS['train_seconds']:g})",
    )
    parser.add_argument("--cpus", type=CORES, help=f"pin every worker to this many cores (default: {calibrated})")
    parser.add_argument("--pairing", choices=PAIRINGS, help=f"how the two sides run (default: {calibrated})")
    parser.add_argument("--seed", type=SEED, default=0, help="order of jobs within rounds (default 0)")
    parser.add_argument("--write-baseline", action="store_true", help="with --baseline: measure and write it")
    parser.add_argument(
        "--allow-other-machine", action="store_true", help="with --baseline: gate even if the fingerprint differs"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the gate's measurements here")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here: one test case per check")
    parser.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="write a Markdown summary here (default: appended to $GITHUB_STEP_SUMMARY when that is set)",
    )
    parser.add_argument(
        "--history", type=Path, metavar="FILE", help="append the result to this history (JSON lines; bench.history)"
    )
    return parser


def machine() -> str:
    from diffusion.environment import cpu_model, usable_cpus

    return f"{cpu_model()}, {usable_cpus()} usable cores"


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
    from bench.stats import rounds_interval

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
        checks.append(Check(metric, name, ratio, tolerance, interval, values, where))
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
    args: Any,
    against: tuple[str, str],
    preset: str,
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
    ref_path = parse_path(args.path)
    head_path = parse_path(args.candidate) if args.candidate else ref_path
    head = trees.head_tree()
    options = {**JOB_OPTIONS, "train_seconds": args.train_seconds}
    job_fields = sent_fields(args.path, preset, options, cpus)
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
            f"{preset}, {rounds} rounds "
            + ("taking turns" if plan.turn_seconds is not None else "of whole processes")
            + f", tolerance {tolerance:.0%}, "
            f"{'all usable cores' if cpus is None else f'pinned to {cpus} core(s)'}"
        )
        print(
            f"gate: {subject}, {setup}"
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
        "ref": {"name": ref_name, "commit": commit, "knobs": ref_knobs},
        "head": {"label": head.label, "commit": head.commit, "knobs": head_path.knobs()},
        "plan": plan.record(),
        "records": records,
    }
    return checks, {**summary, "checks": [c.record() for c in checks]}


def baseline_plan(preset: str, base: TrainingPath, candidate: TrainingPath, rounds: int, args: Any) -> Any:
    from bench.runner import Plan, Role

    roles = (Role("base", base, ("validate", "train")), Role("candidate", candidate, ("validate", "train"), "base"))
    return Plan(roles, preset, rounds, job_options={**JOB_OPTIONS, "train_seconds": args.train_seconds}, seed=args.seed)


def write_baseline(args: Any, preset: str, rounds: int, tolerance: float) -> int:
    """Measure base and candidate on this clean checkout and store their ratios."""

    from bench import trees
    from bench.analysis import interval_dict, role_ratios
    from bench.runner import run_plan
    from bench.stats import rounds_interval

    check_writable_file(args.baseline, "--baseline")
    if not trees.is_clean():
        raise ConfigError("--write-baseline must run from a clean commit, but the tree has uncommitted changes.")
    commit = trees.resolve_ref("HEAD")
    base, candidate = parse_path("alt"), parse_path(args.candidate or args.path)
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
        preset=preset,
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


def baseline_gate(args: Any, data: dict[str, Any]) -> tuple[list[Check], dict[str, Any]]:
    paths = data["paths"]
    base = parse_path(paths["base"]["spec"])
    candidate = parse_path(args.candidate or paths["candidate"]["spec"])
    rounds = args.rounds or data["rounds"]
    plan = baseline_plan(data["preset"], base, candidate, rounds, args)
    subject = f"{plan.roles[1].spec}/{paths['base']['spec']} against baseline {args.baseline}"
    setup = f"{data['preset']}, {rounds} rounds of whole processes"
    print(f"gate: {subject}, {setup}", flush=True)
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
        "subject": subject,
        "setup": setup,
        "plan": plan.record(),
        "records": records,
    }
    return checks, {**summary, "checks": [c.record() for c in checks]}


# ---- CI outputs: pure renderers of the checks, and where they go -------------------------------


def junit_xml(checks: list[Check], *, subject: str, seconds: float) -> str:
    """JUnit XML of a gate run: one test case per check; a regression is a failure and a check
    that could not be measured an error, each with the check's message (interval included)."""
    import xml.etree.ElementTree as ET

    failures = sum(c.measured is not None and not c.passed for c in checks)
    errors = sum(c.measured is None for c in checks)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": str(errors), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", name="bench.gate", **counts)
    suite = ET.SubElement(root, "testsuite", name=f"bench.gate: {subject}", skipped="0", **counts)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="bench.gate", name=f"{check.metric} {check.ratio_name}")
        if check.measured is None:
            ET.SubElement(case, "error", message=check.message, type="not measured").text = check.message
        elif not check.passed:
            ET.SubElement(case, "failure", message=check.message, type="regression").text = check.message
        else:
            ET.SubElement(case, "system-out").text = check.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_markdown(checks: list[Check], *, subject: str, setup: str, seconds: float) -> str:
    """A Markdown summary of a gate run: the verdict, what ran, and a table row per check."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    verdict = "passed" if all(c.passed for c in checks) else "FIRED"
    where = checks[0].machine if checks else machine()
    lines = [
        f"### Regression gate {verdict}",
        "",
        f"{cell(subject)}: {setup}, {seconds:.0f} s on {where}.",
        "",
        "| check | ratio | estimate | 95% interval | rounds | floor | result |",
        "| --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for c in checks:
        floor = f"{c.floor:.3g}x"
        if c.measured is None:
            lines.append(f"| `{c.metric}` | {c.ratio_name} | - | - | 0 | {floor} | NOT MEASURED |")
            continue
        m = c.measured
        result = "ok" if c.passed else "**REGRESSION**"
        lines.append(
            f"| `{c.metric}` | {c.ratio_name} | {m['estimate']:.3g}x | [{m['low']:.3g}, {m['high']:.3g}] "
            f"| {m['n']} | {floor} | {result} |"
        )
    lines += ["", *(f"- `{c.metric}`: {cell(c.values)}" for c in checks)]
    return "\n".join(lines) + "\n"


def annotation(level: str, title: str, message: str) -> str:
    """A GitHub Actions workflow command (``::error title=...::message``), escaped as GitHub
    reads it: a message may hold newlines and ``%``, a title also ``:`` and ``,``."""

    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    return f"::{level} title={escape(title, prop=True)}::{escape(message)}"


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def step_summary(args: Any) -> Path | None:
    """Where the Markdown summary goes: --summary, else GitHub's step summary file, else nowhere."""
    if args.summary is not None:
        return args.summary
    named = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(named) if named and not args.write_baseline else None


def write_ci_outputs(args: Any, checks: list[Check], summary: dict[str, Any], seconds: float) -> None:
    """JUnit XML, the Markdown summary and (under GitHub Actions) one annotation per check."""
    subject, setup = summary["subject"], summary["setup"]
    if args.junit is not None:
        write_text_atomic(args.junit, junit_xml(checks, subject=subject, seconds=seconds))
    markdown = step_summary(args)
    if markdown is not None:
        text = summary_markdown(checks, subject=subject, setup=setup, seconds=seconds)
        if args.summary is not None:
            write_text_atomic(markdown, text)
        else:  # GitHub's step summary collects every step's Markdown: add to it
            with markdown.open("a") as f:
                f.write(text)
    if on_github():
        for c in checks:
            print(annotation("notice" if c.passed else "error", f"bench.gate {c.metric}", c.message), flush=True)


def check_paths(args: Any) -> None:
    """No output is an input or another output: the records --json, --junit and --summary write
    are neither the baseline (read, or written with --write-baseline) nor a calibration record
    the defaults come from."""
    baseline = [("--baseline", args.baseline)]
    calibrations = [("a calibration record in results/", p) for p in calibration_records(args.preset or "tiny")]
    outputs = [("--json", args.json), ("--junit", args.junit), ("--summary", args.summary), ("--history", args.history)]
    summary = step_summary(args)
    if args.summary is None and summary is not None:
        outputs.append(("$GITHUB_STEP_SUMMARY", summary))
    if args.write_baseline:
        check_outputs([*baseline, *outputs], calibrations)
    else:
        check_outputs(outputs, [*baseline, *calibrations])
    for flag, path in outputs:
        if path is not None:
            check_writable_file(path, flag)


def check_arguments(args: Any) -> None:
    """Every check of the arguments that needs neither a worker nor TensorFlow.

    Raises:
        ConfigError: naming the option, the rule and the value.
    """
    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), but got {args.tolerance}.")
    check_cpus(args.cpus, "--cpus")
    for spec in (args.path, args.candidate):
        if spec is not None:
            parse_path(spec)
    if args.preset is not None:
        get_preset(args.preset)
    for name in ("cpus", "pairing", "aa"):
        if getattr(args, name) not in (None, False) and args.baseline is not None:
            raise ConfigError(
                f"--{name} applies to the A/B gate (--against); a stored baseline runs as it was measured."
            )
    if (args.write_baseline or args.allow_other_machine) and args.baseline is None:
        raise ConfigError("--write-baseline and --allow-other-machine must come with --baseline FILE.")
    if args.write_baseline and (args.junit or args.summary or args.history):
        raise ConfigError(
            "--junit, --summary and --history report a gate's checks; --write-baseline measures no check."
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return gate(args)
    except ConfigError as exc:  # refused: one line on stderr (diffusion.cli.run), and CI's annotation
        if on_github():
            print(annotation("error", "bench.gate refused", str(exc)), flush=True)
        raise


def gate(args: Any, *, start: Starter | None = None) -> int:
    """The gate for parsed arguments: the exit status of ``main``.

    Args:
        start: starts a turn-taking worker (None: a real one; tests pass fakes).
    """
    check_paths(args)
    check_arguments(args)
    began = time.perf_counter()
    if args.baseline is not None and args.write_baseline:
        preset = args.preset or "tiny"
        defaults = calibrated_defaults(preset)
        tolerance = args.tolerance if args.tolerance is not None else defaults["tolerance"]
        return write_baseline(args, preset, args.rounds or defaults["rounds"], tolerance)
    if args.baseline is not None:
        data = stored.load(args.baseline, allow_other_machine=args.allow_other_machine)
        if args.preset is not None and args.preset != data["preset"]:
            raise ConfigError(f"--preset must be the baseline's {data['preset']!r}, but got {args.preset!r}.")
        checks, summary = baseline_gate(args, data)
    else:
        from bench.trees import resolve_against

        same_path = args.candidate is None or parse_path(args.candidate).knobs() == parse_path(args.path).knobs()
        # Before any worker starts: nothing to compare is refused.
        against = resolve_against(args.against, aa=args.aa, same_path=same_path)
        preset = args.preset or "tiny"
        defaults = calibrated_defaults(preset)
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
