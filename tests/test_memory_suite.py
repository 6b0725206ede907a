"""The memory suite: its plan, its rows beside the analytic footprint, its rendering, its CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.footprint import MIB, Footprint
from bench.measure import Job
from bench.memory import VAL_BATCHES, MemoryPlan, disk_rows, measure, rows
from bench.memory_report import markdown, plot_png
from bench.probes import DeviceMemory
from diffusion.errors import ConfigError
from diffusion.paths import parse_path
from tests.conftest import PYTHON, python_env

FP = Footprint(params=1000, activations_per_sample=2000)


def fake_runner(job: Job) -> dict:
    """A worker record whose growth is the analytic growth plus 10 MiB of framework."""
    path = parse_path(job.spec)
    if job.fit_disk:
        return {"disk": {"tracking": path.tracking, "log_bytes": 100, "checkpoint_bytes": 12_100}}
    phases = {
        phase: {"rss_growth_mib": FP.growth_bytes(phase, path.batch_size) / MIB + 10, "peak_rss_mib": 800.0}
        for phase in job.phases
    }
    return {"phases": phases}


def result(plan: MemoryPlan) -> dict:
    out = measure(plan, fake_runner)
    out["footprint"] = FP.record()
    return out


def test_each_path_is_measured_at_each_batch_for_training_and_validation():
    plan = MemoryPlan.from_specs(preset="tiny", paths=("alt", "neu"), batches=(32, 64), disk_paths=())
    specs = [job.spec for _, _, job in plan.jobs()]
    assert len(specs) == 4
    for spec in specs:
        path = parse_path(spec)
        assert path.batch_size == path.val_batch_size and path.val_batches == VAL_BATCHES
    assert all(job.phases == ("validate", "train") for _, _, job in plan.jobs())


def test_disk_jobs_keep_the_paths_own_tracking():
    plan = MemoryPlan.from_specs(preset="tiny", paths=(), batches=(32,), disk_paths=("alt", "neu"))
    jobs = [job for _, batch, job in plan.jobs() if batch is None]
    assert [(parse_path(j.spec).tracking, j.fit_disk, j.phases) for j in jobs] == [
        ("jsonl", True, ()),
        ("tensorboard", True, ()),
    ]


def test_rows_set_measured_growth_beside_the_analytic_parts():
    table = rows(result(MemoryPlan.from_specs(preset="tiny", paths=("alt",), batches=(32, 1024), disk_paths=())))
    train = next(r for r in table if r["phase"] == "train" and r["batch"] == 1024)
    assert train["analytic_growth_mib"] == pytest.approx((1000 * 4 + 1024 * 2000 * 4) / MIB)
    assert train["rss_growth_mib"] - train["analytic_growth_mib"] == pytest.approx(10)
    val = next(r for r in table if r["phase"] == "validate" and r["batch"] == 32)
    assert val["analytic_growth_mib"] == pytest.approx(val["analytic_activations_mib"])
    assert val["measured_over_analytic"] == pytest.approx(val["rss_growth_mib"] / val["analytic_growth_mib"])


def test_a_failed_worker_is_a_row_that_says_so():
    out = measure(
        MemoryPlan.from_specs(preset="tiny", paths=("alt",), batches=(32,), disk_paths=()),
        lambda job: {"error": "boom"},
    )
    out["footprint"] = FP.record()
    assert all(r["error"] == "boom" for r in rows(out))
    assert "failed: boom" in markdown(out | {"seconds": 1.0}, rows(out), disk_rows(out))


def test_markdown_and_plot_render_a_record(tmp_path):
    out = result(MemoryPlan.from_specs(preset="tiny", paths=("alt", "neu"), batches=(32, 64), disk_paths=("alt",)))
    out["disk"] = None
    out["records"][-1]["disk"] |= {"checkpoint_bytes_analytic": FP.checkpoint_bytes, "log_files": ["metrics.jsonl"]}
    text = markdown(out, rows(out), disk_rows(out), plot_name="m.png")
    assert "| alt | train | 64 |" in text and "analytic" in text and "metrics.jsonl" in text
    assert disk_rows(out)[0]["checkpoint_bytes"] == 12_100
    (tmp_path / "m.png").write_bytes(plot_png(out, rows(out)))
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_device_memory_reads_nothing_on_a_cpu():
    with DeviceMemory() as device:
        pass
    assert device.summary() == {}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"batches": (0,)}, "`batches` must be positive"),
        ({"paths": ("fast",)}, "unknown path"),
        ({"train_seconds": 0}, "`train_seconds` must be positive"),
    ],
)
def test_bad_plans_are_refused(plan, message):
    with pytest.raises(ConfigError, match=message):
        MemoryPlan.from_specs(preset="small", **plan)


def test_cli_renders_a_saved_record(tmp_path, blocked_tf):
    saved = tmp_path / "memory.json"
    record = result(MemoryPlan.from_specs(preset="tiny", paths=("alt",), batches=(32,), disk_paths=()))
    saved.write_text(json.dumps(record))
    done = subprocess.run(
        [PYTHON, "-m", "bench.memory", "--from", str(saved), "--markdown", str(tmp_path / "m.md")],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(**blocked_tf),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.png").exists() and "| alt | validate | 32 |" in (tmp_path / "m.md").read_text()
