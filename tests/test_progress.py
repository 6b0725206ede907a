"""Progress of training, a search and a verification: a bar on a terminal, one line per epoch,
trial or stage when piped, at most 80 columns; the bar's samples/s leaves out the first (traced) step."""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest

from diffusion import progress as progress_module
from diffusion.progress import (
    WIDTH,
    StageProgress,
    TrainingProgress,
    TrialProgress,
    epoch_line,
    fit_job_detail,
    fit_width,
    stage_line,
    trial_line,
)
from tests.conftest import PYTHON, python_env

# What TensorFlow's C++ start-up logging looks like (absl's prefix, oneDNN's and the CPU guard's lines).
TF_CHATTER = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|^[IWE]\d{4} ", re.MULTILINE)


def epoch_record(epoch: int, **over: float) -> dict:
    record = {"epoch": epoch, "train_loss": 0.7185, "val_loss": 0.7141, "val_loss_stderr": 0.0061}
    return record | {"train_samples_per_s": 9445.2} | over


class Clock:
    """A perf_counter that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_epoch_line_names_epoch_losses_rate_and_time():
    assert epoch_line(epoch_record(2), 3, 1.25) == "epoch 2/3  loss 0.7185  val 0.7141 ± 0.0061  9445 samples/s  1.2 s"


def test_epoch_line_fits_80_columns_at_the_largest_values_the_cli_allows():
    huge = epoch_record(10_000, train_loss=123456.789, val_loss=98765.4321, train_samples_per_s=12_345_678.9)
    line = epoch_line(huge, 10_000, 86_400.0)
    assert len(line) <= WIDTH and line.startswith("epoch 10000/10000")


def test_a_long_line_is_cut_with_a_mark():
    assert fit_width("x" * 100) == "x" * 79 + "…"
    assert fit_width("short") == "short"


def test_bar_rate_leaves_out_the_first_traced_step(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    progress = TrainingProgress(1, 10, 32, disable=True)
    clock.now += 5.0  # the first step traces the graph
    progress.on_step(1, 1.0)
    assert progress.rate is None
    for step in range(2, 6):
        clock.now += 0.002
        progress.on_step(step, 1.0)
    assert progress.rate == pytest.approx(32 / 0.002)


def test_validation_time_is_not_counted_as_a_step(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    progress = TrainingProgress(2, 2, 32, disable=True)
    for step in (1, 2):
        clock.now += 0.01
        progress.on_step(step, 1.0)
    clock.now += 3.0  # validation
    progress.on_epoch(epoch_record(1))
    clock.now += 0.01
    progress.on_step(3, 1.0)
    assert progress.rate == pytest.approx(32 / 0.01)


def test_piped_training_prints_a_header_and_one_line_per_epoch(capsys):
    with TrainingProgress(3, 2, 32, title="neu @ tiny") as progress:
        progress.start_at(0)
        for epoch in (1, 2, 3):
            progress.on_step(2 * epoch - 1, 1.0)
            progress.on_step(2 * epoch, 1.0)
            progress.on_epoch(epoch_record(epoch))
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""  # stdout keeps the summary
    assert lines[0] == "training neu @ tiny: epochs 1-3, 2 steps of 32"
    assert "without its first step" in lines[1]
    assert [line.split("  ")[0] for line in lines[2:]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(len(line) <= WIDTH for line in lines)


def test_no_progress_prints_nothing(capsys):
    with TrainingProgress(1, 1, 32, disable=True) as progress:
        progress.start_at(0)
        progress.on_step(1, 1.0)
        progress.on_epoch(epoch_record(1))
    assert capsys.readouterr().err == ""


def trial(number: int, state: str, *, value: float | None = None, epochs: int = 0, ended_s: float = 0, **attrs):
    import optuna

    frozen = optuna.trial.create_trial(
        state=optuna.trial.TrialState[state],
        value=value,
        intermediate_values={e: 0.5 + e for e in range(1, epochs + 1)},
        user_attrs=attrs,
    )
    frozen.number = number
    frozen.datetime_complete = datetime.datetime(2026, 12, 2) + datetime.timedelta(seconds=ended_s)
    frozen.datetime_start = None  # no duration: the time shown is the trial's own `seconds`
    return frozen


@pytest.mark.parametrize(
    ("made", "line"),
    [
        (
            dict(number=4, state="COMPLETE", value=0.2565, epochs=5, seconds=3.42),
            "[2/8] trial 4 complete: val loss 0.2565 after 5 epochs, 3.4 s; best 0.2500",
        ),
        (
            dict(number=5, state="PRUNED", epochs=3, seconds=2.0),
            "[2/8] trial 5 pruned at epoch 3: val loss 3.5000, 2.0 s; best 0.2500",
        ),
        (
            dict(number=6, state="PRUNED", epochs=1, pruned_reason="loss became nan at step 7"),
            "[2/8] trial 6 pruned: loss not finite; best 0.2500",
        ),
        (
            dict(number=3, state="COMPLETE", value=0.25, epochs=1),
            "[2/8] trial 3 complete: val loss 0.2500 after 1 epoch; best 0.2500",
        ),
        (dict(number=7, state="FAIL"), "[2/8] trial 7 failed; best 0.2500"),
    ],
)
def test_trial_line_says_how_a_trial_ended(made, line):
    assert trial_line(trial(**made), 2, 8, 0.25) == line


def test_piped_search_reports_each_ended_trial_once_in_the_order_they_ended(capsys):
    progress = TrialProgress(3)
    old = trial(0, "COMPLETE", value=0.3, epochs=2)
    progress.update([old], "", quiet=True)  # from before this run: counted, no line
    late, early = trial(2, "COMPLETE", value=0.2, epochs=2, ended_s=9), trial(1, "PRUNED", epochs=1, ended_s=5)
    running = trial(3, "COMPLETE", value=0.1)
    running.state = type(running.state).RUNNING
    progress.update([old, late, early, running], "")
    progress.update([old, late, early], "")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["[2/3] trial 1 pruned at epoch 1", "[3/3] trial 2 complete"]
    assert lines[-1].endswith("best 0.2000")


def test_a_bar_only_when_both_streams_are_a_terminal(monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(progress_module.sys.stdout, "isatty", lambda: True, raising=False)
    assert progress_module.live(Console(force_terminal=True))
    assert not progress_module.live(Console(force_terminal=False))


# ---- stages (verify) and job lines (bench) ------------------------------------------------


def test_piped_stages_print_one_line_each_with_place_name_and_time(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    with StageProgress("verify", 2) as progress:
        clock.now += 1.5
        for done in (10, 20):
            progress.items_done("generating events", done, 20)  # the bar only: no line per batch
        progress.done("generation", "20 x 5 DDIM steps, 13 events/s incl. tracing")
        clock.now += 0.25
        progress.done("classifier", "AUC 0.512 (ceiling 0.498; 0.5: cannot tell)")
    assert capsys.readouterr().err.splitlines() == [
        "[1/2] verify generation in 1.5 s: 20 x 5 DDIM steps, 13 events/s incl. tracing",
        "[2/2] verify classifier in 0.2 s: AUC 0.512 (ceiling 0.498; 0.5: cannot tell)",
    ]


def test_a_stage_line_fits_80_columns_whatever_its_detail():
    line = stage_line(8, 8, "verify", "plots", 86_400.0, "3 PNGs in /" + "d" * 200)
    assert len(line) == WIDTH and line.endswith("…")


def test_no_progress_prints_no_stage_line(capsys):
    with StageProgress("verify", 1, disable=True) as progress:
        progress.done("setup", "tiny model")
    assert capsys.readouterr().err == ""


def test_a_job_detail_is_cut_so_the_whole_job_line_fits_80_columns():
    class Bar:  # what fit_job_detail reads of bench.progress.JobProgress
        name, total = "bench.gpu", 58

    what = "GPU bf16 device batch 16384"
    detail = fit_job_detail(Bar(), what, "9876543 samples/s, wait 0.50" + " and more" * 10)
    assert len(f"[58/58] bench.gpu {what} in 9999.9 s: {detail}") == WIDTH and detail.endswith("…")
    assert fit_job_detail(Bar(), "short", "fits") == "fits"


def piped(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A CLI with both streams piped and TensorFlow's log level left to the CLI."""
    env = python_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    return subprocess.run(
        [PYTHON, "-m", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )


@pytest.mark.slow
def test_piped_training_prints_one_line_per_epoch_and_no_tensorflow_chatter(tmp_path):
    result = piped("diffusion.train", "--preset", "tiny", "--epochs", "3", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split("  ")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    assert all(len(line) <= WIDTH for line in lines), lines
    assert not TF_CHATTER.search(result.stderr), result.stderr


@pytest.mark.slow
def test_piped_search_prints_one_line_per_finished_trial(tmp_path):
    store = str(tmp_path / "s.log")
    result = piped(
        "diffusion.hpo", "run", "--study", "s", "--storage", store, "--n-trials", "2", "--epochs", "1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split(" complete")[0] for line in lines] == ["[1/2] trial 0", "[2/2] trial 1"]
    assert all(len(line) <= WIDTH for line in result.stderr.splitlines())
    assert not TF_CHATTER.search(result.stderr), result.stderr


def test_a_job_line_names_rate_pass_and_the_bytes_of_a_disk_fit():
    from bench.progress import headline

    job = {"phases": {"train": {"train_samples_per_s": 39.54}, "validate": {"val_pass_s": 5.84}}}
    assert headline(job) == "39.54 samples/s, val pass 5.84 s"
    fitted = {**job, "disk": {"log_bytes": 380, "checkpoint_bytes": 402 * 2**20}}
    assert headline(fitted) == "39.54 samples/s, val pass 5.84 s, logs 380 B, checkpoint 402.0 MiB"
    assert headline({"error": "boom", "disk": {"log_bytes": 1}}) == "failed: boom"
