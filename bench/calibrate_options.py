"""The arguments of ``python -m bench.calibrate``: its parser, whose --help states the gate's
calibrated defaults, and the check of the files a calibration writes beside its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.gate_options import PAIRINGS
from bench.partial import partial_path
from diffusion.cli import CORES, ROUNDS, TOLERANCE, TRAIN_SECONDS, Parser, bounded, check_writable_file
from diffusion.errors import ConfigError
from diffusion.outputs import check_outputs

# --help's first line (bench/calibrate.py's docstring opens with it too).
DESCRIPTION = "Calibrate the A/B gate: how often it fires on no change, and how often on a planted slowdown."
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

    parser = CalibrateParser(prog="python -m bench.calibrate", description=DESCRIPTION)
    parser.add_argument("--aa-runs", type=RUNS, default=60, help="gate runs of HEAD against HEAD (default 60)")
    parser.add_argument("--power-runs", type=RUNS, default=20, help="gate runs against a planted slowdown (default 20)")
    parser.add_argument(
        "--planted-slowdown",
        type=bounded(float, positive=True, high=100.0),
        default=0.25,
        help="busy wait after each step, as a share of it (default 0.25)",
    )
    parser.add_argument(
        "--background-load",
        type=bounded(float, low=0.0, high=1.0),
        default=0.0,
        help="run bench.load beside the calibration: one core busy this share of the time, in [0, 1] (default 0: none)",
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
        "--note",
        default="",
        help="a note kept in the record, e.g. what else ran on the machine; with --from and --json, added to the "
        "saved record's note (default: none)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the cut calibration of the same --json: reuse its finished runs (kept beside it), run the rest",
    )
    parser.add_argument("--json", type=Path, help="write the calibration record here (and .md, .png beside it)")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="measure nothing: figure a saved record's runs again with this code and render its .md and .png "
        "(beside it; with --json, write the refigured record there instead)",
    )
    return parser


def check_paths(args: Any) -> None:
    """The .md and .png go beside the record (--json's, or --from's when rendering one) and must
    not be the record read. A calibration may replace a committed calibration record on purpose
    (a machine's new calibration); the defaults it takes from one are read before the first write."""
    if args.json is None and args.source is None:
        raise ConfigError(
            "give --json FILE (calibrate, and write the record there) or --from FILE (refigure a saved one)."
        )
    flag, record = ("--json", args.json) if args.json is not None else ("--from", args.source)
    beside = [(f"{flag}'s Markdown", record.with_suffix(".md")), (f"{flag}'s plot", record.with_suffix(".png"))]
    if args.source is not None:
        if args.resume:
            raise ConfigError("--resume continues a calibration; --from renders a saved one: give one of them.")
        outputs = [("--json", args.json), *beside] if args.json is not None else beside
        check_outputs(outputs, [("--from", args.source)])
    else:
        beside.append(("--json's partial record", partial_path(args.json)))
        check_outputs([("--json", args.json), *beside])
    for what, path in beside:  # written in place (not replaced), so a read-only one must be refused here
        check_writable_file(path, what)
