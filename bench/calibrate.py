"""Calibrate the A/B gate: how often it fires on no change, and how often on a planted slowdown.

``python -m bench.calibrate --aa-runs 60 --power-runs 20 --preset tiny --json FILE`` runs the
gate's own plan and decision rule (``bench.gate.gate_checks``) over and over:

- A/A runs: HEAD's committed files against themselves; every firing is a false alarm.
- Power runs: HEAD against a copy of HEAD whose training step busy-waits for
  ``--planted-slowdown`` of its own duration after each step (0.25: step time x1.25, throughput
  x0.8). The wait is written into the temp copy only; no product code holds it.

Each finished run is appended to a partial record beside FILE (bench/partial.py), so a long
calibration that is stopped keeps what it measured, and the same command with ``--resume``
continues it; at the end the record, a Markdown summary and a plot of every run's interval are
written (``--from FILE`` renders the last two again from a record). It also scores the same
intervals at other tolerances (post hoc; for choosing the next calibration, not for claiming a
result) and the per-round noise of each metric.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.baseline import GATED_METRICS
from bench.gate_options import PAIRINGS
from bench.partial import Identity, Partial, code_digest, partial_path
from diffusion.cli import CORES, ROUNDS, TOLERANCE, TRAIN_SECONDS, Parser, bounded, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import parse_path
from diffusion.presets import get_preset

SCHEMA = "pmt-bench/gate-calibration/1"
TARGET = {"aa_runs": 60, "power_runs": 20, "false_alarm_rate_upper95": 0.05, "detection_rate": 0.90, "seconds": 180}
SCORED_TOLERANCES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
# Per-round noise is recorded for these too: the median step time ignores a slow stretch of a
# round (another process waking up), which the gated mean throughput counts in full.
NOISE_METRICS = (*GATED_METRICS, "train_step_ms_median")
# The code in this checkout that runs the plans and judges their records (the workers run HEAD's
# committed files, which the record's commit names): a run judged by other code is not reused.
JUDGING_CODE = (
    "bench/calibrate.py",
    "bench/gate.py",
    "bench/analysis.py",
    "bench/claim_rows.py",
    "bench/simultaneous.py",
    "bench/stats.py",
    "bench/runner.py",
    "bench/turns.py",
    "bench/trees.py",
)
# The line of the training loop that the planted copy slows; t1 is taken just before it.
STEP_LINE = "            loss = self.stepper.train(batch)\n"


# A calibration run takes about 45 s at tiny: 1000 of each kind is already 25 hours.
RUNS = bounded(int, low=0, high=1000, why=" (a run takes about 45 s)")


GATES = "(default: the gate's)"  # filled in by CalibrateParser when help is asked for


class CalibrateParser(Parser):
    """A parser whose --help states the gate's defaults at tiny beside ``(default: the gate's)``.

    Read when help is asked for, not when arguments are parsed: reading the calibration record
    loads SciPy (~1 s), which an argument error should not wait for.
    """

    def format_help(self) -> str:
        from bench.gate_options import calibrated_defaults

        try:
            defaults = calibrated_defaults("tiny")
        except ConfigError:  # a broken record must not hide the rest of the help
            return super().format_help()
        for action in self._actions:
            if action.dest in ("rounds", "tolerance", "cpus", "pairing") and action.help:
                value = defaults[action.dest]
                value = "all usable cores" if value is None else f"{value:g}" if isinstance(value, float) else value
                action.help = action.help.replace(GATES, f"(default: the gate's; at tiny {value})")
        return super().format_help()


def build_parser() -> Parser:
    from bench.gate_options import JOB_OPTIONS

    parser = CalibrateParser(prog="python -m bench.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--aa-runs", type=RUNS, default=60, help="gate runs of HEAD against HEAD (default 60)")
    parser.add_argument("--power-runs", type=RUNS, default=20, help="gate runs against a planted slowdown (default 20)")
    parser.add_argument(
        "--planted-slowdown",
        type=bounded(float, positive=True, high=100.0),
        default=0.25,
        help="busy wait after each step, as a share of it (default 0.25)",
    )
    parser.add_argument("--preset", default="tiny", help="preset (default tiny)")
    parser.add_argument("--path", default="neu", help="path measured (default neu)")
    parser.add_argument("--rounds", type=ROUNDS, help=f"rounds per gate run {GATES}")
    parser.add_argument("--tolerance", type=TOLERANCE, help=f"tolerance the runs are judged at {GATES}")
    parser.add_argument(
        "--train-seconds",
        type=TRAIN_SECONDS,
        help=f"steady-state training per job (default {JOB_OPTIONS['train_seconds']:g}, the gate's)",
    )
    parser.add_argument("--cpus", type=CORES, help=f"pin workers to this many cores {GATES}")
    parser.add_argument("--pairing", choices=PAIRINGS, help=f"how the two sides run {GATES}")
    parser.add_argument(
        "--note", default="", help="a note kept in the record, e.g. what else ran on the machine (default: none)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the cut calibration of the same --json: reuse its finished runs (kept beside it), run the rest",
    )
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--json", type=Path, help="write the calibration record here (and .md, .png beside it)")
    out.add_argument(
        "--from", dest="source", type=Path, help="render the .md and .png of a saved record, measure nothing"
    )
    return parser


def plant_slowdown(root: Path, fraction: float) -> None:
    """Make the training step in the tree at ``root`` sleep ``fraction`` of its own duration.

    Raises:
        ConfigError: the training loop no longer has the line this patches.
    """
    trainer = root / "diffusion" / "trainer.py"
    text = trainer.read_text()
    if text.count(STEP_LINE) != 1:
        raise ConfigError(f"cannot plant a slowdown: {trainer.name} must hold {STEP_LINE.strip()!r} exactly once.")
    # A busy wait, not time.sleep: a sleeping thread gives up its core, and on a loaded machine
    # waking it took milliseconds, which turned a planned x0.8 into a measured x0.57. Even so the
    # plant costs more than it adds (x0.70-0.76 measured in turns for a planned x0.8: the steps
    # after a pause run slower too; a spin that lets go of the GIL measured the same), so the
    # record keeps what it measured beside what was planted.
    spin = (
        f"            _until = time.perf_counter() + {fraction!r} * (time.perf_counter() - t1)  # planted by bench.calibrate\n"
        "            while time.perf_counter() < _until:\n"
        "                pass\n"
    )
    trainer.write_text(text.replace(STEP_LINE, STEP_LINE + spin))


@contextmanager
def trees(commit: str, fraction: float) -> Iterator[tuple[Any, Any]]:
    """HEAD's committed files twice: as they are, and with the planted slowdown."""
    from bench.runner import CodeTree
    from bench.trees import exported

    with exported(commit, "REF HEAD") as plain, exported(commit, "HEAD planted") as slow:
        plant_slowdown(slow.root, fraction)
        yield plain, CodeTree(slow.root, f"HEAD {slow.commit}+planted {fraction:.0%}", f"{slow.commit}+planted")


def upper95(events: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound of a rate (0 of 60 gives 0.049)."""
    if n == 0:
        return 1.0
    if events >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(0.95, events + 1, n - events))


def summarise(
    runs: list[dict[str, Any]], tolerance: float, rounds: int, cpus: int | None, pairing: str
) -> dict[str, Any]:
    """The record's counts and rates (pure)."""
    aa = [r for r in runs if r["kind"] == "aa"]
    power = [r for r in runs if r["kind"] == "power"]

    def fires(run: dict[str, Any], tol: float) -> bool:
        return any(c["measured"] is None or c["measured"]["high"] < 1 - tol for c in run["checks"])

    false_alarms = sum(r["fired"] for r in aa)
    detected = sum(r["fired"] for r in power)
    seconds = float(np.median([r["seconds"] for r in runs])) if runs else None
    noise = {}
    for metric in NOISE_METRICS:
        logs = [math.log(x) for r in aa for x in r["per_round"].get(metric, [])]
        noise[metric] = float(np.std(logs, ddof=1)) if len(logs) > 2 else None
    # What the plant really did: sleeping or spinning threads lose more than planned on a busy machine.
    planted = [
        c["measured"]["estimate"]
        for r in power
        for c in r["checks"]
        if c["metric"] == "train_samples_per_s" and c["measured"]
    ]
    rate_bound = upper95(false_alarms, len(aa))
    detection = detected / len(power) if power else 0.0
    meets = (
        len(aa) >= TARGET["aa_runs"]
        and len(power) >= TARGET["power_runs"]
        and rate_bound <= TARGET["false_alarm_rate_upper95"]
        and detection >= TARGET["detection_rate"]
        and seconds is not None
        and seconds <= TARGET["seconds"]
    )
    return {
        "aa_runs": len(aa),
        "false_alarms": false_alarms,
        "false_alarm_rate_upper95": rate_bound,
        "power_runs": len(power),
        "detected": detected,
        "detection_rate": detection,
        "seconds_per_run": seconds,
        "planted_measured_train_ratio": float(np.median(planted)) if planted else None,
        "meets_target": meets,
        "per_round_log_sd": noise,
        "post_hoc_at_tolerance": {
            f"{t:.2f}": {
                "false_alarms": sum(fires(r, t) for r in aa),
                "detected": sum(fires(r, t) for r in power),
            }
            for t in SCORED_TOLERANCES
        },
        "rounds": rounds,
        "tolerance": tolerance,
        "cpus": cpus,
        "pairing": pairing,
    }


def one_run(plan: Any, tolerance: float, seed: int) -> dict[str, Any]:
    from bench.analysis import role_ratios
    from bench.gate import gate_checks
    from bench.gate_ci import machine
    from bench.runner import run_plan

    start = time.perf_counter()
    records = run_plan(plan)
    checks = gate_checks(
        records,
        (("ref", plan.roles[0].tree.label), ("head", plan.roles[1].tree.label)),
        dict.fromkeys(GATED_METRICS, (1.0, tolerance)),
        machine(),
    )
    return {
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "fired": not all(c.passed for c in checks),
        "checks": [c.record() for c in checks],
        "per_round": {m: list(role_ratios(records, "ref", "head", m).values()) for m in NOISE_METRICS},
        "step_ms_median": {
            role: float(
                np.median(
                    [
                        r["phases"]["train"]["step_ms_median"]
                        for r in records
                        if r.get("role") == role and "train" in r.get("phases", {})
                    ]
                    or [np.nan]
                )
            )
            for role in ("ref", "head")
        },
        "errors": sorted({r["error"] for r in records if "error" in r}),
    }


def schedule(aa_runs: int, power_runs: int) -> list[tuple[str, int]]:
    """(kind, index) of every run, the two kinds alternated: a calibration stopped early has some
    of each, and a slow drift of the machine (other work starting) falls on both."""
    runs = [("aa", i) for i in range(aa_runs)] + [("power", i) for i in range(power_runs)]
    return sorted(runs, key=lambda run: (run[1] / (aa_runs if run[0] == "aa" else power_runs), run[0]))


def run_schedule(
    runs: list[tuple[str, int]],
    measure_one: Callable[[int, str], dict[str, Any]],
    partial: Partial,
    on_run: Callable[[str, int, dict[str, Any], bool], None] | None = None,
) -> list[dict[str, Any]]:
    """Every run of the schedule: reused from ``partial`` if a cut calibration finished it, else
    measured (``measure_one(n, kind)``, ``n`` its place, which seeds its plan) and appended.

    Returns:
        One result per run, with ``kind``; ``on_run(kind, index, result, reused)`` after each.
    """
    done = partial.done()
    results = []
    for n, (kind, i) in enumerate(runs):
        reused = (kind, i) in done
        result = done[kind, i] if reused else {"kind": kind, **measure_one(n, kind)}
        if not reused:
            partial.append((kind, i), result)
        results.append(result)
        if on_run is not None:
            on_run(kind, i, result, reused)
    return results


SHORT_METRICS = {"train_samples_per_s": "train", "val_pass_s": "val"}


def run_label(kind: str, i: int, aa_runs: int, power_runs: int) -> str:
    """``A/A 3/60`` or ``planted 1/20``: which run of its kind finished."""
    return f"A/A {i + 1}/{aa_runs}" if kind == "aa" else f"planted {i + 1}/{power_runs}"


def run_detail(result: dict[str, Any]) -> str:
    """A finished gate run, for its progress line: fired or not, and HEAD/REF per gated metric,
    with the interval of the metric that fired (else of the first); pure."""
    checks = result["checks"]
    shown = next((c for c in checks if not c["passed"]), checks[0] if checks else None)
    parts = []
    for check in sorted(checks, key=lambda c: c is not shown):
        name, m = SHORT_METRICS.get(check["metric"], check["metric"]), check["measured"]
        if m is None:
            parts.append(f"{name} not measured")
        elif check is shown:
            parts.append(f"{name} {m['estimate']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]")
        else:
            parts.append(f"{name} {m['estimate']:.2f}x")
    errors = f"; {result['errors'][0]}" if result.get("errors") else ""
    return f"{'FIRED' if result['fired'] else 'passed'}: " + ", ".join(parts) + errors


def render(source: Path) -> int:
    """Write the .md and .png of a saved calibration record.

    Raises:
        ConfigError: the file is missing or not a calibration record, or a field has the wrong shape.
    """
    from bench.calibration_report import write
    from bench.shapes import CALIBRATION, read_checked

    record = read_checked(source, "--from", CALIBRATION, schema=SCHEMA)
    print("wrote", *write(record, source))
    return 0


def check_paths(args: Any) -> None:
    """The .md and .png go beside the record (--json's, or --from's when rendering one) and must
    not be the record read. A calibration may replace a committed calibration record on purpose
    (a machine's new calibration); the defaults it takes from one are read before the first write."""
    flag, record = ("--from", args.source) if args.source is not None else ("--json", args.json)
    beside = [(f"{flag}'s Markdown", record.with_suffix(".md")), (f"{flag}'s plot", record.with_suffix(".png"))]
    if args.source is not None:
        if args.resume:
            raise ConfigError("--resume continues a calibration; --from renders a saved one: give one of them.")
        check_outputs(beside, [("--from", args.source)])
    else:
        beside.append(("--json's partial record", partial_path(args.json)))
        check_outputs([("--json", args.json), *beside])
    for what, path in beside:  # written in place (not replaced), so a read-only one must be refused here
        check_writable_file(path, what)


def main(argv: list[str] | None = None) -> int:
    from bench.baseline import fingerprint
    from bench.gate import ab_plan
    from bench.gate_ci import machine
    from bench.gate_options import JOB_OPTIONS, calibrated_defaults
    from bench.progress import JobProgress
    from diffusion.progress import fit_job_detail

    args = build_parser().parse_args(argv)
    check_paths(args)
    if args.source is not None:
        return render(args.source)
    if args.aa_runs + args.power_runs == 0:
        raise ConfigError("--aa-runs and --power-runs must not both be 0.")
    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), but got {args.tolerance}.")
    get_preset(args.preset)
    path = parse_path(args.path)
    from bench.gate_options import check_cpus

    check_cpus(args.cpus, "--cpus")
    check_writable_file(args.json, "--json")

    from bench import trees as git_trees

    defaults = calibrated_defaults(args.preset)
    rounds = args.rounds or defaults["rounds"]
    tolerance = args.tolerance if args.tolerance is not None else defaults["tolerance"]
    cpus = args.cpus if args.cpus is not None else defaults["cpus"]
    pairing = args.pairing or defaults["pairing"]
    options = {**JOB_OPTIONS, **({"train_seconds": args.train_seconds} if args.train_seconds else {})}
    commit = git_trees.resolve_ref("HEAD")
    measured = {
        "commit": commit,
        "preset": args.preset,
        "path": args.path,
        "rounds": rounds,
        "tolerance": tolerance,
        "cpus": cpus,
        "pairing": pairing,
        "job_options": options,
        "planted_slowdown": args.planted_slowdown,
        "aa_runs": args.aa_runs,
        "power_runs": args.power_runs,
    }
    # Before the first run: the committed calibration (the defaults) must be the one the cut run read.
    from bench.shapes import CALIBRATION_RUN  # here, not at the top: bench.stats loads SciPy

    partial = Partial.beside(
        args.json,
        Identity(code_digest(JUDGING_CODE), measured, fingerprint()),
        resume=args.resume,
        shape=CALIBRATION_RUN,
    )
    record = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["python", "-m", "bench.calibrate", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "commit": commit,
        "preset": args.preset,
        "path": args.path,
        "job_options": options,
        "turn_seconds": PAIRINGS[pairing],
        "planted_slowdown": args.planted_slowdown,
        "planted_throughput_ratio": 1 / (1 + args.planted_slowdown),
        "target": TARGET,
        "note": args.note,
    }

    planned = schedule(args.aa_runs, args.power_runs)
    resumed = sum(run in partial.done() for run in planned)
    if resumed:
        print(f"calibrate: {resumed} of {len(planned)} runs reused from {partial.path}", file=sys.stderr, flush=True)
    with trees(commit, args.planted_slowdown) as (plain, slow), JobProgress("calibrate", len(planned) - resumed) as bar:

        def report(kind: str, i: int, result: dict[str, Any], reused: bool) -> None:
            if not reused:
                what = run_label(kind, i, args.aa_runs, args.power_runs)
                bar.done(what, result, detail=fit_job_detail(bar, what, run_detail(result)))

        def measure_one(n: int, kind: str) -> dict[str, Any]:
            head = plain if kind == "aa" else slow
            plan = ab_plan(
                (plain, path), (head, path), args.preset, rounds, options=options, cpus=cpus, pairing=pairing, seed=n
            )
            return one_run(plan, tolerance, n)

        runs = run_schedule(planned, measure_one, partial, report)
    summary = summarise(runs, tolerance, rounds, cpus, pairing)
    from bench.calibration_report import write

    final = {**record, **summary, "runs": runs, "resumed_runs": resumed}
    write_json_atomic(args.json, final)
    partial.finish()
    print("wrote", *write(final, args.json))
    print(
        f"false alarms {summary['false_alarms']} of {summary['aa_runs']} (95% bound {summary['false_alarm_rate_upper95']:.1%}); "
        f"detected {summary['detected']} of {summary['power_runs']}; {summary['seconds_per_run']:.0f} s per run; "
        f"meets target: {summary['meets_target']}"
    )
    return 0


if __name__ == "__main__":
    run(main)
