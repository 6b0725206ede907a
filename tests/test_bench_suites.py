"""bench/conftest.py: pytest-benchmark's saved runs are kept apart by preset, and a
``--benchmark-compare`` that would compare nothing is refused instead of passing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.conftest import compare_refusal, preset_storage
from tests.conftest import PYTHON, ROOT, python_env

pytest.importorskip("pytest_benchmark")
GATE = ["--benchmark-compare", "--benchmark-compare-fail=mean:25%"]


def saved_run(preset: str) -> Path:
    """A committed pytest-benchmark run whose benchmarks are all at ``preset``."""
    for path in sorted((ROOT / "results" / "benchmarks").rglob("*.json")):
        benchmarks = json.loads(path.read_text())["benchmarks"]
        if {b["params"]["preset"] for b in benchmarks} == {preset}:
            return path
    pytest.skip(f"no committed pytest-benchmark run at {preset}")


def store(storage: Path, folder: str, run: Path) -> None:
    """Put a saved run where pytest-benchmark keeps it: STORAGE/FOLDER/MACHINE/NNNN_....json."""
    target = storage / folder / run.parent.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(run, target / run.name)


def bench_pytest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # Run from `cwd` so that a relative --benchmark-storage lies under it (pytest-benchmark names
    # a mismatched machine's run relative to the working directory and crashes on one outside it).
    return subprocess.run(
        [PYTHON, "-m", "pytest", str(ROOT / "bench"), "-p", "no:cacheprovider", "--benchmark-storage=store", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=python_env(**env),
    )


@pytest.mark.parametrize(
    ("storage", "narrowed"),
    [
        ("results/benchmarks", "results/benchmarks/tiny"),
        ("file://./.benchmarks", "file://.benchmarks/tiny"),
        ("elasticsearch+https://host:9200/bench/run", "elasticsearch+https://host:9200/bench/run"),
    ],
)
def test_each_preset_saves_into_its_own_folder_of_the_storage(storage, narrowed):
    assert preset_storage(storage, "tiny") == narrowed


def test_a_comparison_with_no_saved_run_is_refused():
    assert "no saved run at preset tiny in S" in compare_refusal("tiny", "S", {}, True)
    assert "matching '0007'" in compare_refusal("tiny", "S", {}, "0007")


def test_a_comparison_with_a_run_of_another_preset_is_refused_and_one_of_this_preset_is_not():
    small = {"test_x[small]": {"params": {"preset": "small"}}}
    tiny = {"test_x[tiny]": {"params": {"preset": "tiny"}}}
    assert "run 0002 was saved at preset small, this session runs tiny" in compare_refusal(
        "tiny", "S", {"m/0002_abc.json": small}, True
    )
    assert compare_refusal("tiny", "S", {"m/0001_abc.json": tiny}, True) is None
    unparametrised = {"test_y": {"params": None}}
    assert "saved at preset None" in compare_refusal("tiny", "S", {"m/0003_abc.json": unparametrised}, True)


def test_gate_against_storage_holding_only_a_small_run_fails_before_benchmarking(tmp_path, blocked_tf):
    """The issue's trap: the latest saved run is a small one and a tiny session compared nothing, exit 0.
    Refused at session start, so no benchmark runs and the backend never loads (TensorFlow blocked)."""
    small = saved_run("small")
    store(tmp_path / "store", "small", small)  # its own preset's folder
    store(tmp_path / "store", ".", small)  # and where the shared folder of old kept it
    result = bench_pytest(tmp_path, "--preset", "tiny", *GATE, **blocked_tf)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "no saved run at preset tiny" in result.stderr
    assert "passed" not in result.stdout


def test_gate_against_a_small_run_filed_under_tiny_names_both_presets(tmp_path, blocked_tf):
    store(tmp_path / "store", "tiny", saved_run("small"))
    result = bench_pytest(tmp_path, "--preset", "tiny", *GATE, **blocked_tf)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert "saved at preset small, this session runs tiny" in line


@pytest.mark.slow
def test_gate_against_a_run_of_the_same_preset_compares_and_saves_beside_it(tmp_path):
    """One cheap benchmark (the detector simulation, NumPy only) at tiny, against the committed tiny run."""
    store(tmp_path / "store", "tiny", saved_run("tiny"))
    result = bench_pytest(tmp_path, "--preset", "tiny", "-k", "detector", *GATE[:1], "--benchmark-autosave")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Comparing against benchmarks from" in result.stdout + result.stderr
    assert "test_detector_simulation[tiny] (NOW)" in result.stdout
    assert len(list((tmp_path / "store" / "tiny").rglob("*.json"))) == 2
