"""Repeatability of the verdicts: ``python -m bench.repeat --runs 10 --json F [-- COMPARE ARGS]``.

Runs ``python -m bench.compare`` (default: ``alt neu``, the README's main job) N times in fresh
processes on this machine and tabulates each claim's verdict per run, the share of runs that
agree with the most common verdict, and the load average around each run (other work on the
machine is noise the verdicts must survive, and the record says how much there was). The
record is rewritten after every run, so a stopped series keeps what finished.
"""

from __future__ import annotations

import json
import os
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


def agreement(runs: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per claim: the most common verdict, how many runs gave it, and every verdict's count (pure)."""
    out = {}
    for cid in sorted({c for r in runs for c in r}, key=lambda c: (c[0], c)):
        counts = Counter(r[cid] for r in runs if cid in r)
        verdict, agree = counts.most_common(1)[0]
        out[cid] = {"verdict": verdict, "agree": agree, "runs": sum(counts.values()), "counts": dict(counts)}
    return out


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
        "git_commit": result["environment"].get("git_commit"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.repeat", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="compare runs (default 10)")
    parser.add_argument("--json", type=Path, required=True, help="the record, rewritten after every run")
    parser.add_argument("--markdown", type=Path, help="the verdict table per run")
    parser.add_argument("compare_args", nargs="*", help="arguments of bench.compare (default: alt neu)")
    args = parser.parse_args(argv)
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
