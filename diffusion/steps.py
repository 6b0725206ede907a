"""Train and validation steps, compiled as the path's knobs say, on the active Keras backend.

The step body is the same function whatever the compile mode; only how it runs changes:

===========  ==============================================  ============
knob value   TensorFlow                                      JAX
===========  ==============================================  ============
eager        plain Python, op by op                          un-jitted
graph        ``tf.function(reduce_retracing=True)``          ``jax.jit``
xla          ``tf.function(jit_compile=True, ...)``          ``jax.jit``
===========  ==============================================  ============

On JAX there is no separate graph mode: ``graph`` and ``xla`` both mean ``jax.jit``, and the
environment record says so rather than pretending they differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from diffusion.paths import TrainingPath

# target(x_t, t, noise) -> what the network regresses on; None: the noise itself.
Target = Callable[[Any, Any, Any], Any]


def mse(noise, predicted):
    return ops.mean(ops.square(predicted - noise))


def regression_target(schedule: Any, prediction: str) -> Target | None:
    """The regression target of a ``prediction`` model, in backend ops, for inside a step.

    v = sqrt(ab) noise - sqrt(1 - ab) x0 is written as (noise - sqrt(1 - ab) x_t) / sqrt(ab),
    since a batch carries x_t and the noise but not x0 (``NoiseSchedule.target`` in NumPy).
    It costs a gather of two (N,) coefficients and two elementwise ops on the batch, the same
    on every path; the loaders and their batches are untouched.
    """
    if prediction == "eps":
        return None
    sqrt_ab = ops.convert_to_tensor(np.sqrt(schedule.alpha_bar).astype(np.float32))
    sqrt_1m = ops.convert_to_tensor(np.sqrt(1.0 - schedule.alpha_bar).astype(np.float32))

    def target(x_t, t, noise):
        index = ops.cast(ops.reshape(t, (-1,)), "int32")
        a = ops.expand_dims(ops.take(sqrt_ab, index), 1)
        s = ops.expand_dims(ops.take(sqrt_1m, index), 1)
        return (noise - s * x_t) / a

    return target


def global_norm(tensors) -> Any:
    return ops.sqrt(sum(ops.sum(ops.square(g)) for g in tensors))


def clip_by_global_norm(grads: list, clip_norm: float) -> tuple[list, Any]:
    """Scale gradients so their global norm is at most clip_norm; also returns the norm before."""
    norm = global_norm(grads)
    scale = ops.minimum(1.0, clip_norm / ops.maximum(norm, 1e-12))
    return [g * scale for g in grads], norm


class Stepper:
    """Runs train and validation steps for one model, optimizer and path.

    ``traces`` counts Python executions of the step bodies: once per trace in compiled modes
    (tests check one trace per input shape), once per call in eager mode.
    """

    traces: Counter
    target: Target | None = None

    def _goal(self, x_t, t, noise):
        """What the model regresses on for this batch (the noise unless a target is set)."""
        return noise if self.target is None else self.target(x_t, t, noise)

    def train(self, batch) -> float:
        """One optimizer step; returns the batch loss (synchronised, so timings are honest)."""
        raise NotImplementedError

    def validate(self, batch) -> float:
        """Loss on one batch, no update."""
        raise NotImplementedError

    def loss_and_grads(self, batch) -> tuple[float, list[np.ndarray]]:
        """Loss and raw gradients (before clipping), compiled like the train step; no update."""
        raise NotImplementedError

    def sync_to_model(self) -> None:
        """Make the model's and optimizer's variables current (a no-op where they already are)."""

    def load_from_model(self) -> None:
        """Take the model's and optimizer's variables as the state to continue from."""


def make_stepper(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, path: TrainingPath, target: Target | None = None
) -> Stepper:
    """The stepper for the active backend. The optimizer must already be built on the model.

    ``target`` maps a batch's ``(x_t, t, noise)`` to what the model regresses on
    (``regression_target``); None regresses on the noise.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _TFStepper(model, optimizer, path, target)
    if backend == "jax":
        return _JaxStepper(model, optimizer, path, target)
    raise RuntimeError(f"backend {backend!r} is not supported; use tensorflow or jax.")


class _TFStepper(Stepper):
    def __init__(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, path: TrainingPath, target: Target | None
    ) -> None:
        import tensorflow as tf

        self.tf, self.model, self.optimizer, self.path = tf, model, optimizer, path
        self.target = target
        self.traces = Counter()
        self._train = self._compile(self._train_body, path.train_compile)
        self._grads = self._compile(self._grads_body, path.train_compile)
        self._val = self._compile(self._val_body, path.val_compile)

    def _compile(self, fn, mode: str):
        if mode == "eager":
            return fn
        # jit_compile=False, not None: None lets TF decide, and we want graph to mean graph.
        return self.tf.function(fn, reduce_retracing=True, jit_compile=(mode == "xla"))

    def _loss_and_grads(self, x_t, t, cond, noise):
        with self.tf.GradientTape() as tape:
            loss = mse(self._goal(x_t, t, noise), self.model([x_t, t, cond], training=True))
        return loss, tape.gradient(loss, self.model.trainable_variables)

    def _train_body(self, x_t, t, cond, noise):
        self.traces["train"] += 1
        loss, grads = self._loss_and_grads(x_t, t, cond, noise)
        if self.path.clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, self.path.clip_norm)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    def _grads_body(self, x_t, t, cond, noise):
        self.traces["grads"] += 1
        return self._loss_and_grads(x_t, t, cond, noise)

    def _val_body(self, x_t, t, cond, noise):
        self.traces["validate"] += 1
        return mse(self._goal(x_t, t, noise), self.model([x_t, t, cond], training=False))

    def train(self, batch) -> float:
        return float(self._train(*batch))

    def validate(self, batch) -> float:
        return float(self._val(*batch))

    def loss_and_grads(self, batch) -> tuple[float, list[np.ndarray]]:
        loss, grads = self._grads(*batch)
        return float(loss), [np.asarray(g) for g in grads]


class _JaxStepper(Stepper):
    """Functional steps over explicit state, as JAX wants; the Keras variables are written back
    only by ``sync_to_model`` (checkpoints, end of training), not on every step."""

    def __init__(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, path: TrainingPath, target: Target | None
    ) -> None:
        import jax

        self.jax, self.model, self.optimizer, self.path = jax, model, optimizer, path
        self.target = target
        self.traces = Counter()
        compiled = {"eager": lambda f: f, "graph": jax.jit, "xla": jax.jit}
        self._train = compiled[path.train_compile](self._train_body)
        self._grads = compiled[path.train_compile](self._grads_body)
        self._val = compiled[path.val_compile](self._val_body)
        self.load_from_model()

    def load_from_model(self) -> None:
        self.state = (
            [v.value for v in self.model.trainable_variables],
            [v.value for v in self.model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )

    def sync_to_model(self) -> None:
        trainable, non_trainable, opt = self.state
        for variables, values in (
            (self.model.trainable_variables, trainable),
            (self.model.non_trainable_variables, non_trainable),
            (self.optimizer.variables, opt),
        ):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def _loss(self, trainable, non_trainable, x_t, t, cond, noise):
        predicted, non_trainable = self.model.stateless_call(trainable, non_trainable, [x_t, t, cond], training=True)
        return mse(self._goal(x_t, t, noise), predicted), non_trainable

    def _grads_body(self, state, x_t, t, cond, noise):
        self.traces["grads"] += 1
        trainable, non_trainable, _ = state
        (loss, _), grads = self.jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, x_t, t, cond, noise
        )
        return loss, grads

    def _train_body(self, state, x_t, t, cond, noise):
        self.traces["train"] += 1
        trainable, non_trainable, opt = state
        grad_fn = self.jax.value_and_grad(self._loss, has_aux=True)
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x_t, t, cond, noise)
        if self.path.clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, self.path.clip_norm)
        trainable, opt = self.optimizer.stateless_apply(opt, grads, trainable)
        return loss, (trainable, non_trainable, opt)

    def _val_body(self, state, x_t, t, cond, noise):
        self.traces["validate"] += 1
        trainable, non_trainable, _ = state
        predicted, _ = self.model.stateless_call(trainable, non_trainable, [x_t, t, cond], training=False)
        return mse(self._goal(x_t, t, noise), predicted)

    def train(self, batch) -> float:
        loss, self.state = self._train(self.state, *batch)
        return float(loss)

    def validate(self, batch) -> float:
        return float(self._val(self.state, *batch))

    def loss_and_grads(self, batch) -> tuple[float, list[np.ndarray]]:
        loss, grads = self._grads(self.state, *batch)
        return float(loss), [np.asarray(g) for g in grads]
