"""CI regression gate on same-run throughput ratios.

``python -m bench.gate --baseline baselines/tiny.json`` measures the baseline's base and
candidate paths in interleaved fresh workers, and fails (exit 1) when the 95% interval of a
ratio lies wholly below the baseline ratio less its tolerance. Ratios measured in the same
run cancel most of the machine's speed, so a committed baseline stays meaningful on CI.
``--write-baseline`` measures and writes a new baseline; ``--repeat N`` runs the gate N times
and reports how often it fired (its false-alarm rate on an unchanged candidate).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.cli import Parser, check_writable_file, read_json_record, run, write_json_atomic
from diffusion.errors import ConfigError
from diffusion.paths import format_path, parse_path
from diffusion.presets import get_preset

SCHEMA = "pmt-bench/baseline/1"
GATED_METRICS = ("train_samples_per_s", "val_pass_s")


@dataclass(frozen=True)
class Check:
    """One gated metric's outcome; ``message`` says what a reader needs to act."""

    metric: str
    baseline: float
    floor: float
    measured: dict[str, float] | None
    passed: bool
    message: str


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench.gate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", type=Path, required=True, help="baseline JSON (read; written with --write-baseline)"
    )
    parser.add_argument("--preset", help="preset; must match the baseline's (default: the baseline's)")
    parser.add_argument("--candidate", help="candidate path spec (default: the baseline's)")
    parser.add_argument("--base", help="base path spec (default: the baseline's, else alt)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: the baseline's, else 3)")
    parser.add_argument(
        "--train-seconds", type=float, default=1.0, help="steady-state training time per job (default 1)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.5, help="with --write-baseline: allowed loss (default 0.5)"
    )
    parser.add_argument(
        "--write-baseline", action="store_true", help="measure and write the baseline instead of gating"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run the gate N times and report the firing rate")
    parser.add_argument("--json", type=Path, help="write the gate's measurements here")
    return parser


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and validate a baseline file.

    Raises:
        ConfigError: missing, not JSON, wrong schema, or malformed metrics.
    """
    data = read_json_record(path, "--baseline", schema=SCHEMA, hint=" (create one with --write-baseline)")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError(f"--baseline {str(path)!r} has no metrics.")
    for name, entry in metrics.items():
        if name not in GATED_METRICS:
            raise ConfigError(f"--baseline {str(path)!r}: unknown metric {name!r}; valid: {', '.join(GATED_METRICS)}.")
        ok = isinstance(entry, dict) and isinstance(entry.get("ratio"), (int, float)) and entry["ratio"] > 0
        ok = ok and isinstance(entry.get("tolerance"), (int, float)) and 0 <= entry["tolerance"] < 1
        if not ok:
            raise ConfigError(
                f"--baseline {str(path)!r}: metric {name!r} needs a positive ratio and a tolerance in [0, 1)."
            )
    for key in ("preset", "base", "candidate"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"--baseline {str(path)!r} lacks {key!r}.")
    return data


def evaluate(baseline: dict[str, Any], measured: dict[str, dict[str, float] | None]) -> list[Check]:
    """Pure: compare measured ratio intervals with the baseline's floors."""
    checks = []
    for metric, entry in baseline["metrics"].items():
        floor = entry["ratio"] * (1 - entry["tolerance"])
        interval = measured.get(metric)
        head = f"{metric}: baseline {entry['ratio']:.3g}x, floor {floor:.3g}x (tolerance {entry['tolerance']:.0%})"
        if interval is None:
            checks.append(Check(metric, entry["ratio"], floor, None, False, f"NOT MEASURED {head}: no paired rounds"))
            continue
        got = f"measured {interval['estimate']:.3g}x [{interval['low']:.3g}, {interval['high']:.3g}] over {interval['n']} rounds"
        if interval["high"] < floor:
            checks.append(Check(metric, entry["ratio"], floor, interval, False, f"REGRESSION {head}; {got}"))
        else:
            checks.append(Check(metric, entry["ratio"], floor, interval, True, f"ok {head}; {got}"))
    return checks


def measure_ratios(
    preset: str, base: str, candidate: str, rounds: int, train_seconds: float, seed: int = 0
) -> tuple[dict[str, dict[str, float] | None], list[dict[str, Any]]]:
    import numpy as np

    from bench.analysis import interval_dict, role_ratios
    from bench.runner import Role, run_rounds
    from bench.stats import interval_of

    roles = [
        Role("base", parse_path(base), ("validate", "train")),
        Role("candidate", parse_path(candidate), ("validate", "train")),
    ]
    records = run_rounds(roles, preset, rounds, job_options={"train_seconds": train_seconds}, disk_roles=(), seed=seed)
    measured: dict[str, dict[str, float] | None] = {}
    for metric in GATED_METRICS:
        ratios = role_ratios(records, "base", "candidate", metric)
        if not ratios:
            measured[metric] = None
            continue
        measured[metric] = interval_dict(interval_of(np.array(list(ratios.values()))))
    return measured, records


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, but got {args.rounds}.")
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, but got {args.repeat}.")
    if not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), but got {args.tolerance}.")
    if args.json is not None:
        check_writable_file(args.json, "--json")
    for spec in (args.base, args.candidate):
        if spec is not None:
            parse_path(spec)
    if args.preset is not None:
        get_preset(args.preset)

    if args.write_baseline:
        check_writable_file(args.baseline, "--baseline")
        preset, base, candidate = args.preset or "tiny", args.base or "alt", args.candidate or "neu"
        rounds = args.rounds or 3
        measured, _ = measure_ratios(preset, base, candidate, rounds, args.train_seconds)
        from diffusion.environment import environment

        baseline = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "preset": preset,
            "base": format_path(parse_path(base)),
            "candidate": format_path(parse_path(candidate)),
            "rounds": rounds,
            "metrics": {m: {"ratio": iv["estimate"], "tolerance": args.tolerance} for m, iv in measured.items() if iv},
            "measured": measured,
            "environment": environment(preset=preset),
        }
        write_json_atomic(args.baseline, baseline)
        print(f"wrote {args.baseline}: " + ", ".join(f"{m} {v['ratio']:.3g}x" for m, v in baseline["metrics"].items()))
        return 0

    baseline = load_baseline(args.baseline)
    if args.preset is not None and args.preset != baseline["preset"]:
        raise ConfigError(
            f"--preset {args.preset!r} differs from the baseline's {baseline['preset']!r}; ratios are per preset."
        )
    base = args.base or baseline["base"]
    candidate = args.candidate or baseline["candidate"]
    rounds = args.rounds or baseline.get("rounds", 3)
    runs, fired = [], 0
    for i in range(args.repeat):
        measured, records = measure_ratios(baseline["preset"], base, candidate, rounds, args.train_seconds, seed=i)
        checks = evaluate(baseline, measured)
        failed = [c for c in checks if not c.passed]
        fired += bool(failed)
        prefix = f"[{i + 1}/{args.repeat}] " if args.repeat > 1 else ""
        for check in checks:
            print(prefix + check.message, file=sys.stderr if not check.passed else sys.stdout)
        runs.append(
            {
                "measured": measured,
                "checks": [c.__dict__ for c in checks],
                "errors": sorted({r["error"] for r in records if "error" in r}),
            }
        )
    summary = {
        "schema": "pmt-bench/gate-run/1",
        "baseline": str(args.baseline),
        "preset": baseline["preset"],
        "base": base,
        "candidate": candidate,
        "rounds": rounds,
        "repeat": args.repeat,
        "fired": fired,
        "runs": runs,
    }
    if args.repeat > 1:
        print(
            f"gate fired in {fired} of {args.repeat} runs ({fired / args.repeat:.0%}) for {candidate} against {args.baseline}"
        )
    if args.json is not None:
        write_json_atomic(args.json, summary)
    return 1 if fired and args.repeat == 1 else 0


if __name__ == "__main__":
    run(main)
