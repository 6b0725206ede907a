"""bench.compare's command line: the parser, with every suite's own options from the suite table,
and the typed options it is turned into once, at the edge. Below this module nothing reads an
``argparse.Namespace`` or parses a path spec or preset name: the suites get ``CompareOptions``
and their own typed plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import suites
from bench.claims import Claim
from diffusion.cli import ROUNDS, SEED, TRAIN_SECONDS, Parser
from diffusion.errors import ConfigError
from diffusion.paths import TrainingPath, parse_path
from diffusion.presets import PRESETS, Preset, get_preset

DESCRIPTION = "Measure two training paths against each other and give every claim a verdict."


@dataclass(frozen=True)
class CompareOptions:
    """What a measuring run of bench.compare was asked for, parsed and checked.

    Attributes:
        base, candidate: the two paths.
        preset: ``--preset``; None: each suite's own (its table entry's ``preset``).
        suite: the ``--suite`` value (a suite's name, or ``all``).
        rounds: ``--rounds``, the most rounds; None: each suite's own.
        train_seconds: steady-state training per job (speed, scale, scaling).
        seed: the order of jobs within rounds.
        json: the result record's file, beside which cut runs keep their partial records.
        resume: continue a cut run from those partial records.
        claims: the registry the rows are judged by (``--claims``, else bench/claims.toml).
        plans: every suite's typed plan, by suite name, built from its own options.
    """

    base: TrainingPath
    candidate: TrainingPath
    preset: Preset | None
    suite: str
    rounds: int | None
    train_seconds: float
    seed: int
    json: Path | None
    resume: bool
    claims: tuple[Claim, ...] = ()
    plans: Mapping[str, Any] = field(default_factory=dict)

    def runs(self, suite: str) -> bool:
        """Whether ``suite`` is measured in this run (``all`` runs every one but scale)."""
        return self.suite == suite or (self.suite == "all" and suites.by_name()[suite].in_all)

    def preset_or(self, default: str) -> Preset:
        """``--preset`` if given, else the suite's own ``default``."""
        return self.preset if self.preset is not None else get_preset(default)


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.compare", description=DESCRIPTION)
    parser.add_argument("base", nargs="?", help="base path spec (default alt)")
    parser.add_argument("candidate", nargs="?", help="candidate path spec (default neu)")
    own = ", ".join(f"{s.name} {s.preset}" for s in suites.SUITES if s.preset)
    parser.add_argument(
        "--preset", help=f"one of {', '.join(PRESETS)} for every suite that runs (default each suite's own: {own})"
    )
    parser.add_argument(
        "--rounds",
        type=ROUNDS,
        help="rounds at most: the speed suite stops earlier once every V/T claim is decided; the scaling "
        "suite runs them all (default each suite's own: "
        + ", ".join(f"{s.name} {s.rounds}" for s in suites.SUITES if s.rounds)
        + ")",
    )
    parser.add_argument(
        "--train-seconds", type=TRAIN_SECONDS, default=2.5, help="steady-state training time per job (default 2.5)"
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
        help="; ".join(f"{s.name}: {s.about}" for s in suites.SUITES if s.about)
        + "; all: every one of "
        + ", ".join(s.name for s in suites.SUITES if s.in_all)
        + " (default speed)",
    )
    for suite in suites.SUITES:
        if suite.options is not None:
            suite.options(parser)
    return parser


def options_from(args: Any) -> CompareOptions:
    """The typed options of a measuring run: each spec and the preset parsed once, here, and
    every suite's plan built from its own options (a bad one is refused before any suite runs).

    Raises:
        ConfigError: an unknown suite, path, knob or preset, or a suite's option it refuses.
    """
    if args.suite not in suites.suite_names():
        raise ConfigError(f"--suite must be one of {', '.join(suites.suite_names())}, but got {args.suite!r}.")
    common = CompareOptions(
        base=parse_path(args.base or "alt"),
        candidate=parse_path(args.candidate or "neu"),
        preset=get_preset(args.preset) if args.preset is not None else None,
        suite=args.suite,
        rounds=args.rounds,
        train_seconds=args.train_seconds,
        seed=args.seed,
        json=args.json,
        resume=args.resume,
        claims=tuple(suites.load_registry(args.claims)),
    )
    return replace(common, plans={s.name: s.plan(args, common) for s in suites.SUITES if s.plan is not None})
