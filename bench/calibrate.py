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

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from bench.baseline import GATED_METRICS
from bench.calibrate_options import build_parser, check_paths
from bench.calibration import NOISE_METRICS, SCHEMA, TARGET, run_detail, run_label, schedule, summarise
from bench.gate_options import PAIRINGS
from bench.load import Load, LoadPlan
from bench.partial import Identity, Partial, code_digest
from diffusion.cli import check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.paths import parse_path
from diffusion.presets import get_preset

# The code in this checkout that runs the plans and judges their records (the workers run HEAD's
# committed files, which the record's commit names): a run judged by other code is not reused.
JUDGING_CODE = (
    "bench/calibrate.py",
    "bench/calibration.py",
    "bench/calibrate_options.py",
    "bench/gate.py",
    "bench/analysis.py",
    "bench/claim_rows.py",
    "bench/simultaneous.py",
    "bench/stats.py",
    "bench/roles.py",
    "bench/runner.py",
    "bench/turns.py",
    "bench/trees.py",
)
# The line of the training loop that the planted copy slows; t1 is taken just before it.
STEP_LINE = "            loss = self.stepper.train(batch)\n"


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
    from bench.roles import CodeTree
    from bench.trees import exported

    with exported(commit, "REF HEAD") as plain, exported(commit, "HEAD planted") as slow:
        plant_slowdown(slow.root, fraction)
        yield plain, CodeTree(slow.root, f"HEAD {slow.commit}+planted {fraction:.0%}", f"{slow.commit}+planted")


def one_run(plan: Any, tolerance: float, seed: int) -> dict[str, Any]:
    from bench.analysis import role_ratios
    from bench.gate import gate_checks
    from bench.gate_ci import machine
    from bench.runner import run_plan

    start = time.perf_counter()
    load_average = os.getloadavg()[0]
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
        "load_average_before": load_average,
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


def render(source: Path, dest: Path | None = None, note: str = "") -> int:
    """Figure a saved calibration record's runs again with this code (``summarise`` is pure) and
    write its .md and .png beside it, or with ``dest`` the refigured record and its .md and .png
    there (``note``, if given, is added to the record's own: what the measurer learnt later).

    Raises:
        ConfigError: the file is missing or not a calibration record, or a field has the wrong shape.
    """
    from bench import trees as git_trees
    from bench.calibration_report import write
    from bench.shapes import CALIBRATION, read_checked

    record = read_checked(source, "--from", CALIBRATION, schema=SCHEMA)
    summary = summarise(
        record["runs"], record["tolerance"], record["rounds"], record.get("cpus"), record.get("pairing", "processes")
    )
    record = {**record, **summary}
    if dest is not None:
        # The commit whose judging code refigured it, marked if that code has uncommitted changes.
        changed = git_trees.git("diff", "--quiet", "HEAD", "--", *JUDGING_CODE).returncode != 0
        record["summary_commit"] = git_trees.resolve_ref("HEAD")[:10] + ("+uncommitted" if changed else "")
        if note:
            old = record.get("note", "").rstrip()
            record["note"] = f"{old}{' ' if old.endswith(('.', '!', '?')) else '. '}{note}" if old else note
        write_json_atomic(dest, record)
    print("wrote", *([dest] if dest else []), *write(record, dest or source))
    return 0


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
        return render(args.source, args.json, args.note)
    if args.aa_runs + args.power_runs == 0:
        raise ConfigError("--aa-runs and --power-runs must not both be 0.")
    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), but got {args.tolerance}.")
    preset = get_preset(args.preset)
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
    load = LoadPlan(args.background_load) if args.background_load > 0 else None
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
        "background_load": load.record() if load else None,
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
        "background_load": load.record() if load else None,
        "target": TARGET,
        "note": args.note,
    }

    planned = schedule(args.aa_runs, args.power_runs)
    resumed = sum(run in partial.done() for run in planned)
    if resumed:
        print(f"calibrate: {resumed} of {len(planned)} runs reused from {partial.path}", file=sys.stderr, flush=True)
    with (
        trees(commit, args.planted_slowdown) as (plain, slow),
        Load(load) if load else nullcontext() as running,
        JobProgress("calibrate", len(planned) - resumed) as bar,
    ):

        def report(kind: str, i: int, result: dict[str, Any], reused: bool) -> None:
            if not reused:
                what = run_label(kind, i, args.aa_runs, args.power_runs)
                bar.done(what, result, detail=fit_job_detail(bar, what, run_detail(result)))

        def measure_one(n: int, kind: str) -> dict[str, Any]:
            head = plain if kind == "aa" else slow
            plan = ab_plan(
                (plain, path), (head, path), preset, rounds, options=options, cpus=cpus, pairing=pairing, seed=n
            )
            return one_run(plan, tolerance, n)

        runs = run_schedule(planned, measure_one, partial, report)
    if running is not None:
        record["background_load"]["measured_core_share"] = running.shares
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
