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
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from diffusion.cli import Parser, check_writable_file, run, write_json_atomic, write_text_atomic
from diffusion.errors import ConfigError

SCHEMA = "pmt-bench/repeat/1"
ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("V", "T", "M")  # the claims a default compare run judges
TARGET_FAMILIES = ("V", "T")  # the ones that must agree in >= 9 of 10 runs
INTERVAL_TEXT = re.compile(r"(\S+) \[(\S+), (\S+)\]")


def agreement(runs: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per claim: the most common verdict, how many runs gave it, and every verdict's count (pure)."""
    out = {}
    for cid in sorted({c for r in runs for c in r}, key=lambda c: (c[0], c)):
        counts = Counter(r[cid] for r in runs if cid in r)
        verdict, agree = counts.most_common(1)[0]
        out[cid] = {"verdict": verdict, "agree": agree, "runs": sum(counts.values()), "counts": dict(counts)}
    return out


def run_intervals(run: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Each claim's (estimate, low, high) in one run: from its measured row, or, in records made
    before rows were kept, parsed back from the table's ``"est [low, high]"`` text (3 digits)."""
    if "rows" in run:
        return {cid: (r["estimate"], r["low"], r["high"]) for cid, r in run["rows"].items()}
    out = {}
    for cid, text in run["intervals"].items():
        match = INTERVAL_TEXT.fullmatch(text)
        if match:
            out[cid] = tuple(float(x) for x in match.groups())
    return out


def straddled(low: float, high: float, band: tuple[float, float], claimed: float) -> list[float]:
    """The verdict's edges lying inside an interval (pure): the band's two, and 1 for a claim
    with a direction. An interval holding one of them is why a verdict can differ between runs."""
    edges = [*band, *([1.0] if claimed != 1.0 else [])]
    return sorted(e for e in edges if low < e < high)


def why_flipped(record: dict[str, Any], bands: dict[str, tuple[tuple[float, float], float]]) -> dict[str, str]:
    """For each claim whose verdict differs between runs: which runs gave which verdict, and the
    edge each run's interval held (pure). ``bands``: claim id -> (band, claimed)."""
    out = {}
    runs = record["runs"]
    for cid, a in record["agreement"].items():
        if a["agree"] == a["runs"] or cid not in bands:
            continue
        band, claimed = bands[cid]
        by_verdict: dict[str, list[str]] = {}
        for i, one in enumerate(runs):
            if cid not in one["verdicts"]:
                continue
            interval = run_intervals(one).get(cid)
            held = straddled(interval[1], interval[2], band, claimed) if interval else []
            note = f"{i + 1}" + (f" (spans {', '.join(f'{e:.3g}' for e in held)})" if held else "")
            by_verdict.setdefault(one["verdicts"][cid], []).append(note)
        parts = "; ".join(f"{v} in run {', '.join(notes)}" for v, notes in by_verdict.items())
        out[cid] = f"band [{band[0]:.3g}, {band[1]:.3g}] around {claimed:g}x: {parts}"
    return out


def registry_bands(ids: list[str]) -> dict[str, tuple[tuple[float, float], float]]:
    """Each claim's band and claimed value from the registry (for records that did not keep them)."""
    from bench.claims import load_claims
    from bench.stats import claim_band

    claims = {c.id: c for c in load_claims()}
    return {
        cid: (claim_band(claims[cid].claimed, claims[cid].tolerance, claims[cid].margin), claims[cid].claimed)
        for cid in ids
        if cid in claims and claims[cid].claimed is not None
    }


def record_bands(record: dict[str, Any]) -> dict[str, tuple[tuple[float, float], float]]:
    kept = {
        cid: ((row["band"][0], row["band"][1]), row["claimed"])
        for one in record["runs"]
        for cid, row in one.get("rows", {}).items()
        if row.get("band")
    }
    return {**registry_bands([c for c in record["agreement"] if c not in kept]), **kept}


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
    stable = [c for c in ids if c[0] in TARGET_FAMILIES and record["agreement"][c]["agree"] >= 0.9 * len(runs)]
    unstable = [c for c in ids if c[0] in TARGET_FAMILIES and c not in stable]
    lines += [
        "",
        f"V and T claims with the same verdict in at least 90% of runs (9 of 10): {', '.join(stable) or 'none'}; "
        f"fewer: {', '.join(unstable) or 'none'}.",
    ]
    reasons = why_flipped(record, record_bands(record))
    if reasons:
        lines += [
            "",
            "Why verdicts differ (computed from each run's interval and the claim's band; "
            "'spans' names the verdict's edges inside that run's interval):",
            "",
        ]
        lines += [f"- {cid}: {text}" for cid, text in reasons.items()]
    return "\n".join(lines) + "\n"


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
    judged = [c for c in result["claims"] if c["id"][0] in FAMILIES and c["measured"]]
    return {
        "seconds": seconds,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "verdicts": {c["id"]: c["verdict"] for c in judged},
        "intervals": {
            c["id"]: f"{c['measured']['estimate']:.3g} [{c['measured']['low']:.3g}, {c['measured']['high']:.3g}]"
            for c in judged
        },
        "rows": {
            c["id"]: {**c["measured"], "band": c.get("band"), "claimed": c.get("claimed_here", c.get("claimed"))}
            for c in judged
        },
        "git_commit": result["environment"].get("git_commit"),
    }


def render_saved(source: Path, out: Path | None) -> int:
    try:
        record = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--from {str(source)!r} is not a readable repeat record: {exc}") from None
    if record.get("schema") != SCHEMA:
        raise ConfigError(f"--from {str(source)!r} has schema {record.get('schema')!r}; expected {SCHEMA!r}.")
    text = markdown(record)
    if out is None:
        print(text, end="")
    else:
        check_writable_file(out, "--markdown")
        write_text_atomic(out, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.repeat", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="compare runs (default 10)")
    parser.add_argument("--json", type=Path, help="the record, rewritten after every run")
    parser.add_argument("--markdown", type=Path, help="the verdict table per run")
    parser.add_argument("--from", dest="source", type=Path, help="render a saved record's table; run nothing")
    parser.add_argument("compare_args", nargs="*", help="arguments of bench.compare (default: alt neu)")
    args = parser.parse_args(argv)
    if args.source is not None:
        return render_saved(args.source, args.markdown)
    if args.json is None:
        raise ConfigError("--json FILE is required (or --from FILE to render a saved record).")
    if args.runs < 2:
        raise ConfigError(f"--runs must be at least 2, but got {args.runs}.")
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown")):
        if path is not None:
            check_writable_file(path, what)
    compare_args = args.compare_args or ["alt", "neu"]
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
