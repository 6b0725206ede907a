"""What the network predicts (``DiffusionConfig.prediction``): the step's target, the checkpoint
that records it, and the validation loss that scores it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from diffusion.checkpoint import Checkpoint, check_identity, save_checkpoint
from diffusion.errors import CheckpointError, ConfigError
from diffusion.presets import DIFFUSION_BEFORE, DiffusionConfig, get_preset
from diffusion.schedule import NoiseSchedule

# A checkpoint's metadata as written before the diffusion settings were recorded in it.
OLD_META = {"global_step": 4, "epoch": 1, "path": {}, "preset": "tiny", "model": {}, "seed": 0}


def test_presets_predict_v():
    assert all(get_preset(name).diffusion.prediction == "v" for name in ("tiny", "small", "seed"))


def test_an_unknown_prediction_names_the_choices():
    with pytest.raises(ConfigError, match="`prediction` must be one of eps, v, but got 'x0'"):
        DiffusionConfig(prediction="x0")


def test_a_checkpoint_without_diffusion_settings_is_read_as_an_eps_model(tmp_path):
    from diffusion.generate import read_checkpoint

    save_checkpoint(tmp_path / "checkpoint.npz", Checkpoint([np.zeros(3)], [], OLD_META))
    _, preset = read_checkpoint(tmp_path)
    assert preset.diffusion == DiffusionConfig(**DIFFUSION_BEFORE)
    assert preset.diffusion.prediction == "eps"


def test_resuming_an_eps_checkpoint_as_a_v_run_is_refused():
    mine = {"diffusion": dataclasses.asdict(DiffusionConfig())}
    with pytest.raises(CheckpointError, match="has diffusion .*'eps'.*but this run asks for .*'v'"):
        check_identity(OLD_META, mine)
    check_identity(OLD_META, {"diffusion": DIFFUSION_BEFORE})  # as an eps run it resumes


def test_the_step_target_equals_the_schedule_target(tiny_data):
    from keras import ops

    from diffusion.steps import regression_target

    schedule = tiny_data.schedule
    v = tiny_data.validation
    x_t, t, noise = v.x_t[:64], v.t[:64], v.noise[:64]
    target = regression_target(schedule, "v")
    got = ops.convert_to_numpy(
        target(ops.convert_to_tensor(x_t), ops.convert_to_tensor(t), ops.convert_to_tensor(noise))
    )
    np.testing.assert_allclose(got, schedule.target("v", x_t, t, noise), rtol=1e-4, atol=1e-4)
    assert regression_target(schedule, "eps") is None  # the step regresses on the noise itself


def fake_generator(prediction: str, schedule: NoiseSchedule, answer):
    return SimpleNamespace(
        preset=SimpleNamespace(diffusion=DiffusionConfig(prediction=prediction)), schedule=schedule, predict=answer
    )


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_validation_loss_scores_the_models_own_target(tiny_data, prediction):
    from diffusion.verify import validation_loss

    schedule, v = tiny_data.schedule, tiny_data.validation
    row = {x.tobytes(): i for i, x in enumerate(v.x_t)}

    def answer(kind: str):  # the given target of each validation sample, found by its x_t
        def predict(x_t, t, cond):
            return schedule.target(kind, x_t, t, v.noise[[row[x.tobytes()] for x in x_t]])

        return predict

    assert validation_loss(fake_generator(prediction, schedule, answer(prediction)), v) == pytest.approx(0, abs=1e-8)
    other = "eps" if prediction == "v" else "v"
    assert validation_loss(fake_generator(prediction, schedule, answer(other)), v) > 0.1
