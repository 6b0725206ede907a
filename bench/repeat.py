"""Repeatability of the verdicts: ``python -m bench.repeat --runs 10 --json F [-- COMPARE ARGS]``.

``--from F [--markdown OUT]`` renders a saved record again, runs nothing.

Runs ``python -m bench.compare`` (default: ``alt neu``, the README's main job) N times in fresh
processes on this machine and tabulates each claim's verdict per run, the share of runs that
agree with the most common verdict, and the load average around each run (other work on the
machine is noise the verdicts must survive, and the record says how much there was). The
record is rewritten after every run, so a stopped series keeps what finished.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.repeat_analysis import (
    TARGET_FAMILIES,
    agreement,
    claim_bands,
    forecasts,
    overlap,
    pooled,
    why_flipped,
)
from diffusion.cli import Parser, bounded, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic, write_text_atomic
from diffusion.outputs import check_outputs, check_readable_file
from diffusion.shapes import check

if TYPE_CHECKING:
    from bench.repeat_forecast import Spread

SCHEMA = "pmt-bench/repeat/1"
ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("validation", "training", "memory")  # the claims a default compare run judges
STABLE_SHARE = 0.9


def markdown(record: dict[str, Any]) -> str:
    runs = record["runs"]
    ids = list(record["agreement"])
    head = ["claim", *[str(i + 1) for i in range(len(runs))], "agree"]
    lines = [
        f"# Verdict repeatability: `python -m bench.compare {' '.join(record['compare_args'])}`, {len(runs)} runs",
        "",
        f"{record['machine']}; {record['seconds'] / 60:.0f} min in all. Load average (1 min) before each run: "
        + ", ".join(f"{r['load_before'][0]:.1f}" for r in runs)
        + ".",
        "",
    ]
    if any(r.get("stop") for r in runs):
        lines += ["| run | wall s | rounds of turns | stop |", "|---|---|---|---|"]
        lines += [
            f"| {i + 1} | {r['seconds']:.0f} | {len(r.get('stages_s') or ()) or '-'} | {r.get('stop') or '-'} |"
            for i, r in enumerate(runs)
        ]
        lines.append("")
    lines += [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for cid in ids:
        a = record["agreement"][cid]
        cells = [r["verdicts"].get(cid, "-") for r in runs]
        lines.append(f"| {cid} | " + " | ".join(cells) + f" | {a['agree']}/{a['runs']} |")
    lines += ["", "Ratio estimates per run (a verdict flips where the interval straddles an edge):", ""]
    lines += ["| claim | " + " | ".join(str(i + 1) for i in range(len(runs))) + " |", "|" + "---|" * (len(runs) + 1)]
    for cid in ids:
        cells = [r["intervals"].get(cid, "-") for r in runs]
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    bands = claim_bands(record)
    need = math.ceil(STABLE_SHARE * len(runs))
    target = [c for c in ids if c in bands and bands[c][2] in TARGET_FAMILIES]
    stable = [c for c in target if record["agreement"][c]["agree"] >= need]
    lines += [
        "",
        f"{' and '.join(TARGET_FAMILIES).capitalize()} claims with the same verdict in at least {need} of "
        f"{len(runs)} runs: {', '.join(stable) or 'none'}; fewer: {', '.join(c for c in target if c not in stable) or 'none'}.",
    ]
    shares = overlap(record)
    if shares and len(runs) > 1:
        low = [c for c, (k, n) in shares.items() if k < STABLE_SHARE * n]
        lines += [
            "",
            f"Pairs of runs whose intervals (each at its run's level) overlap (target: at least {STABLE_SHARE:.0%} of pairs): "
            + ", ".join(f"{c} {k}/{n} ({k / n:.0%})" for c, (k, n) in shares.items())
            + f"; below the target: {', '.join(low) or 'none'}.",
        ]
    together = pooled(record)
    if together:
        lines += [
            "",
            f"All {len(runs)} runs together (interval of the runs' estimates, n = runs; judged by the same rule):",
            "",
            "| claim | estimate [95% CI] | verdict |",
            "|---|---|---|",
        ]
        lines += [
            f"| {cid} | {iv.estimate:.3g} [{iv.low:.3g}, {iv.high:.3g}] | {word} |"
            for cid, (iv, word) in together.items()
        ]
    reasons = why_flipped(record, bands)
    if reasons:
        lines += [
            "",
            "Why verdicts differ (computed from each run's interval and the claim's band; "
            "'spans' names the verdict's edges inside that run's interval):",
            "",
        ]
        lines += [f"- {cid}: {text}" for cid, text in reasons.items()]
    lines += forecast_lines(record)
    return "\n".join(lines) + "\n"


def at_runs(s: Spread) -> str:
    """Where a forecast's chances are: "n = 6", or the runs' range of rounds, and their levels
    when any is not 95%."""
    from bench.stats import CONFIDENCE  # here, not at the top: bench.stats loads SciPy

    rounds = sorted({n for n, _, _ in s.mix} or {s.n})
    levels = sorted({round(level, 3) for _, level, _ in s.mix} or {round(s.confidence, 3)})  # as printed
    n = f"n = {rounds[0]}" if len(rounds) == 1 else f"n = {rounds[0]}-{rounds[-1]}"
    if levels == [CONFIDENCE]:
        return n
    return f"{n} at {levels[0]:.1%}" if len(levels) == 1 else f"{n} at {levels[0]:.1%}-{levels[-1]:.1%}"


def forecast_lines(record: dict[str, Any]) -> list[str]:
    """The computed repeat forecast's table (``bench.repeat_analysis.forecasts``); it simulates
    some 10^5 runs per claim, about a second for a record."""
    from bench.repeat_forecast import DRAWS, REPEAT_CHANCE, ROUNDS_TRIED
    from bench.sequential import DECIDED_STOP

    found = forecasts(record)
    if not found:
        return []
    lines = [
        "",
        "How often each verdict should repeat: computed, not measured. From the runs together: a round's sd of "
        "log ratio within a run (pooled), the extra sd of a whole run's estimate beyond what its rounds explain "
        f"(drift between runs), and {DRAWS} simulated runs per row judged by the verdict rule "
        "(bench/repeat_forecast.py), taking those estimates as true. 'Rounds to repeat': the fewest rounds, of "
        f"{', '.join(map(str, ROUNDS_TRIED))}, at which a fixed-n run at 95% gives a decided verdict that 9 of 10 "
        f"runs share with chance >= {REPEAT_CHANCE:.0%}; a sequential run over several looks needs at least as many.",
        "",
        "| claim | estimate | round sd | run sd | verdict chances at the runs' rounds and levels | 9/10 agree "
        "| rounds to repeat |",
        "|---|---|---|---|---|---|---|",
    ]
    decided = sum(1 for r in record["runs"] if (r.get("stop") or "").startswith(DECIDED_STOP))
    if decided:  # their rounds depend on their verdicts, which a fixed-n mix does not model
        lines[1] += (
            f" {decided} of the {len(record['runs'])} runs stopped with every claim decided: the chances count"
            " each at its rounds and level as a fixed-n run, which understates how often such runs decide."
        )
    for cid, f in found.items():
        s = f.spread
        chances = ", ".join(f"{word} {p:.0%}" for word, p in f.chances.items() if p >= 0.005)
        needed = str(f.rounds_to_repeat) if f.rounds_to_repeat else f"more than {ROUNDS_TRIED[-1]}"
        lines.append(
            f"| {cid} | {math.exp(s.mu):.3g} | {s.round_sd:.3f} | {s.run_sd:.3f} | {at_runs(s)}: {chances} "
            f"| {f.agree:.0%} | {needed} |"
        )
    return lines


def one_run(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-repeat-") as tmp:
        out = Path(tmp) / "result.json"
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.compare", *args, "--json", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"compare exited {proc.returncode}: {tail}", "seconds": seconds}
        result = json.loads(out.read_text())
    return {"seconds": seconds, "load_before": list(load_before), "load_after": list(os.getloadavg()), **kept(result)}


def kept(result: dict[str, Any]) -> dict[str, Any]:
    """What the repeat record keeps of one compare record (pure): each judged claim's verdict,
    interval, band, level and per-round ratios, the run's stop reason and its rounds' stages."""
    from bench.analysis import round_stages

    judged = [c for c in result["claims"] if c["family"] in FAMILIES and c["measured"]]
    return {
        "verdicts": {c["id"]: c["verdict"] for c in judged},
        "intervals": {
            c["id"]: f"{c['measured']['estimate']:.3g} [{c['measured']['low']:.3g}, {c['measured']['high']:.3g}]"
            for c in judged
        },
        "rows": {
            c["id"]: {
                **c["measured"],
                "band": c.get("band"),
                "claimed": c.get("claimed_here", c.get("claimed")),
                "family": c["family"],
                "confidence": c.get("confidence"),
                "per_round": [c["per_round"][k] for k in sorted(c.get("per_round") or {}, key=int)],
            }
            for c in judged
        },
        "stop": (result.get("sequential") or {}).get("stop"),  # None: a record without a speed suite
        "stages_s": round_stages(result.get("records") or []),
        "git_commit": result["environment"].get("git_commit"),
    }


# bench.compare options that would make a run something else than a fresh measurement kept by
# bench.repeat: its own outputs (each run would write over them; a committed record, say), a
# saved record rendered N times (N runs that agree perfectly), or a cut run continued.
NOT_PASSED = {
    "json": "--json",
    "markdown": "--markdown",
    "source": "--from",
    "resume": "--resume",
    "reassess": "--reassess",
}


def check_compare_args(compare_args: list[str]) -> None:
    """Parse the arguments as bench.compare will (a bad one is refused once, here, not N times
    after N starts) and refuse the options bench.repeat owns.

    Raises:
        ConfigError: an option of ``NOT_PASSED``; SystemExit(2) with compare's one-line message
            for an argument compare refuses.
    """
    from bench.compare import build_parser as compare_parser
    from diffusion.paths import parse_path
    from diffusion.presets import get_preset

    parsed = compare_parser().parse_args(compare_args)
    given = [flag for name, flag in NOT_PASSED.items() if getattr(parsed, name, None) not in (None, False)]
    if given:
        raise ConfigError(
            f"compare arguments must not include {', '.join(given)}: bench.repeat runs fresh measurements "
            "and keeps each run's record itself (its --json and --markdown)."
        )
    for spec in (parsed.base, parsed.candidate):
        if spec is not None:
            parse_path(spec)
    if parsed.preset is not None:  # None: compare's own default (seed)
        get_preset(parsed.preset)


def render_saved(source: Path, out: Path | None) -> int:
    check_readable_file(source, "--from")
    try:
        record = json.loads(source.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8, bad JSON, a 5,000-digit integer
        raise ConfigError(f"--from {str(source)!r} is not a readable repeat record: {exc}") from None
    schema = record.get("schema") if isinstance(record, dict) else f"none (a JSON {type(record).__name__})"
    if schema != SCHEMA:
        raise ConfigError(f"--from {str(source)!r} has schema {schema!r}; expected {SCHEMA!r}.")
    from bench.shapes import REPEAT  # here, not at the top: bench.stats loads SciPy

    check(record, REPEAT, f"--from {str(source)!r} is not a complete repeat record")
    try:
        text = markdown(record)
    except (KeyError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"--from {str(source)!r} is not a complete repeat record: {exc!r} is missing or malformed."
        ) from None
    if out is None:
        print(text, end="")
    else:
        check_writable_file(out, "--markdown")
        write_text_atomic(out, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.repeat", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=bounded(int, low=2, high=100, why=" (each run is a whole comparison)"),
        default=10,
        help="compare runs (default 10)",
    )
    parser.add_argument("--json", type=Path, help="the record, rewritten after every run")
    parser.add_argument("--markdown", type=Path, help="the verdict table per run")
    parser.add_argument("--from", dest="source", type=Path, help="render a saved record's table; run nothing")
    parser.add_argument("compare_args", nargs="*", help="arguments of bench.compare (default: alt neu)")
    args = parser.parse_args(argv)
    check_outputs([("--json", args.json), ("--markdown", args.markdown)], [("--from", args.source)])
    if args.source is not None:
        given = [name for name, on in (("--json", args.json), ("compare arguments", args.compare_args)) if on]
        if given:
            raise ConfigError(f"--from renders a saved record and runs nothing; drop {' and '.join(given)}.")
        return render_saved(args.source, args.markdown)
    if args.json is None:
        raise ConfigError("--json FILE is required (or --from FILE to render a saved record).")
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown")):
        if path is not None:
            check_writable_file(path, what)
    compare_args = args.compare_args or ["alt", "neu"]
    check_compare_args(compare_args)
    from diffusion.environment import environment

    env = environment()
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "compare_args": compare_args,
        "machine": f"{env.get('cpu_model')}, {env.get('usable_cpus')} CPUs",
        "environment": env,
        "runs": [],
        "failed": [],
        "seconds": 0.0,
    }
    start = time.perf_counter()
    for i in range(args.runs):
        result = one_run(compare_args)
        (record["failed"] if "error" in result else record["runs"]).append(result)
        record["seconds"] = time.perf_counter() - start
        record["agreement"] = agreement([r["verdicts"] for r in record["runs"]])
        write_json_atomic(args.json, record)
        if args.markdown is not None and record["runs"]:
            write_text_atomic(args.markdown, markdown(record))
        status = result.get("error") or f"done in {result['seconds']:.0f} s"
        print(f"[{i + 1}/{args.runs}] {status}", flush=True)
    flips = {c: a for c, a in record["agreement"].items() if a["agree"] < a["runs"]}
    print(f"{len(record['runs'])} runs; claims whose verdict changed: {', '.join(flips) or 'none'}")
    return 0


if __name__ == "__main__":
    run(main)
