"""Accelerator measurements on the JAX backend: GPU against the same host's CPUs (S3), a batch
sweep with the share of the device's matmul rate each row uses, a device-resident loader, the
Keras ``model.fit`` peer, and data parallelism over GPUs with ``keras.distribution``.

Pure measurement functions; ``bench/accel_cli.py`` runs them and writes the record. Everything
here runs under ``KERAS_BACKEND=jax`` (the GPU machine has JAX and no TensorFlow).

Readings, each timed synchronised (``block_until_ready``) after warm-up, median of repeats:

- forward: the denoiser's forward pass on a batch (``jax.jit``).
- backward: forward + gradients minus forward (the report's "backward pass").
- epoch: a real epoch of the NEU path with the project's own host loader (``Trainer``).
- training throughput: samples/s of whole optimizer steps (Adam, clip 1.0 as NEU) with the
  ``host`` loader (NumPy noising in a thread, batches copied to the device) or the ``device``
  loader (data set resident on the device, noising inside the compiled step, several
  optimizer steps per call), fp32 or ``mixed_bfloat16``; input-wait share as the Trainer
  defines it.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffusion.presets import Preset

MATMUL_N = 8192  # square matmul for the device's dense rate: large enough to saturate an H100
PRNG_IMPL = "threefry2x32"  # JAX's default; rbg and unsafe_rbg were no faster on an H200 (<1%, results/gpu-*)
# The device loader's optimizer steps per call (one dispatch, one synchronisation). On an H200 at
# batch 1024 one step per call ran at 60% of the stateless ceiling (bench.ceiling), 16 at 91%:
# a synchronised call costs ~2-3 ms beyond its steps' 2.6 ms. bench.gpu's sweep records each k.
DEVICE_STEPS_PER_CALL = 64
SCAN_UNROLL = 1  # the k steps as a device loop; unrolled (True) k = 8 compiled 34 s and ran 24% slower


def _jax() -> Any:
    import jax

    return jax


def timed(fn: Callable[[], Any], *, repeats: int = 10, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` with its result synchronised; ``warmup`` calls first (compile)."""
    jax = _jax()
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(dtype: str = "float32", n: int = MATMUL_N, device: Any = None) -> float:
    """Dense matmul FLOP/s of one device at a precision, measured now (2 n^3 per product), on
    random normal operands (constant ones can run at another rate than real data)."""
    jax = _jax()

    device = device or jax.devices()[0]
    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), dtype), device)
    f = jax.jit(lambda x, y: x @ y)
    seconds = timed(lambda: f(a, b), repeats=10 if device.platform != "cpu" else 2, warmup=2)
    return 2 * n**3 / seconds


def analytic_flops_per_sample(model: Any) -> dict[str, float]:
    """FLOPs per sample from the layer shapes: 2 x in x out per Dense kernel forward; a training
    step is about 3x forward (the backward pass computes gradients for inputs and weights)."""
    forward = 0.0
    for layer in model._flatten_layers(include_self=False):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) == 2:
            forward += 2.0 * kernel.shape[0] * kernel.shape[1]
    return {"forward": forward, "train_step": 3 * forward, "source": "layer shapes (Dense kernels)"}


def compiled_flops(fn: Callable[..., Any], *args: Any) -> float | None:
    """FLOPs of one call as XLA's cost analysis counts them, or None where it reports none."""
    jax = _jax()
    try:
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # cost analysis is best-effort in XLA and differs between platforms
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


@dataclass
class Model:
    """A built denoiser with its state as JAX arrays, and the preset's training data."""

    preset: Preset
    keras_model: Any
    optimizer: Any
    x0: np.ndarray
    cond: np.ndarray
    schedule: Any  # the preset's NoiseSchedule: its alpha_bar and its prediction's target

    @functools.cached_property
    def alpha_bar(self) -> np.ndarray:
        """The schedule's cumulative alphas in float32, as the device keeps them."""
        return self.schedule.alpha_bar.astype(np.float32)

    @property
    def state(self) -> tuple[list, list, list]:
        return (
            [v.value for v in self.keras_model.trainable_variables],
            [v.value for v in self.keras_model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )


def build(preset: Preset, data: Any, *, precision: str = "float32", seed: int = 0) -> Model:
    """The preset's denoiser and Adam, under a dtype policy (``float32`` or ``mixed_bfloat16``)."""
    import keras

    from diffusion.model import build_denoiser

    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        model = build_denoiser(data.train.x.shape[1], data.train.cond.shape[1], preset.model)
        optimizer = keras.optimizers.Adam(learning_rate=preset.model.learning_rate)
        optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy("float32")
    return Model(preset, model, optimizer, data.train.x, data.train.cond, data.schedule)


def _loss_fn(model: Model) -> Callable[..., Any]:
    """The trainer's loss: MSE against the preset's regression target (the noise, or v), the
    same ``diffusion.steps.regression_target`` the project's train step computes in the step."""
    import jax.numpy as jnp

    from diffusion.steps import regression_target

    target = regression_target(model.schedule, model.preset.diffusion.prediction)

    def loss(trainable, non_trainable, x_t, t, cond, noise):
        predicted, non_trainable = model.keras_model.stateless_call(
            trainable, non_trainable, [x_t, t, cond], training=True
        )
        wanted = noise if target is None else target(x_t, t, noise)
        return jnp.mean(jnp.square(predicted.astype(jnp.float32) - wanted)), non_trainable

    return loss


def host_batch(model: Model, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One noised batch made on the host, as the sync loader makes it."""
    idx = rng.integers(0, len(model.x0), batch)
    x0 = model.x0[idx]
    t = rng.integers(0, len(model.alpha_bar), batch)
    noise = rng.standard_normal(x0.shape, dtype=np.float32)
    ab = model.alpha_bar[t][:, None]
    return np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise, t[:, None].astype(np.float32), model.cond[idx], noise


def forward_backward(model: Model, batch: int, device: Any) -> dict[str, Any]:
    """Forward and forward+gradient times at one batch size on one device; backward is the
    difference (the report's "backward pass")."""
    jax = _jax()
    trainable, non_trainable, _ = jax.device_put(model.state, device)
    args = jax.device_put(host_batch(model, batch, np.random.default_rng(0)), device)
    loss = _loss_fn(model)

    def forward(tr, nt, x_t, t, cond, noise):
        return model.keras_model.stateless_call(tr, nt, [x_t, t, cond], training=False)[0]

    fwd = jax.jit(forward)
    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    forward_s = timed(lambda: fwd(trainable, non_trainable, *args))
    both_s = timed(lambda: grad(trainable, non_trainable, *args))
    return {
        "batch": batch,
        "forward_s": forward_s,
        "forward_backward_s": both_s,
        "backward_s": max(both_s - forward_s, 0.0),
        "forward_flops_compiled": compiled_flops(forward, trainable, non_trainable, *args),
        "train_flops_compiled": compiled_flops(lambda *a: loss(*a)[0], trainable, non_trainable, *args),
    }


def update_fn(model: Model, *, clip_norm: float | None = 1.0) -> Callable[..., Any]:
    """One optimizer step on a noised batch, pure: ``update(state, x_t, t, cond, noise) ->
    (loss, state)``, with the state ``(trainable, non_trainable, optimizer variables)``; Adam
    after clipping the gradients' global norm (NEU's clip 1.0)."""
    jax = _jax()

    from diffusion.steps import clip_by_global_norm

    grad_fn = jax.value_and_grad(_loss_fn(model), has_aux=True)

    def update(state, x_t, t, cond, noise):
        trainable, non_trainable, opt = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x_t, t, cond, noise)
        if clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, clip_norm)
        trainable, opt = model.optimizer.stateless_apply(opt, grads, trainable)
        return loss, (trainable, non_trainable, opt)

    return update


def train_step_fn(
    model: Model,
    *,
    clip_norm: float | None = 1.0,
    loader: str = "host",
    batch: int = 32,
    steps_per_call: int = 1,
    prng: str = PRNG_IMPL,
) -> Any:
    """The compiled optimizer step. ``host``: takes a noised batch. ``device``: takes a step
    number and the resident data set, draws events (with replacement), timesteps and noise on
    the device; with ``steps_per_call`` k > 1 one call runs k optimizer steps in a
    ``lax.scan`` (steps ``step .. step + k - 1``, the same k updates k calls would make) and
    returns the k losses: one dispatch and one synchronisation per k steps.

    Raises:
        ConfigError: ``steps_per_call`` below 1, or above 1 with the host loader.
    """
    jax = _jax()
    import jax.numpy as jnp

    from diffusion.errors import ConfigError

    if steps_per_call < 1 or (steps_per_call > 1 and loader != "device"):
        raise ConfigError(
            f"`steps_per_call` must be at least 1, and 1 unless loader is 'device', but got {steps_per_call=} "
            f"with {loader=}."
        )
    update = update_fn(model, clip_norm=clip_norm)
    if loader == "host":
        return jax.jit(update, donate_argnums=0)

    def device_step(state, step, x0_all, cond_all, alpha_bar, sharding=None):
        x_t, t, cond, noise = draw_batch(step, x0_all, cond_all, alpha_bar, batch, prng=prng)
        if sharding is not None:  # data parallel: each device computes its slice of the batch
            x_t, t, cond, noise = (jax.lax.with_sharding_constraint(a, sharding) for a in (x_t, t, cond, noise))
        return update(state, x_t, t, cond, noise)

    if steps_per_call == 1:
        return jax.jit(device_step, donate_argnums=0, static_argnames=("sharding",))

    def device_steps(state, step, x0_all, cond_all, alpha_bar, sharding=None):
        def body(state, i):
            loss, state = device_step(state, step + i, x0_all, cond_all, alpha_bar, sharding)
            return state, loss

        state, losses = jax.lax.scan(body, state, jnp.arange(steps_per_call, dtype=jnp.int32), unroll=SCAN_UNROLL)
        return losses, state

    return jax.jit(device_steps, donate_argnums=0, static_argnames=("sharding",))


def draw_batch(
    step: Any, x0_all: Any, cond_all: Any, alpha_bar: Any, batch: int, *, prng: str = PRNG_IMPL
) -> tuple[Any, ...]:
    """The device loader's batch for a step: ``draw_from_key`` with a key derived on the
    device from the step number (the only input from the host)."""
    jax = _jax()

    return draw_from_key(jax.random.fold_in(jax.random.key(0, impl=prng), step), x0_all, cond_all, alpha_bar, batch)


def draw_from_key(key: Any, x0_all: Any, cond_all: Any, alpha_bar: Any, batch: int) -> tuple[Any, ...]:
    """Events drawn with replacement, timesteps and noise from a key, then the forward process
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, as the host loaders compute it."""
    jax = _jax()
    import jax.numpy as jnp

    k_idx, k_t, k_noise = jax.random.split(key, 3)
    idx = jax.random.randint(k_idx, (batch,), 0, x0_all.shape[0])
    x0, cond = x0_all[idx], cond_all[idx]
    t = jax.random.randint(k_t, (batch,), 0, alpha_bar.shape[0])
    noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
    ab = alpha_bar[t][:, None]
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise, t[:, None].astype(jnp.float32), cond, noise


def train_throughput(
    model: Model,
    batch: int,
    loader: str,
    *,
    seconds: float = 3.0,
    min_steps: int = 10,
    sharding: Any = None,
    steps_per_call: int = 1,
    step: Any = None,
) -> dict[str, Any]:
    """Steady-state samples/s of whole optimizer steps, each call synchronised (as the Trainer
    times its steps; a call is ``steps_per_call`` steps), with the input-wait share: host time
    spent producing the next input. ``step``: a compiled ``train_step_fn`` of the same
    arguments to reuse (its first call here is then no longer the one that compiles). The
    timed calls follow a first call and warm-up calls of at least 3 steps."""
    jax = _jax()
    k = steps_per_call
    step = step or train_step_fn(model, loader=loader, batch=batch, steps_per_call=k)
    # The step donates its state: start from a copy, so the model's own arrays stay usable.
    state = jax.tree.map(lambda a: a.copy(), model.state)
    if loader == "device":
        # Under data parallelism the resident data set is replicated on every device of the mesh.
        place = None if sharding is None else jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        resident = jax.device_put((model.x0, model.cond, model.alpha_bar), place)
        counter = iter(range(0, 2**31 - 1, k))

        def next_input() -> Any:
            return (np.int32(next(counter)), *resident)

        def run(state, inputs):
            return step(state, *inputs, sharding=sharding)
    else:
        rng = np.random.default_rng(0)

        def next_input() -> Any:
            return jax.device_put(host_batch(model, batch, rng))

        def run(state, inputs):
            return step(state, *inputs)

    t0 = time.perf_counter()
    loss, state = run(state, next_input())
    jax.block_until_ready(loss)
    first_s = time.perf_counter() - t0
    for _ in range(-(-3 // k)):  # warm-up, at least 3 steps: allocator and autotuning settle
        loss, state = run(state, next_input())
    jax.block_until_ready(loss)
    waits, calls = [], []
    start = time.perf_counter()
    while len(calls) * k < min_steps or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        inputs = jax.block_until_ready(next_input())
        t1 = time.perf_counter()
        loss, state = run(state, inputs)
        jax.block_until_ready(loss)
        waits.append(t1 - t0)
        calls.append(time.perf_counter() - t1)
    total = sum(waits) + sum(calls)
    return {
        "batch": batch,
        "loader": loader,
        "steps_per_call": k,
        "first_step_s": first_s,
        "steps": len(calls) * k,
        "samples_per_s": batch * k * len(calls) / total,
        "input_wait_share": sum(waits) / total,
        "step_ms_median": 1000 * statistics.median(calls) / k,
        "loss_last": float(np.ravel(loss)[-1]),
    }


def fit_peer(model: Model, batch: int, *, clip_norm: float = 1.0, epochs: int = 3) -> dict[str, Any]:
    """The same model trained with Keras ``model.fit`` (compiled, same batch, Adam with global
    clip norm), fed one pre-noised copy of the training set as NumPy arrays; samples/s of the
    epochs after the first (which compiles)."""
    import keras

    x_t, t, cond, noise = host_batch(model, len(model.x0), np.random.default_rng(1))
    net = keras.models.clone_model(model.keras_model)
    net.compile(
        optimizer=keras.optimizers.Adam(model.preset.model.learning_rate, global_clipnorm=clip_norm),
        loss="mse",
        jit_compile=True,
    )
    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    history = net.fit([x_t, t, cond], noise, batch_size=batch, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {
        "batch": batch,
        "samples_per_s": len(x_t) / steady,  # fit runs every sample, the last batch partial
        "first_epoch_s": times[0],
        "epoch_s": steady,
        "loss_last": float(history.history["loss"][-1]),
    }


def data_parallel(preset: Preset, data: Any, batch: int, devices: list[Any], *, seconds: float = 3.0) -> dict[str, Any]:
    """Device-loader training under ``keras.distribution.DataParallel`` over ``devices``: the
    variables replicated, each step's batch sharded along its first axis. One device runs the
    same code path."""
    import keras

    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    try:
        model = build(preset, data)
        sharding = distribution.get_data_layout((batch, model.x0.shape[1])).backend_layout
        got = train_throughput(
            model, batch, "device", seconds=seconds, sharding=sharding, steps_per_call=DEVICE_STEPS_PER_CALL
        )
    finally:
        keras.distribution.set_distribution(None)
    return {**got, "devices": len(devices)}
