from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffusion.checkpoint import load_checkpoint
from diffusion.data import PreparedData, TrainingData, epoch_permutation
from diffusion.errors import CheckpointError, TrainingDiverged
from diffusion.paths import ALT, NEU
from diffusion.trainer import Trainer, fit


def weights_of(trainer: Trainer) -> list[np.ndarray]:
    trainer.stepper.sync_to_model()
    return trainer.model.get_weights()


# ALT trains eagerly (about 40 s here): the fast tier resumes NEU, the full suite both.
@pytest.mark.parametrize("path", [pytest.param(ALT, marks=pytest.mark.slow), NEU], ids=["alt", "neu"])
def test_resumed_run_matches_an_uninterrupted_one(tiny, tiny_data, tmp_path, path):
    straight = Trainer(tiny, path, data=tiny_data)
    fit(straight, 2, tmp_path / "straight")
    fit(Trainer(tiny, path, data=tiny_data), 1, tmp_path / "split")
    resumed = Trainer(tiny, path, data=tiny_data)
    result = fit(resumed, 2, tmp_path / "split", resume=True)
    assert resumed.global_step == straight.global_step == 2 * straight.steps_per_epoch
    for a, b in zip(weights_of(resumed), weights_of(straight), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_fit_writes_metrics_lines_and_a_verified_checkpoint(tiny, tiny_data, tmp_path):
    fit(Trainer(tiny, NEU, data=tiny_data), 2, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert {"train_loss", "val_loss", "val_loss_stderr", "train_samples_per_s", "val_pass_s"} <= lines[0].keys()
    meta = load_checkpoint(tmp_path / "checkpoint.npz").meta
    assert meta["epoch"] == 2 and meta["path"] == NEU.knobs() and meta["rng"] == {"seed": 0, "next_epoch": 2}


def test_resume_drops_metrics_logged_after_the_checkpoint(tiny, tiny_data, tmp_path):
    fit(Trainer(tiny, ALT, data=tiny_data), 1, tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as f:  # as if killed between log and checkpoint
        f.write(json.dumps({"epoch": 2, "val_loss": 9.9}) + "\n")
    result = fit(Trainer(tiny, ALT, data=tiny_data), 2, tmp_path, resume=True)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[1]["val_loss"] != 9.9 and len(result.history) == 2


def test_checkpoint_of_another_path_is_refused(tiny, tiny_data, tmp_path):
    fit(Trainer(tiny, ALT, data=tiny_data), 1, tmp_path)
    with pytest.raises(CheckpointError, match="path"):
        Trainer(tiny, NEU, data=tiny_data).restore(load_checkpoint(tmp_path / "checkpoint.npz"))


def test_nan_loss_stops_training_and_names_the_step(tiny, tiny_data):
    x = tiny_data.train.x.copy()
    order = epoch_permutation(0, 0, len(x))
    poisoned_row = order[5 * 32 + 3]  # lands in the 6th batch of epoch 1
    x[poisoned_row, 0] = np.nan
    data = dataclasses.replace(tiny_data, train=TrainingData(x, tiny_data.train.cond))
    assert isinstance(data, PreparedData)
    trainer = Trainer(tiny, ALT, data=data)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 6 \(epoch 1"):
        trainer.train_epoch()


def test_a_checkpoint_from_before_the_tracking_knob_resumes_as_jsonl(tiny, tiny_data, tmp_path):
    old_alt = ALT  # ALT tracks with jsonl: what every path wrote before the knob existed
    trainer = Trainer(tiny, old_alt, data=tiny_data)
    fit(trainer, 1, tmp_path)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    meta = {**checkpoint.meta, "path": {k: v for k, v in checkpoint.meta["path"].items() if k != "tracking"}}
    Trainer(tiny, old_alt, data=tiny_data).restore(dataclasses.replace(checkpoint, meta=meta))
    with pytest.raises(CheckpointError, match="tracking"):
        Trainer(tiny, dataclasses.replace(old_alt, tracking="tensorboard"), data=tiny_data).restore(
            dataclasses.replace(checkpoint, meta=meta)
        )
