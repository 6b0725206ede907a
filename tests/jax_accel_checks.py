"""Checks of bench.accel that need the JAX backend; tests/test_gpu.py runs this file under
KERAS_BACKEND=jax in a fresh process (the test process has TensorFlow's Keras loaded)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bench import accel
from diffusion.data import prepare
from diffusion.presets import get_preset

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="run by tests/test_gpu.py under JAX")


@pytest.fixture(scope="module")
def tiny():
    preset = get_preset("tiny")
    data = prepare(preset)
    return preset, data, accel.build(preset, data)


def test_device_loader_noises_with_the_same_forward_process_as_the_host(tiny):
    import jax

    _, data, model = tiny
    x_t, t, cond, noise = (np.asarray(a) for a in accel.draw_batch(7, model.x0, model.cond, model.alpha_bar, 64))
    steps = t[:, 0].astype(int)
    # Recover each row's event from its conditioning vector, then recompute x_t with NumPy.
    rows = [int(np.argmin(np.abs(model.cond - c).sum(axis=1))) for c in cond]
    expected = data.schedule.q_sample(model.x0[rows], steps, noise)
    np.testing.assert_allclose(x_t, expected, rtol=1e-5, atol=1e-5)
    again = accel.draw_batch(7, model.x0, model.cond, model.alpha_bar, 64)[0]
    np.testing.assert_array_equal(np.asarray(again), x_t)  # the step number fixes the batch
    other = accel.draw_batch(8, model.x0, model.cond, model.alpha_bar, 64)[0]
    assert not np.allclose(np.asarray(other), x_t)
    assert jax.numpy.asarray(x_t).dtype == np.float32


def test_host_and_device_steps_give_the_same_loss_on_the_same_batch(tiny):
    import jax

    _, _, model = tiny
    batch = accel.draw_batch(3, model.x0, model.cond, model.alpha_bar, 32)
    host = accel.train_step_fn(model, loader="host", batch=32)
    state = jax.tree.map(lambda a: a.copy(), model.state)
    loss_host, _ = host(state, *batch)
    loss_fn = accel._loss_fn(model)
    trainable, non_trainable, _ = model.state
    direct, _ = loss_fn(trainable, non_trainable, *batch)
    assert float(loss_host) == pytest.approx(float(direct), rel=1e-6)


def test_the_loss_regresses_on_the_presets_target_as_the_trainer_does(tiny):
    preset, data, model = tiny
    assert preset.diffusion.prediction == "v"
    x_t, t, cond, noise = (np.asarray(a) for a in accel.draw_batch(5, model.x0, model.cond, model.alpha_bar, 32))
    trainable, non_trainable, _ = model.state
    loss, _ = accel._loss_fn(model)(trainable, non_trainable, x_t, t, cond, noise)
    predicted = np.asarray(model.keras_model([x_t, t, cond], training=True))
    wanted = data.schedule.target("v", x_t, t[:, 0].astype(int), noise)  # NumPy's v, from the batch
    assert float(loss) == pytest.approx(float(np.mean((predicted - wanted) ** 2)), rel=1e-4)
    assert float(loss) != pytest.approx(float(np.mean((predicted - noise) ** 2)), rel=1e-3)


def test_analytic_flops_count_every_dense_kernel(tiny):
    _, _, model = tiny
    flops = accel.analytic_flops_per_sample(model.keras_model)
    kernels = [w for w in model.keras_model.weights if w.path.endswith("kernel") and len(w.shape) == 2]
    assert flops["forward"] == sum(2 * k.shape[0] * k.shape[1] for k in kernels)
    assert flops["train_step"] == 3 * flops["forward"]


def test_throughput_rows_report_samples_and_input_wait(tiny):
    _, _, model = tiny
    for loader in ("host", "device"):
        row = accel.train_throughput(model, 32, loader, seconds=0.2, min_steps=5)
        assert row["samples_per_s"] > 0 and 0 <= row["input_wait_share"] < 1
        assert np.isfinite(row["loss_last"])


def test_data_parallel_runs_the_same_code_path_on_one_device(tiny):
    import jax

    preset, data, _ = tiny
    row = accel.data_parallel(preset, data, 64, jax.devices()[:1], seconds=0.2)
    assert row["devices"] == 1 and row["samples_per_s"] > 0


def test_k_scanned_steps_give_the_same_parameters_as_k_single_steps(tiny):
    import jax

    _, _, model = tiny
    k, resident = 3, (model.x0, model.cond, model.alpha_bar)
    single = accel.train_step_fn(model, loader="device", batch=32)
    scanned = accel.train_step_fn(model, loader="device", batch=32, steps_per_call=k)
    state = jax.tree.map(lambda a: a.copy(), model.state)
    losses = []
    for step in range(5, 5 + k):
        loss, state = single(state, np.int32(step), *resident)
        losses.append(float(loss))
    scanned_losses, scanned_state = scanned(jax.tree.map(lambda a: a.copy(), model.state), np.int32(5), *resident)
    np.testing.assert_allclose(np.asarray(scanned_losses), losses, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(scanned_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    start = jax.tree.leaves(model.state[0])
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state[0]), start, strict=True))


def test_the_ceiling_makes_the_projects_update_on_the_batch_its_key_draws(tiny):
    import jax

    from bench import ceiling

    _, _, model = tiny
    key = ceiling.ceiling_key()
    batch = accel.draw_from_key(jax.random.split(key)[1], model.x0, model.cond, model.alpha_bar, 32)
    host = accel.train_step_fn(model, loader="host", batch=32)
    want_loss, want = host(jax.tree.map(lambda a: a.copy(), model.state), *batch)
    step = ceiling.ceiling_step_fn(model, batch=32)
    resident = (model.x0, model.cond, model.alpha_bar)
    loss, got, next_key = step(jax.tree.map(lambda a: a.copy(), model.state), ceiling.ceiling_key(), *resident)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-6)
    # Two programs fuse the v target's division by sqrt(ab) differently: a few weights differ in
    # the 7th digit (seen: 2 of 12288 by 6e-7), where another batch or update moves them by ~lr (1e-3).
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    again, _, _ = step(got, next_key, *resident)
    assert float(again) != float(loss)  # the returned key draws the next batch


def test_several_steps_per_call_are_the_device_loaders_alone(tiny):
    from diffusion.errors import ConfigError

    _, _, model = tiny
    with pytest.raises(ConfigError, match="steps_per_call"):
        accel.train_step_fn(model, loader="host", steps_per_call=4)
    with pytest.raises(ConfigError, match="steps_per_call"):
        accel.train_step_fn(model, loader="device", steps_per_call=0)


def test_a_multi_step_throughput_row_counts_every_step_of_its_calls(tiny):
    _, _, model = tiny
    row = accel.train_throughput(model, 32, "device", seconds=0.2, min_steps=8, steps_per_call=4)
    assert row["steps_per_call"] == 4 and row["steps"] % 4 == 0 and row["steps"] >= 8
    assert row["samples_per_s"] > 0 and np.isfinite(row["loss_last"])


def test_hlo_census_counts_more_converts_under_mixed_bf16(tiny):
    from bench import ceiling

    preset, data, model = tiny
    fp32 = ceiling.census(model, 32)
    bf16 = ceiling.census(accel.build(preset, data, precision="mixed_bfloat16"), 32)
    assert fp32["entry_kernels"] > 0 and sum(fp32["entry_ops"].values()) == fp32["entry_kernels"]
    assert bf16["lowered_converts"] > fp32["lowered_converts"]
