"""bench.gpu and bench.accel: the JAX-side checks in a fresh JAX process, the claim rows from a
record, the committed GPU record rendered, and the refusal without a GPU."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.analysis import gpu_claim_rows
from tests.conftest import PYTHON, ROOT, python_env, run_test_file

RECORD = ROOT / "results" / "gpu-seed-h200-x2.json"


@pytest.mark.slow
def test_accelerator_functions_hold_on_the_jax_backend():
    result = run_test_file("jax_accel_checks.py", KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "5 passed" in result.stdout and "skipped" not in result.stdout


def record(cpu_s: list[float], gpu_s: list[float]) -> dict:
    readings = {"forward_s": gpu_s, "backward_s": gpu_s, "epoch_s": gpu_s, "device_kind": "GPU"}
    cpu = {"forward_s": cpu_s, "backward_s": cpu_s, "epoch_s": cpu_s, "cores": 16}
    return {"gpu": readings, "cpu": cpu}


def test_s3_rows_are_cpu_time_over_gpu_time_with_a_verdict():
    rows = {r["id"]: r for r in gpu_claim_rows(record([10.0, 10.2, 9.9, 10.1, 10.0], [1.0, 1.01, 0.99, 1.0, 1.0]))}
    assert set(rows) == {"S3", "S3b", "S3c"}
    assert rows["S3"]["measured"]["estimate"] == pytest.approx(10.0, rel=0.01)
    assert rows["S3"]["verdict"] == "holds" and rows["S3"]["rounds"] == 5


def test_s3_without_cpu_readings_is_not_measured_and_says_why():
    data = record([1.0], [1.0])
    data["cpu"] = {"error": "CPU half exited 1: boom"}
    rows = gpu_claim_rows(data)
    assert all(r["verdict"] == "not measured" and "boom" in r["reason"] for r in rows)


def test_committed_gpu_record_renders_with_from_and_names_the_device(tmp_path, blocked_tf):
    md = tmp_path / "gpu.md"
    result = subprocess.run(
        [PYTHON, "-m", "bench.compare", "--from", str(RECORD), "--markdown", str(md)],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(**blocked_tf),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "NVIDIA H200" in result.stdout and "S3" in result.stdout
    text = md.read_text()
    for section in ("Training throughput", "model.fit peer", "Data parallel"):
        assert section in text
    data = json.loads(RECORD.read_text())
    device_rows = [r for r in data["train"] if r["loader"] == "device" and r["batch"] >= 1024]
    assert device_rows and all(r["input_wait_share"] <= 0.05 for r in device_rows)


@pytest.mark.slow
def test_without_a_gpu_bench_gpu_refuses_in_one_line():
    result = subprocess.run(
        [PYTHON, "-m", "bench.gpu", "--preset", "tiny", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env=python_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no GPU is visible" in result.stderr.strip().splitlines()[-1]
