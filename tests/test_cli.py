"""The training CLI, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env


def train(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "diffusion.train", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(**env),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--path", "fast"], "unknown path 'fast'"),
        (["--path", "neu:warp=9"], "unknown knob 'warp'"),
        (["--path", "neu:loader=async"], "sync, prefetch"),
        (["--preset", "huge"], "valid presets: tiny, small, seed"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--epochs", "two"], "--epochs must be an integer"),
    ],
)
def test_bad_arguments_answer_in_one_line_before_tensorflow_loads(blocked_tf, tmp_path, args, message):
    result = train("--out", str(tmp_path / "run"), *args, **blocked_tf)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_output_is_refused(tmp_path, blocked_tf):
    (tmp_path / "file").write_text("x")
    result = train("--out", str(tmp_path / "file"), "--preset", "tiny", **blocked_tf)
    assert result.returncode == 2 and "is a file" in result.stderr


# XLA's step is checked against eager in test_steps.py; here the CLI trains each report path.
@pytest.mark.slow
@pytest.mark.parametrize("spec", ["alt", "neu"])
def test_training_one_epoch_writes_a_summary(tmp_path, spec):
    summary_path = tmp_path / "summary.json"
    result = train(
        "--path", spec, "--preset", "tiny", "--epochs", "1", "--out", str(tmp_path / "run"), "--json", str(summary_path)
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path.read_text())
    for key in (
        "path",
        "preset",
        "epochs",
        "train_samples_per_s",
        "val_loss",
        "val_loss_stderr",
        "checkpoint",
        "environment",
    ):
        assert key in summary, key
    assert summary["path_spec"] == spec and summary["preset"] == "tiny" and summary["epochs"] == 1
    assert summary["train_samples_per_s"] > 0 and summary["val_loss"] > 0
    assert Path(summary["checkpoint"]).is_file()
    env = summary["environment"]
    assert env["backend"] == "tensorflow" and env["usable_cpus"] >= 1 and "cpu_model" in env


@pytest.mark.slow
def test_jax_backend_trains_neu_without_tensorflow(blocked_tf, tmp_path):
    summary_path = tmp_path / "summary.json"
    result = train(
        "--path",
        "neu",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--json",
        str(summary_path),
        KERAS_BACKEND="jax",
        **blocked_tf,
    )
    assert result.returncode == 0, result.stderr
    env = json.loads(summary_path.read_text())["environment"]
    assert env["backend"] == "jax"
    assert env["loader_impl"] == "thread"
    assert env["compile_semantics"]["graph"] == env["compile_semantics"]["xla"].split(" ")[0]


def test_existing_checkpoint_is_never_overwritten_without_resume(tmp_path, blocked_tf):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(b"a run's checkpoint")  # refused on sight, before TensorFlow loads
    before = (run / "checkpoint.npz").read_bytes()
    result = train("--path", "alt", "--preset", "tiny", "--epochs", "1", "--out", str(run), **blocked_tf)
    assert result.returncode == 2 and "--resume" in result.stderr
    assert (run / "checkpoint.npz").read_bytes() == before


@pytest.mark.slow
def test_corrupt_checkpoint_on_resume_is_an_error_and_is_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(b"not a checkpoint")
    result = train("--path", "alt", "--preset", "tiny", "--epochs", "2", "--out", str(run), "--resume")
    assert result.returncode == 2
    assert "corrupt" in result.stderr and "Traceback" not in result.stderr
    assert (run / "checkpoint.npz").read_bytes() == b"not a checkpoint"


@pytest.mark.slow
def test_target_loss_stops_after_the_first_epoch_that_reaches_it(tmp_path):
    summary = tmp_path / "summary.json"
    args = ["--path", "neu", "--preset", "tiny", "--epochs", "5", "--target-loss", "100", "--json", str(summary)]
    result = train(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    record = json.loads(summary.read_text())
    assert record["epochs"] == 5 and record["epochs_run"] == 1


@pytest.mark.slow
def test_run_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "diffusion.train",
            "--no-progress",
            "--path",
            "alt",
            "--preset",
            "tiny",
            "--epochs",
            "500",
            "--out",
            str(run),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=python_env(),
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoint.npz").exists(), "no checkpoint was written before the kill"
    from diffusion.checkpoint import load_checkpoint

    done = load_checkpoint(run / "checkpoint.npz").meta["epoch"]
    assert done < 500
    summary_path = tmp_path / "summary.json"
    result = train(
        "--path",
        "alt",
        "--preset",
        "tiny",
        "--epochs",
        str(done + 1),
        "--out",
        str(run),
        "--resume",
        "--json",
        str(summary_path),
    )
    assert result.returncode == 0, result.stderr
    history = json.loads(summary_path.read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, done + 2))


@pytest.mark.parametrize(("set_by_user", "level"), [(None, "2"), ("", "2"), ("0", "0"), ("3", "3")])
def test_tensorflow_start_up_logging_is_quiet_unless_the_user_set_a_level(monkeypatch, set_by_user, level):
    from diffusion.cli import quiet_frameworks

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", set_by_user or "")  # recorded, so the test leaves it as it was
    if set_by_user is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet_frameworks()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level


@pytest.mark.parametrize("command", [["diffusion.train"], ["diffusion.hpo", "run"], ["diffusion.hpo", "worker"]])
def test_help_says_how_to_see_tensorflow_logging_again(blocked_tf, command):
    result = subprocess.run(
        [PYTHON, "-m", *command, "--help"], capture_output=True, text=True, timeout=60, env=python_env(**blocked_tf)
    )
    assert result.returncode == 0, result.stderr
    assert "TF_CPP_MIN_LOG_LEVEL=0 shows them" in " ".join(result.stdout.split())


def test_below_the_clis_no_module_of_diffusion_imports_the_cli_plumbing():
    """The system under test (trainer, data, tracking, search) writes files through
    diffusion.files; argparse and exit codes stay with the command-line modules."""
    from tests.conftest import ROOT

    clis = [p for p in (ROOT / "diffusion").rglob("*.py") if "def main(" in p.read_text() or p.name == "__main__.py"]
    below = [p for p in (ROOT / "diffusion").rglob("*.py") if p not in clis and p.name != "cli.py"]
    assert len(clis) >= 4 and len(below) >= 10
    offenders = [str(p.relative_to(ROOT)) for p in below if "diffusion.cli" in p.read_text()]
    assert offenders == []


ONEDNN = "I0000 00:00:1796231378.140977    1295 port.cc:153] oneDNN custom operations are on. You may see ..."
NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


@pytest.mark.parametrize(
    ("line", "level", "hidden"),
    [
        (ONEDNN, 2, True),  # the backend's start-up INFO line, logged before its logger starts
        (ONEDNN, 0, False),  # TF_CPP_MIN_LOG_LEVEL=0: the user asked for everything
        (NOTICE, 1, True),
        (NOTICE, 0, False),
        ("W0000 00:00:17.5  12 cpu_feature_guard.cc:1] AVX", 2, True),
        ("W0000 00:00:17.5  12 cpu_feature_guard.cc:1] AVX", 1, False),
        ("E0000 00:00:17.5  12 cuda_dnn.cc:8] Unable to register", 2, False),  # errors always show
        ("epoch 1/3  loss 1.2", 3, False),  # our own lines are never the backend's
        ("Traceback (most recent call last):", 3, False),
    ],
)
def test_a_backend_start_up_line_is_hidden_only_below_the_log_level(line, level, hidden):
    from diffusion.cli import hidden as is_hidden

    assert is_hidden(line + "\n", level) is hidden


def test_the_backend_log_filter_drops_start_up_lines_and_passes_everything_else(capfd):
    import os

    from diffusion.cli import backend_log_filter

    with backend_log_filter(2):
        os.write(2, f"{NOTICE}\n{ONEDNN}\nkept: a line of ours\n".encode())
        os.write(2, b"E0000 00:00:17.5  12 x.cc:1] an error of the backend\n")
    os.write(2, b"after the block\n")
    assert (
        capfd.readouterr().err
        == "kept: a line of ours\nE0000 00:00:17.5  12 x.cc:1] an error of the backend\nafter the block\n"
    )
