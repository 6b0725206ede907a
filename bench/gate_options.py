"""The gate's command line: its options, the calibrated defaults they fall back to, and every
check of them that needs neither a worker nor TensorFlow (bench.gate runs them)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gate_ci import step_summary
from diffusion.cli import CORES, ROUNDS, SEED, TOLERANCE, TRAIN_SECONDS, Parser, check_writable_file
from diffusion.errors import ConfigError
from diffusion.outputs import check_outputs
from diffusion.paths import TrainingPath, parse_path
from diffusion.presets import Preset, get_preset
from diffusion.shapes import check as check_shape

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


def calibration_records(preset: str) -> list[Path]:
    """The committed calibration records at ``preset`` that ``calibrated_defaults`` reads."""
    return sorted(RESULTS.glob(f"gate-calibration-{preset}-*.json"))


def calibrated_defaults(preset: str) -> dict[str, Any]:
    """Tolerance, rounds and cores from the newest committed calibration at ``preset`` that met
    its target (by its ``created`` time), else the provisional ones (with ``source`` saying which).

    Raises:
        ConfigError: the record lacks its tolerance or rounds, or pins more cores than this machine has.
    """
    met = []
    for path in calibration_records(preset):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("meets_target") is True:
            met.append((str(record.get("created", "")), path.name, record))
    if not met:
        return {**PROVISIONAL, "source": "provisional (no full calibration committed)"}
    from bench.shapes import CALIBRATED  # here, not at the top: bench.stats loads SciPy

    _, name, record = max(met, key=lambda m: m[:2])
    check_shape(record, CALIBRATED, f"calibration record {name}")
    pairing = record.get("pairing", "processes")  # records from before turns measured processes
    if pairing not in PAIRINGS:
        raise ConfigError(f"pairing of {name} must be one of {', '.join(PAIRINGS)}, but got {pairing!r}.")
    return {
        "tolerance": record["tolerance"],
        "rounds": record["rounds"],
        "cpus": check_cpus(record.get("cpus"), f"cpus of {name}"),
        "pairing": pairing,
        "source": name,
    }


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
        description="CI regression gate: this checkout against a git ref, on the same machine in the same run.",
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
    parser.add_argument(
        "--seed",
        type=SEED,
        help="seed of the order of turns and jobs; the result records it, so --seed N replays a run "
        "(default: drawn afresh for every run)",
    )
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


@dataclass(frozen=True)
class GateOptions:
    """A gate run's options, parsed and checked once (``gate_options``): what bench.gate's
    functions take instead of the parsed arguments.

    Attributes:
        path: ``--path``, measured from both trees (A/B) or the baseline's candidate's stand-in.
        candidate: ``--candidate``: what this checkout runs instead of ``path``; None: ``path``.
        preset: ``--preset``; None: tiny, or with ``--baseline`` the baseline's.
        rounds, tolerance, cpus, pairing: None: the calibration in force (or the baseline's).
        Every other field is the option of the same name.
    """

    path: TrainingPath
    candidate: TrainingPath | None
    preset: Preset | None
    against: str | None
    baseline: Path | None
    aa: bool
    rounds: int | None
    tolerance: float | None
    train_seconds: float
    cpus: int | None
    pairing: str | None
    seed: int
    write_baseline: bool
    allow_other_machine: bool
    json: Path | None
    junit: Path | None
    summary: Path | None
    history: Path | None

    @property
    def head_path(self) -> TrainingPath:
        """What this checkout runs: ``--candidate``, else ``--path``."""
        return self.candidate if self.candidate is not None else self.path


def draw_seed() -> int:
    """A fresh seed for a run's order of turns: a fixed order meets the same stretch of a busy
    machine's rhythm in every run, and a bias it gives would then repeat instead of averaging out."""
    import secrets

    return secrets.randbelow(2**32)


def gate_options(args: Any) -> GateOptions:
    """The gate's typed options: every check of ``check_arguments``, and each path spec and the
    preset parsed, here and nowhere else.

    Raises:
        ConfigError: naming the option, the rule and the value.
    """
    check_arguments(args)
    return GateOptions(
        path=parse_path(args.path),
        candidate=parse_path(args.candidate) if args.candidate is not None else None,
        preset=get_preset(args.preset) if args.preset is not None else None,
        against=args.against,
        baseline=args.baseline,
        aa=args.aa,
        rounds=args.rounds,
        tolerance=args.tolerance,
        train_seconds=args.train_seconds,
        cpus=args.cpus,
        pairing=args.pairing,
        seed=args.seed if args.seed is not None else draw_seed(),
        write_baseline=args.write_baseline,
        allow_other_machine=args.allow_other_machine,
        json=args.json,
        junit=args.junit,
        summary=args.summary,
        history=args.history,
    )
