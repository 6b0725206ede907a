"""bench.compare and bench.gate as a user runs them: real measurements at the tiny preset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, python_env


def bench(module: str, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=python_env(**env), cwd=ROOT
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One real comparison at tiny: 2 rounds of ALT, NEU and every ablation in fresh workers."""
    out = tmp_path_factory.mktemp("compare") / "result.json"
    result = bench(
        "bench.compare", "alt", "neu", "--preset", "tiny", "--rounds", "2", "--train-seconds", "0.5", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_compare_gives_every_speed_and_memory_claim_a_measured_verdict(saved):
    result = json.loads(saved.read_text())
    assert result["schema"] == "pmt-bench/compare/1"
    rows = {row["id"]: row for row in result["claims"]}
    for cid in ("V1", "V2", "V3", "V4", "V5", "T1", "T2", "T3", "T4", "M1", "M2", "M3", "M4"):
        row = rows[cid]
        assert row["verdict"] in ("holds", "refuted", "exceeded", "inconclusive"), (cid, row["reason"])
        assert row["ci"][0] <= row["measured"]["estimate"] <= row["ci"][1]
    assert all(rows[c]["verdict"] == "pending" for c in ("Q1", "P1", "S3", "C1"))
    assert rows["H1"]["verdict"] == "not measured" and "--suite hpo" in rows["H1"]["reason"]  # a speed-only run
    assert result["environment"]["cpu_model"] and result["environment"]["git_commit"]


def test_compare_measures_what_the_seed_conflates(saved):
    rows = {row["id"]: row for row in json.loads(saved.read_text())["claims"]}
    # A pass over twice the samples is not faster, and the compiled step really is.
    assert rows["V3"]["measured"]["estimate"] < 1.0
    assert rows["T3"]["measured"]["estimate"] > 1.0
    ablations = {(a["role"], a["phase"]) for a in json.loads(saved.read_text())["ablations"]}
    assert ("candidate+xla", "train") in ablations


def test_saved_result_renders_with_markdown_and_plot(saved, tmp_path, blocked_tf):
    md = tmp_path / "report.md"
    result = bench("bench.compare", "--from", str(saved), "--markdown", str(md), **blocked_tf)
    assert result.returncode == 0, result.stderr
    for text in ("V1 validation time per epoch", "Ablations", "Environment", "pending"):
        assert text in result.stdout
    assert "| V1 validation time per epoch |" in md.read_text()
    png = md.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alt", "fast"], "unknown path 'fast'"),
        (["alt", "neu", "--preset", "huge"], "valid presets"),
        (["alt", "neu", "--rounds", "0"], "--rounds must be at least 1"),
        (["alt", "neu", "--suite", "fast"], "--suite must be one of speed, hpo, all"),
        (["--from", "/nonexistent/result.json"], "no such file"),
        (["alt", "neu", "--json", "/nonexistent/dir/out.json"], "does not exist"),
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


def test_search_suite_fills_the_search_claims(tmp_path):
    out = tmp_path / "search.json"
    result = bench(
        "bench.compare",
        "alt",
        "neu",
        "--suite",
        "hpo",
        "--hpo-trials",
        "4",
        "--hpo-epochs",
        "3",
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
    assert "PROJECTION" in rows["S4"]["reason"]
