"""Fairness: every compile mode computes the same function. Runs on the active Keras backend;
test_backends.py runs this file again under JAX."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffusion.paths import ALT, NEU
from diffusion.steps import clip_by_global_norm, global_norm
from diffusion.trainer import Trainer

MODES = ["eager", "graph", "xla"]
# XLA compiles for seconds per test: the full suite checks it, the fast tier checks the graph.
COMPILED = ["graph", pytest.param("xla", marks=pytest.mark.slow)]


def batch_of(data, size=32):
    from diffusion.data import sync_batches

    return next(iter(sync_batches(data.train, data.schedule, size, seed=0, epoch=0)))


def trainer_for(tiny, tiny_data, **knobs) -> Trainer:
    return Trainer(tiny, dataclasses.replace(ALT, **knobs), seed=0, data=tiny_data)


@pytest.mark.parametrize("mode", COMPILED)
def test_compiled_loss_and_gradients_equal_eager(tiny, tiny_data, mode):
    batch = batch_of(tiny_data)
    eager_loss, eager_grads = trainer_for(tiny, tiny_data).stepper.loss_and_grads(batch)
    loss, grads = trainer_for(tiny, tiny_data, train_compile=mode).stepper.loss_and_grads(batch)
    np.testing.assert_allclose(loss, eager_loss, rtol=1e-5)
    assert len(grads) == len(eager_grads)
    for g, e in zip(grads, eager_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("mode", COMPILED)
def test_compiled_train_steps_reach_the_same_weights(tiny, tiny_data, mode):
    batches = [batch_of(tiny_data)] * 3
    eager, compiled = (
        trainer_for(tiny, tiny_data, clip_norm=1.0),
        trainer_for(tiny, tiny_data, train_compile=mode, clip_norm=1.0),
    )
    for batch in batches:
        np.testing.assert_allclose(compiled.stepper.train(batch), eager.stepper.train(batch), rtol=1e-4)
    for t in (eager, compiled):
        t.stepper.sync_to_model()
    for w, e in zip(compiled.model.get_weights(), eager.model.get_weights(), strict=True):
        np.testing.assert_allclose(w, e, rtol=1e-3, atol=1e-5)


def test_clipping_bounds_the_global_norm(tiny, tiny_data):
    _, grads = trainer_for(tiny, tiny_data).stepper.loss_and_grads(batch_of(tiny_data))
    norm = float(global_norm(grads))
    limit = norm / 10
    clipped, before = clip_by_global_norm(grads, limit)
    assert float(before) == pytest.approx(norm, rel=1e-5)
    assert float(global_norm(clipped)) <= limit * (1 + 1e-5)
    unchanged, _ = clip_by_global_norm(grads, norm * 2)
    for u, g in zip(unchanged, grads, strict=True):
        np.testing.assert_allclose(np.asarray(u), g, rtol=1e-6)


def test_clip_norm_knob_changes_the_update(tiny, tiny_data):
    batch = batch_of(tiny_data)
    _, grads = trainer_for(tiny, tiny_data).stepper.loss_and_grads(batch)
    tight = float(global_norm(grads)) / 100
    free, clipped = trainer_for(tiny, tiny_data), trainer_for(tiny, tiny_data, clip_norm=tight)
    free.stepper.train(batch)
    clipped.stepper.train(batch)
    free.stepper.sync_to_model()
    clipped.stepper.sync_to_model()
    # Adam normalises the step size, so compare the second moments, which see the raw gradient scale.
    v_free = max(float(np.abs(np.asarray(v)).max()) for v in free.optimizer.variables if "velocity" in v.path)
    v_clip = max(float(np.abs(np.asarray(v)).max()) for v in clipped.optimizer.variables if "velocity" in v.path)
    assert v_clip < v_free / 100


@pytest.mark.parametrize("mode", COMPILED)
def test_compiled_steps_trace_once_per_shape(tiny, tiny_data, mode):
    trainer = trainer_for(tiny, tiny_data, train_compile=mode, val_compile=mode)
    for _ in range(3):
        trainer.stepper.train(batch_of(tiny_data))
    assert trainer.stepper.traces["train"] == 1
    trainer.validate(3, 32)
    trainer.validate(3, 32)
    assert trainer.stepper.traces["validate"] == 1
    trainer.validate(2, 64)  # a new batch shape: one more trace, then none
    trainer.validate(2, 64)
    assert trainer.stepper.traces["validate"] <= 2


def test_alt_and_neu_validate_the_same_samples_to_the_same_loss(tiny, tiny_data):
    alt = Trainer(tiny, dataclasses.replace(ALT, val_batches=40, val_batch_size=32), seed=0, data=tiny_data)
    neu = Trainer(tiny, NEU, seed=0, data=tiny_data)  # 20 x 64: the same 1280 samples
    a, n = alt.validate(), neu.validate()
    assert a.samples == n.samples == 1280
    assert n.loss == pytest.approx(a.loss, rel=1e-5)
    assert a.batches == 40 and n.batches == 20


def test_validation_reports_samples_and_standard_error(tiny, tiny_data):
    result = trainer_for(tiny, tiny_data).validate(10, 16)
    assert result.samples == 160 and result.batches == 10
    expected = np.std(result.batch_losses, ddof=1) / np.sqrt(10)
    assert result.stderr == pytest.approx(expected)
