"""The trainer: one model, one path, timed steps, validation, checkpoints, and fit.

Timings are taken per step and split into waiting for the batch and running the step, so
the harness can report first-call (trace) cost, steady-state throughput and input-boundness
from the same records.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.checkpoint import CHECKPOINT_NAME, Checkpoint, check_identity, load_checkpoint, save_checkpoint
from diffusion.data import Loader, PreparedData, prepare
from diffusion.errors import CheckpointError, ConfigError, TrainingDiverged
from diffusion.paths import TrainingPath, format_path
from diffusion.presets import Preset
from diffusion.tracking import METRICS_NAME, Tracking

__all__ = ["METRICS_NAME", "FitResult", "Trainer", "TrainResult", "ValidationResult", "fit"]
OnStep = Callable[[int, float], None]  # (global step, loss)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Per-step records of a stretch of training."""

    batch_size: int
    losses: np.ndarray
    wait_s: np.ndarray  # waiting for the next batch (the loader's cost not hidden by prefetch)
    step_s: np.ndarray  # running the step, synchronised

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def first_step_s(self) -> float:
        """The first step including its wait: where tracing and compilation land."""
        return float(self.wait_s[0] + self.step_s[0])

    def total_s(self, skip: int = 0) -> float:
        return float(np.sum(self.wait_s[skip:] + self.step_s[skip:]))

    def samples_per_s(self, skip: int = 1) -> float:
        """Steady-state throughput: samples over time, leaving out the first ``skip`` steps."""
        return self.batch_size * (self.steps - skip) / self.total_s(skip)

    def input_wait_share(self, skip: int = 1) -> float:
        """Share of step time spent waiting for input; near 0 means not input-bound."""
        return float(np.sum(self.wait_s[skip:]) / self.total_s(skip))


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """One validation pass."""

    batch_losses: np.ndarray
    batch_s: np.ndarray
    batch_size: int

    @classmethod
    def from_steps(cls, steps: list[tuple[float, float]], batch_size: int) -> ValidationResult:
        """The pass of ``Trainer.validation_steps``'s (loss, seconds) pairs."""
        return cls(np.array([s[0] for s in steps]), np.array([s[1] for s in steps]), batch_size)

    @property
    def batches(self) -> int:
        return len(self.batch_losses)

    @property
    def samples(self) -> int:
        return self.batches * self.batch_size

    @property
    def loss(self) -> float:
        return float(np.mean(self.batch_losses))

    @property
    def stderr(self) -> float:
        """Standard error of the mean loss over batches: fewer batches, noisier estimate."""
        if self.batches < 2:
            return float("nan")
        return float(np.std(self.batch_losses, ddof=1) / math.sqrt(self.batches))

    @property
    def seconds(self) -> float:
        return float(np.sum(self.batch_s))

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds


class Trainer:
    """Builds data, model, optimizer, loader and steps for a preset and a path.

    Args:
        preset: sizes of data and model.
        path: the training setup's knobs.
        seed: seeds weights and batch order; the same seed gives the same run.
        data: prepared data to share between trainers (tests, benchmarks); built if None.
    """

    def __init__(self, preset: Preset, path: TrainingPath, *, seed: int = 0, data: PreparedData | None = None) -> None:
        import keras

        from diffusion.model import build_denoiser
        from diffusion.steps import make_stepper, regression_target

        self.preset, self.path, self.seed = preset, path, seed
        self.data = data or prepare(preset)
        if path.val_samples > len(self.data.validation):
            raise ConfigError(
                f"path {format_path(path)!r} validates on {path.val_samples} samples, but preset "
                f"{preset.name!r} holds {len(self.data.validation)}; lower val_batches or val_batch_size."
            )
        keras.utils.set_random_seed(seed)
        train = self.data.train
        self.model = build_denoiser(train.x.shape[1], train.cond.shape[1], preset.model)
        self.optimizer = keras.optimizers.Adam(learning_rate=preset.model.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.loader = Loader(path.loader, train, self.data.schedule, path.batch_size, seed)
        target = regression_target(self.data.schedule, preset.diffusion.prediction)
        self.stepper = make_stepper(self.model, self.optimizer, path, target)
        self.global_step = 0
        self._stream: Iterator | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.loader.steps_per_epoch

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self.global_step // self.steps_per_epoch

    def _batches(self) -> Iterator:
        """Batches from the current step on, across epoch boundaries."""
        epoch, offset = divmod(self.global_step, self.steps_per_epoch)
        stream = self.loader.stream(epoch)
        try:
            yield from itertools.islice(stream, offset, None)
        finally:
            close = getattr(stream, "close", None)  # stops a prefetch thread
            if close:
                close()

    def close(self) -> None:
        """Stop the batch stream (and a prefetch thread behind it)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def train_steps(self, n: int, on_step: OnStep | None = None) -> TrainResult:
        """Run n optimizer steps, timing each.

        Raises:
            TrainingDiverged: the loss became NaN or infinite; names the step.
        """
        if self._stream is None:
            self._stream = self._batches()
        losses, waits, steps = np.empty(n), np.empty(n), np.empty(n)
        for i in range(n):
            t0 = time.perf_counter()
            batch = next(self._stream)
            t1 = time.perf_counter()
            loss = self.stepper.train(batch)
            t2 = time.perf_counter()
            self.global_step += 1
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at step {self.global_step} (epoch {self.epoch + 1}, path {format_path(self.path)})."
                )
            losses[i], waits[i], steps[i] = loss, t1 - t0, t2 - t1
            if on_step is not None:
                on_step(self.global_step, loss)
        return TrainResult(self.path.batch_size, losses, waits, steps)

    def train_epoch(self, on_step: OnStep | None = None) -> TrainResult:
        """Train to the end of the current epoch."""
        return self.train_steps(self.steps_per_epoch - self.global_step % self.steps_per_epoch, on_step)

    def validate(self, n_batches: int | None = None, batch_size: int | None = None) -> ValidationResult:
        """One validation pass over the fixed set, as the path says unless overridden."""
        batch_size = batch_size or self.path.val_batch_size
        steps = list(self.validation_steps(n_batches, batch_size))
        return ValidationResult.from_steps(steps, batch_size)

    def validation_steps(
        self, n_batches: int | None = None, batch_size: int | None = None
    ) -> Iterator[tuple[float, float]]:
        """A validation pass one batch at a time: each batch's (loss, seconds), timed around
        the step alone, so that a caller may spread one pass over several turns (bench/measure.py's
        ``TurnTaker``) and the time between batches counts for nothing."""
        self.stepper.sync_to_model()
        n_batches = n_batches or self.path.val_batches
        batch_size = batch_size or self.path.val_batch_size
        for batch in self.data.validation.batches(n_batches, batch_size):
            t0 = time.perf_counter()
            loss = self.stepper.validate(batch)
            yield float(loss), time.perf_counter() - t0

    @property
    def learning_rate(self) -> float:
        import keras

        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def weights_by_name(self) -> dict[str, np.ndarray]:
        """Current weights by variable path (``block_0_up/kernel``), for weight histograms."""
        import keras

        self.stepper.sync_to_model()
        return {v.path: keras.ops.convert_to_numpy(v.value) for v in self.model.weights}

    def checkpoint(self, **meta: Any) -> Checkpoint:
        """The state to resume from: weights, optimizer, step, and what identifies the run."""
        import keras

        self.stepper.sync_to_model()
        return Checkpoint(
            weights=self.model.get_weights(),
            optimizer=[keras.ops.convert_to_numpy(v.value) for v in self.optimizer.variables],
            meta={
                "global_step": self.global_step,
                "epoch": self.epoch,
                "path": self.path.knobs(),
                "preset": self.preset.name,
                "model": dataclasses.asdict(self.preset.model),
                "diffusion": dataclasses.asdict(self.preset.diffusion),
                "seed": self.seed,
                # Batch order and noise are functions of (seed, epoch): this is the whole RNG state.
                "rng": {"seed": self.seed, "next_epoch": self.epoch},
                **meta,
            },
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint of the same preset, path and seed.

        Raises:
            CheckpointError: the checkpoint belongs to another preset, path or seed, or its
                arrays do not fit this model.
        """
        mine = {
            "preset": self.preset.name,
            "model": dataclasses.asdict(self.preset.model),
            "diffusion": dataclasses.asdict(self.preset.diffusion),
            "path": self.path.knobs(),
            "seed": self.seed,
        }
        check_identity(checkpoint.meta, mine)
        try:
            self.model.set_weights(checkpoint.weights)
            if len(checkpoint.optimizer) != len(self.optimizer.variables):
                raise ValueError("optimizer variable count differs")
            for variable, value in zip(self.optimizer.variables, checkpoint.optimizer, strict=True):
                variable.assign(value)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint does not fit this model: {exc}") from None
        self.stepper.load_from_model()
        self.close()
        self.global_step = int(checkpoint.meta["global_step"])


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    first_step_s: float | None = None  # of this process: includes tracing
    first_val_pass_s: float | None = None


def fit(
    trainer: Trainer,
    epochs: int,
    out: Path,
    *,
    resume: bool = False,
    on_step: OnStep | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    target_loss: float | None = None,
) -> FitResult:
    """Train to ``epochs`` total epochs, validating, logging and checkpointing after each.

    What is logged beside the checkpoint is the path's ``tracking`` knob (diffusion/tracking.py).
    With ``target_loss``, stop after the first epoch whose validation loss reaches it (time to
    quality: the evaluation is on the clock). With ``resume``, continue from
    ``out/checkpoint.npz`` (same preset, path, seed); what was logged after that checkpoint (a
    kill between log and checkpoint) is dropped so the log matches the state.

    Raises:
        ConfigError: the tracking asks for a writer this machine lacks (before any training).
    """
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    result = FitResult()
    tracking = Tracking(trainer.path.tracking, out)
    resumed = resume and ckpt_path.exists()
    if resumed:
        trainer.restore(load_checkpoint(ckpt_path))
    result.history = tracking.start(resumed_epoch=trainer.epoch if resumed else None, global_step=trainer.global_step)

    def step_hook(step: int, loss: float) -> None:
        tracking.on_step(step, loss)
        if on_step is not None:
            on_step(step, loss)

    try:
        for _ in range(trainer.epoch, epochs):
            t0 = time.perf_counter()
            train = trainer.train_epoch(step_hook)
            train_wall = time.perf_counter() - t0
            val = trainer.validate()
            if result.first_step_s is None:
                result.first_step_s, result.first_val_pass_s = train.first_step_s, val.seconds
            record = {
                "epoch": trainer.epoch,
                "global_step": trainer.global_step,
                "train_loss": float(np.mean(train.losses)),
                "train_samples_per_s": train.samples_per_s(skip=1 if train.steps > 1 else 0),
                "train_wall_s": train_wall,
                "input_wait_share": train.input_wait_share(skip=1 if train.steps > 1 else 0),
                "val_loss": val.loss,
                "val_loss_stderr": val.stderr,
                "val_samples": val.samples,
                "val_pass_s": val.seconds,
                "learning_rate": trainer.learning_rate,
                "time": time.time(),
            }
            # The log is written (and flushed) before the checkpoint: after a kill between the
            # two, resume finds a log ahead of the state and cuts it back, never the reverse.
            tracking.on_epoch(record, trainer.weights_by_name() if tracking.wants_weights else {})
            save_checkpoint(ckpt_path, trainer.checkpoint(metrics=record))
            result.history.append(record)
            result.checkpoint = ckpt_path
            if on_epoch is not None:
                on_epoch(record)
            if target_loss is not None and record["val_loss"] <= target_loss:
                break
    finally:
        tracking.close()
    if ckpt_path.exists():
        result.checkpoint = ckpt_path
    trainer.close()
    return result
