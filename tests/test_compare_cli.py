"""bench.compare and bench.gate as a user runs them: real measurements at the tiny preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, python_env

# The module's real comparison (27 workers) and the search suite take minutes on 2 loaded cores.
pytestmark = pytest.mark.timeout(900)


def bench(module: str, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=python_env(**env), cwd=ROOT
    )


TINY = ("alt", "neu", "--preset", "tiny", "--rounds", "3", "--train-seconds", "0.5")


def kept_jobs(path: Path) -> list[dict]:
    """The whole job lines of a partial record (its first line is the run's identity)."""
    lines = path.read_text().splitlines()[1:] if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


# Imported by every Python process started with the hook's folder on PYTHONPATH (site imports
# ``sitecustomize``), before any module binds the parser: each process counts its calls of the
# spec parser and the preset lookup and writes them, by pid, where PMT_PARSE_COUNTS says: at
# every call and at exit, since a worker leaves with os._exit (bench/worker.py), past atexit.
COUNTING_HOOK = """
import atexit, json, os, sys
import diffusion.paths, diffusion.presets
counts = {"parse_path": 0, "get_preset": 0}
def write():
    with open(os.path.join(os.environ["PMT_PARSE_COUNTS"], f"{os.getpid()}.json"), "w") as f:
        json.dump({"argv": sys.argv, **counts}, f)
def counted(name, fn):
    def call(*args, **kwargs):
        counts[name] += 1
        write()
        return fn(*args, **kwargs)
    return call
diffusion.paths.parse_path = counted("parse_path", diffusion.paths.parse_path)
diffusion.presets.get_preset = counted("get_preset", diffusion.presets.get_preset)
atexit.register(write)
"""


def counting_hook(folder: Path) -> dict[str, str]:
    """The environment that makes every process of a run count its parser calls into ``folder``."""
    (folder / "hook").mkdir(parents=True)
    (folder / "hook" / "sitecustomize.py").write_text(COUNTING_HOOK)
    return {"PYTHONPATH": os.pathsep.join([str(folder / "hook"), str(ROOT)]), "PMT_PARSE_COUNTS": str(folder)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One real comparison at tiny, 3 rounds (ALT and NEU in whole processes for memory, then
    every role in frozen turns), SIGKILLed with its workers once its first jobs of turns are
    kept, then resumed with --resume: the record every test here reads."""
    out = tmp_path_factory.mktemp("compare") / "result.json"
    command = [PYTHON, "-m", "bench.compare", *TINY, "--json", str(out)]
    speed = out.with_name("result.speed.partial.jsonl")
    with out.with_suffix(".cut.stderr").open("w") as stderr:
        cut = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=python_env(), cwd=ROOT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 600
        while len(kept_jobs(speed)) < 2 and cut.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cut.poll() is None, out.with_suffix(".cut.stderr").read_text()[-3000:]
        os.killpg(cut.pid, signal.SIGKILL)  # the run and its workers, at once
        cut.wait()
    kept = {"memory": kept_jobs(out.with_name("result.memory.partial.jsonl")), "speed": kept_jobs(speed)}
    out.with_suffix(".kept.json").write_text(json.dumps(kept))
    assert not out.exists()
    counts = counting_hook(out.with_name("parse-counts"))
    result = bench("bench.compare", *TINY, "--json", str(out), "--resume", **counts)
    assert result.returncode == 0, result.stderr[-3000:]
    out.with_suffix(".stderr").write_text(result.stderr)
    return out


@pytest.mark.slow
def test_a_spec_is_parsed_once_in_the_parent_and_never_in_a_worker(saved):
    """From the command line to the trainer: the parent parses each of its two specs once (where
    they enter), and a worker gets the path as its knob mapping and the preset by name."""
    counts = [json.loads(p.read_text()) for p in saved.with_name("parse-counts").glob("*.json")]
    parent = [c for c in counts if c["argv"][0].endswith(os.path.join("bench", "compare.py"))]
    workers = [c for c in counts if c["argv"][0].endswith(os.path.join("bench", "worker.py"))]
    assert len(parent) == 1 and len(workers) >= 8, [c["argv"][:2] for c in counts]
    assert parent[0]["parse_path"] == 2  # alt and neu
    assert all(w["parse_path"] == 0 and w["get_preset"] == 1 for w in workers), workers


@pytest.mark.slow
def test_a_compare_cut_by_sigkill_resumes_with_the_jobs_it_finished(saved):
    kept = json.loads(saved.with_suffix(".kept.json").read_text())
    result = json.loads(saved.read_text())
    roles = [role["name"] for role in result["roles"]]
    records = {(rec["round"], rec["role"], rec.get("measured_for")): rec for rec in result["records"]}
    assert len(records) == len(result["records"]) == 3 * len(roles) + 3 * 2  # turns, then memory of ALT and NEU
    assert len(kept["memory"]) == 6  # every memory job ends before the turns start
    for job in kept["memory"]:
        r, role = job["key"]
        assert records[r, role, "memory"]["phases"].keys() == job["record"]["phases"].keys()
        assert records[r, role, "memory"]["setup"] == job["record"]["setup"]  # reused, not measured again
    whole = {
        r
        for r in {job["key"][0] for job in kept["speed"]}
        if sum(job["key"][0] == r for job in kept["speed"]) == len(roles)
    }
    for job in kept["speed"]:
        r, role = job["key"]
        if r in whole:  # a round kept whole is reused; one cut mid-way is measured again whole
            assert records[r, role, None] == {**job["record"]}, (r, role)
    assert not list(saved.parent.glob("*.partial.jsonl"))  # removed once the result was written
    assert f"speed ({6 + len(whole) * len(roles)} jobs reused)" in saved.with_suffix(".stderr").read_text()


ONE_KNOB = [("loader", "train"), ("train_compile", "train"), ("clip_norm", "train")]
ONE_KNOB += [("val_batches", "validate"), ("val_batch_size", "validate"), ("val_compile", "validate")]
SPEED_AND_MEMORY = ("V1", "V2", "V3", "V4", "V5", "T1", "T2", "T3", "T4", "T5", "M1", "M2")
DECIDED = ("holds", "refuted", "refuted (reversed)", "exceeded")


@pytest.mark.slow
def test_compare_gives_every_speed_and_memory_claim_a_row_with_a_verdict_under_the_rule(saved):
    result = json.loads(saved.read_text())
    assert result["schema"] == "pmt-bench/compare/2"
    rows = {row["id"]: row for row in result["claims"]}
    assert len(rows) >= 35 and all(row["kind"] in ("ratio", "share", "exact", "projection") for row in rows.values())
    for cid in SPEED_AND_MEMORY:
        row = rows[cid]
        assert row["verdict"] in (*DECIDED, "inconclusive"), (cid, row["reason"])
        assert row["rounds"] == 3 and row["ci"][0] <= row["measured"]["estimate"] <= row["ci"][1]
        if row["claimed"] > 1 and row["ci"][0] < 1:
            assert row["verdict"] not in ("holds", "exceeded"), cid  # direction first
    assert rows["M4"]["verdict"].endswith("(exact)") and rows["M3"]["verdict"].endswith("(exact)")
    assert all(rows[c]["verdict"] == "pending" for c in ("Q6", "S3", "S5"))
    assert all(rows[c]["verdict"] == "not measured" for c in ("Q1", "P1", "C1"))  # the quality suite's
    assert rows["H1"]["verdict"] == "not measured" and "--suite hpo" in rows["H1"]["reason"]  # a speed-only run
    assert result["environment"]["cpu_model"] and result["environment"]["git_commit"]


@pytest.mark.slow
def test_two_rounds_give_no_speed_or_memory_verdict_and_say_why(saved, tmp_path, blocked_tf):
    result = json.loads(saved.read_text())
    result["records"] = [rec for rec in result["records"] if rec["round"] < 2]
    two = tmp_path / "two-rounds.json"
    two.write_text(json.dumps(result))
    out = tmp_path / "judged.json"
    got = bench("bench.compare", "--from", str(two), "--reassess", "--json", str(out), **blocked_tf)
    assert got.returncode == 0, got.stderr
    rows = {row["id"]: row for row in json.loads(out.read_text())["claims"]}
    for cid in SPEED_AND_MEMORY:
        assert rows[cid]["verdict"] == "inconclusive", cid
        assert "n = 2: too few rounds" in rows[cid]["reason"], cid


@pytest.mark.slow
def test_compare_reads_what_the_report_claims_not_what_is_easy(saved):
    result = json.loads(saved.read_text())
    rows = {row["id"]: row for row in result["claims"]}
    assert (rows["V3"]["metric"], rows["V3"]["beside"]["metric"]) == ("val_samples_per_s", "val_pass_s")
    assert (rows["M1"]["metric"], rows["M1"]["beside"]["metric"]) == ("train_rss_growth_mib", "train_peak_rss_mib")
    assert sorted(rows["V5"]["per_round"]) == ["0", "1", "2"]
    ablations = {(a["role"], a["phase"]) for a in result["ablations"]}
    assert ablations == {(f"base+{knob}", phase) for knob, phase in ONE_KNOB}  # XLA only with --xla


@pytest.mark.slow
def test_saved_result_renders_with_markdown_and_plot(saved, tmp_path, blocked_tf):
    md = tmp_path / "report.md"
    result = bench("bench.compare", "--from", str(saved), "--markdown", str(md), **blocked_tf)
    assert result.returncode == 0, result.stderr
    for text in ("validation time per epoch", "Ablations", "Environment", "pending"):
        assert text in result.stdout
    assert "| V1 | validation time per epoch |" in md.read_text()
    png = md.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_at_80_columns_no_word_or_interval_is_broken(saved, blocked_tf):
    import re

    result = bench("bench.compare", "--from", str(saved), COLUMNS="80", **blocked_tf)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    flowing = " ".join(result.stdout.split())
    for row in json.loads(saved.read_text())["claims"]:
        assert row["text"] in flowing, row["text"]  # a word broken inside would split it
    for line in result.stdout.splitlines():
        assert line.count("[") == line.count("]"), line  # an interval stays on its line
    assert re.search(r"\d\.?\d*x \[[\d.]+, [\d.]+\]", result.stdout)


def test_an_old_result_needs_reassess_and_then_renders(tmp_path, blocked_tf):
    old = ROOT / "results" / "compare-alt-neu-seed-xeon-2cpu.json"
    data = json.loads(old.read_text())
    if data["schema"] != "pmt-bench/compare/1":
        data["schema"] = "pmt-bench/compare/1"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    refused = bench("bench.compare", "--from", str(path), **blocked_tf)
    assert refused.returncode == 2 and "--reassess" in refused.stderr
    got = bench("bench.compare", "--from", str(path), "--reassess", **blocked_tf)
    assert got.returncode == 0, got.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alt", "fast"], "unknown path 'fast'"),
        (["alt", "neu", "--preset", "huge"], "valid presets"),
        (["alt", "neu", "--rounds", "0"], "--rounds must be at least 1"),
        (["alt", "neu", "--suite", "fast"], "--suite must be one of speed, hpo, scaling, quality, scale, all"),
        (["--from", "/nonexistent/result.json"], "no such file"),
        (["alt", "neu", "--json", "/nonexistent/dir/out.json"], "does not exist"),
        (["alt", "neu", "--reassess"], "--reassess re-judges a saved result"),
    ],
)
def test_compare_bad_input_is_one_line_exit_2_before_tensorflow(args, message, blocked_tf):
    result = bench("bench.compare", *args, **blocked_tf)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("content", "message"), [("{not json", "not valid JSON"), ('{"schema": "other/1"}', "schema")])
def test_corrupt_or_foreign_saved_result_is_refused_and_outputs_kept(tmp_path, blocked_tf, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    keep = tmp_path / "keep.md"
    keep.write_text("previous report")
    result = bench("bench.compare", "--from", str(bad), "--markdown", str(keep), **blocked_tf)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert keep.read_text() == "previous report"


@pytest.mark.slow
def test_search_suite_fills_the_search_claims(tmp_path):
    out = tmp_path / "search.json"
    result = bench(
        "bench.compare",
        "alt",
        "neu",
        "--suite",
        "hpo",
        "--hpo-trials",
        "2",
        "--hpo-epochs",
        "1",
        "--hpo-repeats",
        "1",
        "--json",
        str(out),
        "--markdown",
        str(tmp_path / "search.md"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["id"]: row for row in json.loads(out.read_text())["claims"]}
    for cid in ("H1", "H2", "H3", "S1", "S4"):
        assert rows[cid]["measured"] is not None, (cid, rows[cid]["reason"])
    assert rows["V1"]["verdict"] == "not measured" and "--suite speed" in rows["V1"]["reason"]
    # The committed simulation record (bench.swarm) stands beside the arithmetic.
    assert rows["S4"]["verdict"] == "projection (simulated)" and "computed" in rows["S4"]["reason"]
    assert rows["H1"]["verdict"] == "inconclusive" and "n = 1: too few rounds" in rows["H1"]["reason"]


@pytest.mark.slow
def test_scaling_suite_fills_s2_labelled_with_the_cores_used(tmp_path):
    # 2 rounds: the suite's jobs, table, plot and S2's row end to end; the rule that turns n
    # rounds into a verdict is the one every ratio uses (tests/test_analysis.py, test_stats.py).
    out = tmp_path / "scaling.json"
    result = bench(
        "bench.compare", "alt", "neu", "--suite", "scaling", "--preset", "tiny", "--rounds", "2",
        "--train-seconds", "0.3", "--json", str(out), "--markdown", str(tmp_path / "scaling.md"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    s2 = {row["id"]: row for row in data["claims"]}["S2"]
    assert s2["rounds"] == 2 and s2["measured"] is not None, s2["reason"]
    assert s2["verdict"] == "inconclusive" and "n = 2: too few rounds" in s2["reason"], s2
    counts = data["scaling"]["counts"]
    assert f"at {counts[-1]} vs" in s2["reason"]
    assert {row["cores"] for row in data["scaling"]["table"]} == set(counts)
    assert (tmp_path / "scaling-scaling.png").read_bytes()[:4] == b"\x89PNG"


RENDERED_SCHEMAS = ("pmt-bench/compare/1", "pmt-bench/compare/2", "pmt-bench/gpu/1")
SAVED = sorted(
    p for p in (ROOT / "results").glob("*.json") if json.loads(p.read_text()).get("schema") in RENDERED_SCHEMAS
)


@pytest.mark.parametrize("record", SAVED, ids=lambda p: p.name)
def test_every_committed_record_renders_with_the_mission_command(record, capsys):
    """`bench.compare alt neu --from F` (and --reassess) for every committed record, old ones
    included: a knob an old record lacks takes the value every path had then."""
    from bench import compare

    gpu = json.loads(record.read_text())["schema"] == "pmt-bench/gpu/1"
    assert compare.main(["alt", "neu", "--from", str(record)]) == 0
    assert gpu or compare.main(["alt", "neu", "--from", str(record), "--reassess"]) == 0
    assert "verdict" in capsys.readouterr().out


def test_a_saved_record_of_another_path_is_refused_naming_the_knobs_that_differ(capsys):
    from bench import compare
    from diffusion.errors import ConfigError

    record = ROOT / "results" / "compare-alt-neu-small-xeon-2cpu.json"
    with pytest.raises(ConfigError, match=r"candidate 'neu:clip_norm=none' does not match .*: clip_norm=1.0 -> None"):
        compare.main(["alt", "neu:clip_norm=none", "--from", str(record)])
