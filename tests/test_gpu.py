"""bench.gpu and bench.accel: the JAX-side checks in a fresh JAX process, the claim rows from a
record, the committed GPU record rendered, and the refusal without a GPU."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from bench.gpu_analysis import gpu_claim_rows
from tests.conftest import PYTHON, ROOT, python_env, run_test_file

RECORD = ROOT / "results" / "gpu-seed-h200-x2.json"
CEILING_RECORD = ROOT / "results" / "gpu-ceiling-seed-h200.json"


@pytest.mark.slow
def test_accelerator_functions_hold_on_the_jax_backend():
    result = run_test_file("jax_accel_checks.py", KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "11 passed" in result.stdout and "skipped" not in result.stdout


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


# ---- progress: a line per reading, the CPU half's included (fakes: nothing is measured) ----


class Device:
    def __init__(self, platform: str) -> None:
        self.platform, self.device_kind = platform, f"fake {platform}"


class FakeTrainer:
    """diffusion.trainer.Trainer as epoch_times uses it."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def train_epoch(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake_accel(monkeypatch):
    """bench.accel's readings as fakes at the widest numbers a real run prints (an H200 trains ~1.7
    million samples/s at most); JAX sees two GPUs."""
    import sys
    import types

    import jax

    from bench import accel

    gpus = [Device("gpu"), Device("gpu")]
    monkeypatch.setattr(jax, "devices", lambda kind=None: [Device("cpu")] if kind == "cpu" else gpus)
    monkeypatch.setattr(accel, "build", lambda *args, **kwargs: types.SimpleNamespace(keras_model=None))
    monkeypatch.setattr(accel, "analytic_flops_per_sample", lambda model: {"train": 1.0})
    monkeypatch.setattr(
        accel, "forward_backward", lambda model, batch, device: {"forward_s": 0.012345, "backward_s": 0.067891}
    )
    monkeypatch.setattr(accel, "matmul_rate", lambda dtype, device=None: 9.87e15)
    row = {"samples_per_s": 9_876_543.0, "input_wait_share": 0.5}
    monkeypatch.setattr(accel, "train_throughput", lambda model, batch, loader, **kwargs: {**row, "batch": batch})
    monkeypatch.setattr(accel, "fit_peer", lambda model, batch: {"samples_per_s": 1_234_567.0, "batch": batch})
    monkeypatch.setattr(accel, "data_parallel", lambda preset, data, batch, devices, **kw: {**row, "batch": batch})
    monkeypatch.setitem(sys.modules, "diffusion.trainer", types.SimpleNamespace(Trainer=FakeTrainer))
    from bench import ceiling

    def step_against_ceiling(model, batch, *, ks=ceiling.STEPS_PER_CALL, rounds=ceiling.ROUNDS, report, **kw):
        for r in range(rounds):
            report(f"ceiling batch {batch} #{r + 1}/{rounds}", "1876543/s; k=64 100%")
        return {"batch": batch, "ceiling": [1.0] * rounds, "step": {str(k): [1.0] * rounds for k in ks}}

    monkeypatch.setattr(ceiling, "step_against_ceiling", step_against_ceiling)
    monkeypatch.setattr(ceiling, "census", lambda model, batch: {"entry_kernels": 418, "lowered_converts": 61})
    monkeypatch.setattr(ceiling, "profiled_runs", lambda model, batch: {"ceiling": None, "single step": None})
    monkeypatch.setattr(ceiling, "kernel_profile", lambda run, steps, log_dir: {"kernels_per_step": 342.0})


class ChildInProcess:
    """subprocess.Popen for the CPU half's child, which runs its readings in this process."""

    def __init__(self, cmd, *, stdout, stderr, **kwargs) -> None:
        from bench import accel, gpu

        lines = ["W0000 some JAX start-up chatter\n"]

        def report(what: str, detail: str) -> None:
            lines.append(f"{gpu.CHILD_TAG}{what}\t{detail}\n")

        cpu = gpu.s3_readings(None, None, Device("cpu"), int(cmd[cmd.index("--repeats") + 1]), gpu.SWEEP, report)
        cpu["fit_peer"] = [accel.fit_peer(None, gpu.S3_BATCH)]
        report(f"model.fit batch {gpu.S3_BATCH}", "1234567 samples/s")
        stdout.write(json.dumps(cpu) + "\n")
        self.stderr = iter(lines)

    def wait(self) -> int:
        return 0


def test_a_piped_bench_gpu_prints_one_line_per_reading_within_80_columns(fake_accel, monkeypatch, capsys):
    import types

    from bench import gpu
    from diffusion.presets import get_preset

    monkeypatch.setattr(gpu.subprocess, "Popen", ChildInProcess)
    args = types.SimpleNamespace(quick=False, repeats=5, seconds=3.0, json=None, part="all")
    data = types.SimpleNamespace(train=types.SimpleNamespace(x=np.zeros((100_000, 192))))
    record = gpu.measure(args, get_preset("tiny"), data)
    lines = capsys.readouterr().err.splitlines()
    totals = gpu.planned_readings(quick=False, repeats=5, gpus=2)
    readings = [line for line in lines if line.startswith("[")]
    assert [line.split(" ")[:2] for line in readings] == [
        [f"[{n}/{total}]", platform]
        for platform, total in zip(("GPU", "CPU"), totals, strict=True)
        for n in range(1, total + 1)
    ]
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert not [line for line in readings if line.endswith("…")]  # nothing cut at a real H200's largest numbers
    said = "\n".join(readings)
    for what in ("GPU fwd/bwd batch 4096", "GPU fwd/bwd batch 32 #5/5", "GPU warm-up epoch", "GPU epoch 3/3",
                 "GPU bf16 device batch 16384", "GPU model.fit batch 1024", "GPU parallel x2 batch 16384",
                 "GPU fp32 ceiling batch 16384 #3/3", "GPU bf16 profile single step",
                 "CPU fwd/bwd batch 32 #1/5", "CPU fp32 matmul", "CPU model.fit batch 32"):  # fmt: skip
        assert what in said
    assert "first (traced) step" in "\n".join(lines[:3])
    assert record["cpu"]["forward_s"] == [0.012345] * 5 and len(record["train"]) == len(gpu.train_rows(False))


@pytest.mark.parametrize("quick", [False, True])
def test_the_ceiling_part_reports_each_round_census_and_profile_and_no_cpu_half(fake_accel, monkeypatch, capsys, quick):
    import types

    from bench import gpu
    from diffusion.presets import get_preset

    monkeypatch.setattr(gpu.subprocess, "Popen", None)  # a CPU half would fail
    args = types.SimpleNamespace(quick=quick, repeats=5, seconds=3.0, json=None, part="ceiling")
    data = types.SimpleNamespace(train=types.SimpleNamespace(x=np.zeros((100, 192))))
    record = gpu.measure(args, get_preset("tiny"), data)
    readings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    total, cpu_total = gpu.planned_readings(quick=quick, repeats=5, gpus=2, part="ceiling")
    assert cpu_total == 0 and len(readings) == total and readings[-1].startswith(f"[{total}/{total}] GPU")
    assert record["train"] == [] and "--part ceiling" in record["cpu"]["error"]
    assert {r["precision"] for r in record["ceiling"]["rows"]} == {"float32", "mixed_bfloat16"}


def test_a_failed_cpu_half_names_its_last_line(monkeypatch):
    from bench import gpu

    class Failed:
        def __init__(self, cmd, **kwargs) -> None:
            self.stderr = iter([f"{gpu.CHILD_TAG}CPU fwd/bwd batch 32\t1 / 2 ms\n", "RuntimeError: out of memory\n"])

        def wait(self) -> int:
            return 1

    monkeypatch.setattr(gpu.subprocess, "Popen", Failed)
    seen: list[str] = []
    result = gpu.cpu_half("tiny", 3, True, lambda what, detail: seen.append(what))
    assert result == {"error": "CPU half exited 1: RuntimeError: out of memory"}
    assert seen == ["CPU fwd/bwd batch 32"]


def test_bench_gpu_help_shows_every_default(capsys):
    from bench import gpu

    with pytest.raises(SystemExit):
        gpu.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "steady-state seconds per throughput row (default 3)" in text
    assert "(default: none, print the tables only)" in text and "(default 5)" in text


# ---- the step against its ceiling: rows, targets, trace summary, rendering (no JAX) ----


def ceiling_record(shares: dict[int, float], *, k: int = 64, rounds: int = 3) -> dict:
    """A record of the ceiling part: ceiling 1e6 samples/s in every round; the path at k the
    given share of it per batch (k = 1 at half); 211 MFLOP per sample; fp32 matmul 350 TFLOP/s."""
    rows = [
        {
            "precision": "float32",
            "batch": batch,
            "ceiling": [1e6] * rounds,
            "step": {"1": [5e5] * rounds, str(k): [share * 1e6] * rounds},
        }
        for batch, share in shares.items()
    ]
    return {
        "gpu": {
            "device_kind": "NVIDIA H200",
            "devices": 1,
            "matmul_flops_per_s": {"float32": 3.5e14, "bfloat16": 7e14},
            "flops_per_sample": {"train_step": 2.11e8, "source": "layer shapes"},
        },
        "train": [],
        "ceiling": {"steps_per_call": k, "rows": rows, "small": [], "census": {}, "profiles": {}},
        "part": "ceiling",
        "preset": "seed",
        "wall_s": 1.0,
    }


def test_the_paths_share_is_the_median_of_each_rounds_share_of_its_ceiling():
    from bench.gpu_analysis import ceiling_rows

    record = ceiling_record({1024: 0.9})
    record["ceiling"]["rows"][0]["ceiling"] = [1e6, 2e6, 1e6]
    record["ceiling"]["rows"][0]["step"]["64"] = [0.9e6, 1.0e6, 0.96e6]
    (row,) = ceiling_rows(record)
    assert row["share"] == pytest.approx(0.9) and row["share_range"] == pytest.approx((0.5, 0.96))
    assert row["shares"]["1"] == pytest.approx(0.5) and row["k"] == 64
    assert row["matmul_share"] == pytest.approx(2.11e8 * 0.96e6 / 3.5e14)


@pytest.mark.parametrize(("share", "met"), [(0.95, True), (0.9499, False)])
def test_the_ceiling_target_is_met_from_95_percent(share, met):
    from bench.gpu_analysis import ceiling_targets

    targets = ceiling_targets(ceiling_record({1024: share, 4096: 0.99, 16384: 0.99}))
    assert [t["met"] for t in targets[:3]] == [met, True, True]


def test_the_matmul_target_reads_the_16384_row_and_is_missed_without_it():
    from bench.gpu_analysis import ceiling_targets

    # 211 MFLOP x 0.83e6 /s = 175 TFLOP/s: just 50% of 350.
    *_, matmul = ceiling_targets(ceiling_record({16384: 0.83}))
    assert matmul["met"] and matmul["value"] == pytest.approx(0.5004, abs=1e-4)
    *_, missing = ceiling_targets(ceiling_record({1024: 0.99}))
    assert not missing["met"] and missing["value"] is None


def test_a_trace_summary_counts_the_gpu_streams_kernels_and_nothing_else():
    from bench.ceiling import summarise_trace

    meta = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7(compute)"}},
        {"ph": "M", "pid": 2, "tid": 8, "name": "thread_name", "args": {"name": "XLA Ops"}},
    ]
    kernel = [
        {"ph": "X", "pid": 2, "tid": 7, "ts": 0, "dur": 30, "name": "sm90_xmma_gemm_f32f32"},
        {"ph": "X", "pid": 2, "tid": 7, "ts": 50, "dur": 10, "name": "loop_add_fusion"},
        {"ph": "X", "pid": 2, "tid": 7, "ts": 100, "dur": 40, "name": "sm90_xmma_gemm_f32f32"},
    ]
    others = [
        {"ph": "X", "pid": 2, "tid": 8, "ts": 0, "dur": 500, "name": "fusion.1"},  # XLA Ops repeats the kernels
        {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 900, "name": "PjitFunction(step)"},
    ]
    got = summarise_trace({"traceEvents": meta + kernel + others}, steps=2)
    assert got["kernels_per_step"] == 1.5 and got["busy_us_per_step"] == 40 and got["span_us_per_step"] == 70
    assert got["matmul_share_of_busy"] == pytest.approx(70 / 80)
    assert got["top"][0] == {"name": "sm90_xmma_gemm_f32f32", "calls": 2, "us_per_step": 35.0}


def test_a_ceiling_record_renders_its_targets_and_table_without_a_cpu_half(tmp_path):
    from bench.gpu_report import markdown, plot

    record = ceiling_record({1024: 0.9, 4096: 0.97, 16384: 0.98})
    record.update(claims=[], environment={})
    text = markdown(record, plot_name="x.png")
    assert "CPU half not run: --part ceiling" in text
    assert "- MISSED: step >= 95% of its ceiling, float32 batch 1024: 90.0%" in text
    assert "- met: step >= 95% of its ceiling, float32 batch 16384: 98.0%" in text
    assert "| float32 | 16384 | 1,000,000 | 500,000 (50%)  980,000 (98%) | 98.0% [98.0%, 98.0%] | 207 |" in text
    plot(record, tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 0


def test_the_committed_ceiling_record_has_its_shape_names_the_device_and_states_each_target():
    from bench.gpu_report import markdown
    from bench.shapes import GPU
    from diffusion.shapes import check

    data = json.loads(CEILING_RECORD.read_text())
    check(data, GPU, str(CEILING_RECORD))
    text = markdown(data)
    assert "NVIDIA H200" in text and "--part ceiling" in text
    for batch in (1024, 4096, 16384):
        assert f"of its ceiling, float32 batch {batch}: " in text
    assert ">= 50% of the same-run matmul rate, float32 batch 16384" in text
    assert {(r["precision"], r["batch"]) for r in data["ceiling"]["rows"]} >= {
        ("float32", b) for b in (1024, 4096, 16384)
    }
