"""A per-commit history of gate and compare results, and the commits where a series stepped.

``python -m bench.history --add RECORD.json`` appends a saved gate (``pmt-bench/gate-run/2``) or
compare (``pmt-bench/compare/2``) record to a JSON-lines history (default
``results/history.jsonl``; ``bench.gate --history FILE`` appends its own result); without
``--add`` it only reads. It shows each metric's series per commit, ordered as git orders
the commits (``git rev-list --topo-order``) when all of them are in this repository, else by
the time each entry was made, marks the commits where a series stepped, and with ``--plot`` and
``--markdown`` writes a plot and a Markdown page of the same.

A series is one metric at one preset, measured one way (``setup``: the gate's pairing and job
length, the compare suite), on one machine (the fingerprint of ``bench.baseline``: CPU, usable
cores, backend, Python, package versions, thread settings): a number from another machine or
software is another series, never a point of this one, because a same-run ratio means something
only where it was measured.

Change points: the PELT search of ``ruptures`` (BSD, needs only NumPy and SciPy) places the
steps in the log of the estimates, with a penalty of ``PENALTY * sigma^2 * log(n)`` from the
series' own noise (sigma: the median absolute first difference, robust to the step itself); a
step is kept when a Welch t-test between the points before and after it (back to the previous
kept step, on to the next) gives p < ``ALPHA``, as Apache Otava keeps E-Divisive's candidates.
A segment holds at least ``MIN_SIZE`` points, so one odd point is not a step, and a step at the
newest commit shows once one more commit is measured. The two libraries issue 20 names were
tried first on Python 3.11 and refused: ``signal-processing-algorithms`` 2.1.6 (MongoDB's
E-Divisive) requires ``numpy<2``, which JAX (``numpy>=2``) rules out, plus gevent and
``setuptools<71``; ``apache-otava`` 0.8.0 pins ``numpy==2.2.0`` and ``scipy<1.17``, so
installing it would downgrade the measured stack (NumPy 2.4, SciPy 1.17) and bring 33 packages
(BigQuery, Slack and PostgreSQL clients), and its detector ignores the window of a NumPy array
(``get_change_points`` slices only lists), so its ``compute_change_points`` raises on an array.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.history_series import build_series, change_points, commit_order
from diffusion.cli import ROUNDS, Parser, check_writable_file, run
from diffusion.errors import ConfigError
from diffusion.files import json_line, read_json_record
from diffusion.outputs import check_outputs
from diffusion.shapes import NUMBER, MapOf, Maybe, OneOf, Record, Test, check

SCHEMA = "pmt-bench/history/1"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "results" / "history.jsonl"
GATE_SCHEMA = "pmt-bench/gate-run/2"
COMPARE_SCHEMA = "pmt-bench/compare/2"
SOURCES = {GATE_SCHEMA: "gate", COMPARE_SCHEMA: "compare"}
# A gate checks these; its history also keeps the measured side's own value of each.
GATED_METRICS = ("train_samples_per_s", "val_pass_s")
METRIC = Record({"estimate": NUMBER, "low": NUMBER, "high": NUMBER, "n": int}, {"unit": str})
MACHINE = Record(
    {
        "cpu_model": str,
        "usable_cpus": int,
        "backend": str,
        "python": str,
        "versions": MapOf(str),
        "threads": MapOf(Maybe(str)),
    }
)
ENTRY = Record(
    {
        "schema": OneOf((SCHEMA,)),
        "commit": Test(lambda c: isinstance(c, str) and 7 <= len(c) <= 40 and _is_hex(c), "a commit id (hex)"),
        "dirty": bool,
        "created": str,
        "source": OneOf(tuple(SOURCES.values())),
        "preset": str,
        "machine": MACHINE,
        "metrics": MapOf(METRIC),
    },
    {"subject": str, "setup": str},
)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text.lower())


# ---- entries: what one gate or compare result adds ---------------------------------------------


def fingerprint_of(environment: dict[str, Any]) -> dict[str, Any]:
    """The machine fingerprint (``bench.baseline.fingerprint``'s fields) of a worker's environment record."""
    return {
        "cpu_model": str(environment.get("cpu_model")),
        "usable_cpus": int(environment.get("usable_cpus") or 0),
        "backend": str(environment.get("backend", "tensorflow")),
        "python": str(environment.get("python")),
        "versions": dict(environment.get("versions") or {}),
        "threads": dict(environment.get("env") or {}),
    }


def split_commit(commit: str | None, where: str) -> tuple[str, bool]:
    """A record's commit as (id, dirty): ``abc-dirty`` (environment) and ``abc+uncommitted`` (gate) are dirty.

    Raises:
        ConfigError: no commit (measured outside git).
    """
    if not isinstance(commit, str) or not commit:
        raise ConfigError(
            f"{where} has no commit: it was measured outside a git checkout, so it has no place in a history."
        )
    for mark in ("-dirty", "+uncommitted"):
        if commit.endswith(mark):
            return commit.removesuffix(mark), True
    return commit, False


def make_entry(
    *,
    commit: str,
    dirty: bool,
    source: str,
    preset: str,
    machine: dict[str, Any],
    metrics: dict[str, dict[str, Any]],
    created: str | None = None,
    subject: str | None = None,
    setup: str = "",
    where: str = "the entry",
) -> dict[str, Any]:
    """One history entry, checked as ``read`` checks it.

    Raises:
        ConfigError: a field of the wrong shape, or an interval whose ends do not hold its estimate.
    """
    entry: dict[str, Any] = {
        "schema": SCHEMA,
        "commit": commit,
        "dirty": dirty,
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": source,
        "preset": preset,
        "machine": machine,
        "metrics": metrics,
        "setup": setup,
    }
    if subject is not None:
        entry["subject"] = subject
    validate(entry, where)
    return entry


def validate(entry: Any, where: str) -> None:
    """Refuse an entry unless it has the history's shape and each interval holds its estimate.

    Raises:
        ConfigError: naming ``where`` (the file and line) and the field.
    """
    check(entry, ENTRY, where)
    for name, m in entry["metrics"].items():
        if not m["low"] <= m["estimate"] <= m["high"]:
            raise ConfigError(
                f"{where}: `metrics.{name}` must have low <= estimate <= high, "
                f"but got {m['low']!r}, {m['estimate']!r}, {m['high']!r}."
            )
        if m["n"] < 1:
            raise ConfigError(f"{where}: `metrics.{name}.n` must be at least 1, but got {m['n']}.")


def entries_from_gate(record: dict[str, Any], where: str = "the gate record") -> list[dict[str, Any]]:
    """The entry of a gate run (``pmt-bench/gate-run/2``): each check's ratio ("train_samples_per_s
    HEAD/REF"), and the measured side's own value of each gated metric ("train_samples_per_s",
    in samples/s: the series in which a commit's step shows). No entry if nothing was measured."""
    from bench.analysis import interval_dict, metric_rounds
    from bench.claims import METRICS
    from bench.stats import interval_of

    records = record.get("records") or []
    subject_role = "head" if record.get("mode") == "against" else "candidate"
    metrics = {
        f"{c['metric']} {c.get('ratio', 'HEAD/REF')}": {**c["measured"], "unit": "x"}
        for c in record.get("checks") or []
        if isinstance(c, dict) and isinstance(c.get("metric"), str) and isinstance(c.get("measured"), dict)
    }
    for metric in GATED_METRICS:
        values = list(metric_rounds(records, subject_role, metric).values())
        if values and all(v > 0 for v in values):
            metrics[metric] = {**interval_dict(interval_of(values)), "unit": METRICS[metric].unit}
    workers = [r for r in records if r.get("role") == subject_role and isinstance(r.get("environment"), dict)]
    if not metrics or not workers:
        return []
    environment = workers[0]["environment"]
    commit = environment.get("git_commit") or (record.get("head") or {}).get("commit")
    commit, dirty = split_commit(commit, where)
    plan = record.get("plan") or {}
    options = plan.get("job_options") or {}
    # How the numbers were made: the measured side's own values depend on the pairing and the
    # job's length, so each setup is its own series.
    setup = [f"gate {record.get('mode')}"]
    if "turn_seconds" in plan:
        setup.append("in turns" if plan["turn_seconds"] else "whole processes")
    setup += [f"{k} {options[k]:g}" for k in ("train_seconds", "val_passes") if k in options]
    return [
        make_entry(
            commit=commit,
            dirty=dirty,
            source="gate",
            setup=", ".join(setup),
            preset=plan.get("preset") or environment.get("preset"),
            machine=fingerprint_of(environment),
            metrics=metrics,
            created=record.get("created"),
            subject=record.get("subject"),
            where=where,
        )
    ]


def entries_from_compare(record: dict[str, Any], where: str = "the compare record") -> list[dict[str, Any]]:
    """The entry of a comparison (``pmt-bench/compare/2``): every claim measured, by its id ("V1"),
    as NEU against ALT the claim's way ("x" for a ratio)."""
    metrics = {}
    for claim in record.get("claims") or []:
        m = claim.get("measured")
        if isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("estimate", "low", "high", "n")):
            unit = "x" if claim.get("kind") == "ratio" else str(claim.get("kind"))
            metrics[claim["id"]] = {**{k: m[k] for k in ("estimate", "low", "high")}, "n": int(m["n"]), "unit": unit}
    environment = record.get("environment") or {}
    if not metrics:
        return []
    commit, dirty = split_commit(environment.get("git_commit"), where)
    base, candidate = (record.get(k) or {} for k in ("base", "candidate"))
    return [
        make_entry(
            commit=commit,
            dirty=dirty,
            source="compare",
            setup=f"compare, {record.get('suite')} suite",
            preset=record.get("preset") or environment.get("preset"),
            machine=fingerprint_of(environment),
            metrics=metrics,
            created=record.get("created"),
            subject=f"{candidate.get('spec')} against {base.get('spec')}, {record.get('suite')} suite",
            where=where,
        )
    ]


def entries_from_file(path: Path) -> list[dict[str, Any]]:
    """The entries of a saved gate or compare record.

    Raises:
        ConfigError: missing, not JSON, or of another schema (the valid ones named).
    """
    record = read_json_record(path, "--add")
    where = f"--add {str(path)!r}"
    if record.get("schema") == GATE_SCHEMA:
        return entries_from_gate(record, where)
    if record.get("schema") == COMPARE_SCHEMA:
        return entries_from_compare(record, where)
    raise ConfigError(f"{where} must be a record of schema {' or '.join(SOURCES)}, but got {record.get('schema')!r}.")


# ---- the file ------------------------------------------------------------------------------------


def append(path: Path, entry: dict[str, Any]) -> None:
    """Append one entry as one line, flushed to disk: one ``write`` on an ``O_APPEND`` file, so two
    appenders do not interleave their lines and a crash leaves at most a cut last line (which
    ``read`` names).

    Raises:
        ConfigError: the entry is malformed.
    """
    validate(entry, "the entry to append")
    line = (json_line(entry) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> list[dict[str, Any]]:
    """Every entry of a history file, each line checked.

    Raises:
        ConfigError: missing, or a line that is not JSON or not an entry: ``F line N: ...``.
    """
    if not path.is_file():
        raise ConfigError(
            f"--file {str(path)!r}: no such history (add to it with --add RECORD.json or bench.gate --history FILE)."
        )
    entries = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where} is not JSON ({exc.msg} at column {exc.colno}).") from None
            validate(entry, where)
            entries.append(entry)
    return entries


def same_result(entry: dict[str, Any]) -> str:
    """An entry but for its time, which a saved gate record lacks (each add is then stamped anew):
    two runs never measure the same floats, so equal keys are one record added twice."""
    return json.dumps({k: v for k, v in entry.items() if k != "created"}, sort_keys=True)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m bench.history",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 shown (and added); 2 bad input, in one line naming the file (and line)",
    )
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_FILE, help="the history, JSON lines (default results/history.jsonl)"
    )
    parser.add_argument(
        "--add", type=Path, nargs="+", default=[], metavar="RECORD", help="append these gate or compare records first"
    )
    parser.add_argument(
        "--measure",
        metavar="RANGE",
        help="first gate each commit of this git range (e.g. HEAD~5..HEAD, at most 20) against its parent, "
        "from its own worktree, appending each result (bench/history_measure.py)",
    )
    parser.add_argument("--preset", default="tiny", help="with --measure: the gate's preset (default tiny)")
    parser.add_argument(
        "--rounds", type=ROUNDS, help="with --measure: the gate's rounds (default: each commit's gate's)"
    )
    parser.add_argument("--metric", nargs="+", metavar="M", help="show only these metrics (default: all)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write a plot here: one panel per series")
    parser.add_argument("--markdown", type=Path, metavar="MD", help="write the tables as Markdown here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench import history_report

    args = build_parser().parse_args(argv)
    adds = [("--add", p) for p in args.add]
    outputs = [("--plot", args.plot), ("--markdown", args.markdown)]
    writes = bool(args.add or args.measure)
    check_outputs([*outputs, *([("--file", args.file)] if writes else [])], adds)
    check_outputs(outputs, [("--file", args.file)])
    for flag, path in [*outputs, *([("--file", args.file)] if writes else [])]:
        if path is not None:
            check_writable_file(path, flag)
    if args.measure is not None:
        from bench.history_measure import measure
        from diffusion.presets import get_preset

        get_preset(args.preset)
        measure(args.measure, args.file, preset=args.preset, rounds=args.rounds)
    added = [(path, entries_from_file(path)) for path in args.add]  # all read before one is appended
    held = {same_result(e) for e in read(args.file)} if added and args.file.exists() else set()
    for path, entries in added:
        new = [e for e in entries if same_result(e) not in held]
        for entry in new:
            append(args.file, entry)
            held.add(same_result(entry))
        again = f" ({len(entries) - len(new)} already there)" if len(new) < len(entries) else ""
        print(f"added {len(new)} entr{'y' if len(new) == 1 else 'ies'} from {path} to {args.file}{again}")
    series = build_series(read(args.file), commit_order(), args.metric)
    steps = {s.title: change_points(s) for s in series}
    history_report.render(series, steps)
    if args.plot is not None:
        history_report.write_plot(series, steps, args.plot)
        print(f"wrote {args.plot}")
    if args.markdown is not None:
        plot_name = os.path.relpath(args.plot, args.markdown.parent) if args.plot else None
        history_report.write_markdown(series, steps, args.markdown, plot_name=plot_name)
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    run(main)
