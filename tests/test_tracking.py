"""The `tracking` knob: what fit logs, read back with TensorBoard's own readers, and resume."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from diffusion.errors import ConfigError
from diffusion.paths import ALT, NEU
from diffusion.tracking import (
    EPOCH_SCALARS,
    STEP_EVERY,
    STEP_TAG,
    TRAIN_RUN,
    VALIDATION_RUN,
    TensorBoardLog,
    check_tracking,
)
from diffusion.trainer import Trainer, fit
from tests.conftest import PYTHON, python_env

pytest.importorskip("tensorboard")


def events(run: Path, which: str = TRAIN_RUN):
    """TensorBoard's reader of one run (``train`` or ``validation``) of the run directory ``run``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard" / which), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def neu_run(tiny, tiny_data, tmp_path_factory) -> tuple[Path, int]:
    """Two epochs of NEU (TensorBoard tracking), fitted once for the tests that read its logs."""
    out = tmp_path_factory.mktemp("neu-run")
    trainer = Trainer(tiny, NEU, data=tiny_data)
    fit(trainer, 2, out)
    return out, trainer.global_step


def test_tensorboard_scalars_per_epoch_match_the_metrics_lines(neu_run):
    run, _ = neu_run
    lines = metrics(run)
    for (which, tag), key in EPOCH_SCALARS.items():
        got = events(run, which).Scalars(tag)
        assert [e.step for e in got] == [line["global_step"] for line in lines]
        assert [e.value for e in got] == pytest.approx([line[key] for line in lines], rel=1e-6)


def test_train_and_validation_loss_share_one_tag_in_two_runs_as_keras_writes_them(neu_run):
    """TensorBoard draws a chart per tag with a line per run: Keras's TensorBoard callback's
    `train/` and `validation/` runs, each with `epoch_loss`, put both losses on one chart."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run, _ = neu_run
    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(run / "tensorboard"))
    mux.Reload()
    runs = mux.Runs()
    assert set(runs) == {TRAIN_RUN, VALIDATION_RUN}
    assert "epoch_loss" in runs[TRAIN_RUN]["scalars"] and "epoch_loss" in runs[VALIDATION_RUN]["scalars"]
    assert STEP_TAG in runs[TRAIN_RUN]["scalars"]
    lines = metrics(run)
    assert [e.value for e in mux.Scalars(TRAIN_RUN, "epoch_loss")] == pytest.approx([x["train_loss"] for x in lines])
    assert [e.value for e in mux.Scalars(VALIDATION_RUN, "epoch_loss")] == pytest.approx([x["val_loss"] for x in lines])


def test_training_loss_is_logged_every_few_steps(neu_run):
    run, global_step = neu_run
    steps = [e.step for e in events(run).Scalars(STEP_TAG)]
    assert steps == list(range(STEP_EVERY, global_step + 1, STEP_EVERY))


def test_histograms_level_adds_one_histogram_per_weight(tiny, tiny_data, tmp_path):
    trainer = Trainer(tiny, dataclasses.replace(NEU, tracking="histograms"), data=tiny_data)
    fit(trainer, 1, tmp_path)
    tags = events(tmp_path).Tags()["histograms"]
    assert sorted(tags) == sorted(f"weights/{w.path}" for w in trainer.model.weights)


@pytest.mark.parametrize(("tracking", "files"), [("none", set()), ("jsonl", {"metrics.jsonl"})])
def test_lower_levels_write_no_event_files(tiny, tiny_data, tmp_path, tracking, files):
    fit(Trainer(tiny, dataclasses.replace(ALT, tracking=tracking), data=tiny_data), 1, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == files | {"checkpoint.npz"}


def test_resume_drops_events_logged_after_the_checkpoint(tiny, tiny_data, tmp_path):
    trainer = Trainer(tiny, NEU, data=tiny_data)
    fit(trainer, 1, tmp_path)
    spe = trainer.steps_per_epoch
    orphan = TensorBoardLog(tmp_path / "tensorboard", histograms=False)  # as if killed before checkpoint 2
    orphan.start(resumed_epoch=1, global_step=spe)
    orphan.on_step(spe + STEP_EVERY - spe % STEP_EVERY, 9.9)  # a step the log writes
    orphan.on_epoch({"global_step": 2 * spe, "val_loss": 9.9}, {})
    orphan.close()
    fit(Trainer(tiny, NEU, data=tiny_data), 2, tmp_path, resume=True)
    acc = events(tmp_path)
    val = events(tmp_path, VALIDATION_RUN).Scalars("epoch_loss")
    assert [e.step for e in val] == [spe, 2 * spe]
    assert val[1].value == pytest.approx(metrics(tmp_path)[1]["val_loss"], rel=1e-6)
    steps = [e.step for e in acc.Scalars(STEP_TAG)]
    assert steps == sorted(set(steps)) and 9.9 not in [round(e.value, 3) for e in acc.Scalars(STEP_TAG)]


def test_a_fresh_run_replaces_old_event_files(tiny, tiny_data, tmp_path):
    fit(Trainer(tiny, NEU, data=tiny_data), 1, tmp_path)
    (tmp_path / "checkpoint.npz").unlink()
    fit(Trainer(tiny, NEU, data=tiny_data), 1, tmp_path)
    assert sorted(p.parent.name for p in (tmp_path / "tensorboard").rglob("*tfevents*")) == [TRAIN_RUN, VALIDATION_RUN]


def test_tensorboard_without_its_package_is_a_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name))
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        check_tracking("tensorboard")
    check_tracking("jsonl")


def train_cli(run: Path, *extra: str, **env: str):
    import subprocess

    args = ["--no-progress", "--path", "neu:tracking=tensorboard", "--preset", "tiny", "--epochs", "1"]
    return subprocess.run(
        [PYTHON, "-m", "diffusion.train", *args, "--out", str(run), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=python_env(**env),
    )


@pytest.mark.slow
def test_train_cli_writes_event_files_tensorboard_loads(tmp_path):
    result = train_cli(tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert events(tmp_path / "run", VALIDATION_RUN).Scalars("epoch_loss")[0].value == pytest.approx(
        metrics(tmp_path / "run")[0]["val_loss"], rel=1e-6
    )


@pytest.mark.slow
def test_jax_backend_writes_event_files_without_tensorflow(blocked_tf, tmp_path):
    pytest.importorskip("jax")
    result = train_cli(tmp_path / "run", KERAS_BACKEND="jax", **blocked_tf)
    assert result.returncode == 0, result.stderr
    assert "epoch_loss" in events(tmp_path / "run", VALIDATION_RUN).Tags()["scalars"]


def test_disk_bytes_do_not_depend_on_how_far_the_timed_phases_trained(tiny, tiny_data):
    from bench.measure import measure_disk
    from diffusion.paths import NEU
    from diffusion.trainer import Trainer

    untouched = Trainer(tiny, NEU, data=tiny_data)
    trained = Trainer(tiny, NEU, data=tiny_data)
    trained.train_steps(7)  # mid-epoch, as after a time-bounded training phase
    a, b = measure_disk(untouched), measure_disk(trained)
    assert a["tracking"] == "tensorboard" and a["log_bytes"] > 0
    assert abs(a["log_bytes"] - b["log_bytes"]) <= 16  # JSON floats may differ in digits, not in events
    assert abs(a["checkpoint_bytes"] - b["checkpoint_bytes"]) <= 64  # its metadata holds such floats too
    untouched.close()
    trained.close()
