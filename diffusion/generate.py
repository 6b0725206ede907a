"""Events from a trained model: load a checkpoint, sample with DDIM, decode to charge and time.

The checkpoint is read and verified with NumPy first (``load_checkpoint``), so a missing or
corrupt file answers before TensorFlow loads. The model is rebuilt from the checkpoint's own
metadata (preset and model sizes), which is what a tuned (``--config``) run changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint
from diffusion.detector import COND_DIM, Events
from diffusion.errors import CheckpointError
from diffusion.presets import DIFFUSION_BEFORE, DiffusionConfig, ModelConfig, Preset, get_preset
from diffusion.schedule import NoiseSchedule, ddim_sample


def checkpoint_file(path: Path) -> Path:
    """A run directory or a checkpoint file, as the user gave it, to the checkpoint file."""
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: Path) -> tuple[Checkpoint, Preset]:
    """The verified checkpoint and the preset it was trained on, with its model sizes.

    Raises:
        CheckpointError: missing, corrupt, or naming a preset or model this code does not know.
    """
    checkpoint = load_checkpoint(checkpoint_file(path))
    meta = checkpoint.meta
    try:
        preset = get_preset(str(meta["preset"]))
        model = ModelConfig(**meta["model"])
        # A checkpoint from before the diffusion settings were recorded predicted eps.
        diffusion = DiffusionConfig(**{**DIFFUSION_BEFORE, **(meta.get("diffusion") or {})})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks a usable preset or model ({exc}).") from None
    return checkpoint, dataclasses.replace(preset, model=model, diffusion=diffusion)


@dataclass(frozen=True, eq=False)
class Generated:
    """Generated events and what decoding hid.

    Attributes:
        events: charge and time from the model, truth (energy, vertex, directions,
            multiplicity) from the conditioning events.
        raw_min_charge: (N,) the smallest decoded charge before the decoder clips it at 0: a
            model that puts PMTs below "no light" shows it here.
        seconds: wall time of the sampling.
    """

    events: Events
    raw_min_charge: np.ndarray
    seconds: float


class Generator:
    """A trained denoiser that generates events for given conditions."""

    def __init__(
        self, checkpoint: Checkpoint, preset: Preset, normaliser: Any, schedule: NoiseSchedule, *, steps: int = 50
    ) -> None:
        from diffusion.model import build_denoiser

        self.preset, self.normaliser, self.schedule, self.steps = preset, normaliser, schedule, steps
        self.n_features = 2 * preset.detector.n_pmt
        self.model = build_denoiser(self.n_features, COND_DIM, preset.model)
        try:
            self.model.set_weights(checkpoint.weights)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint does not fit the model it names: {exc}") from None

    def predict(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """The network's output: v or the noise, as ``preset.diffusion.prediction`` says."""
        # predict_on_batch runs the compiled predict function: one trace, then fast calls.
        return np.asarray(self.model.predict_on_batch([x, t, cond]))

    def eps(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """The predicted noise, whatever the network predicts."""
        return self.schedule.eps_from(self.preset.diffusion.prediction, self.predict(x, t, cond), x, t)

    def generate(
        self,
        truth: Events,
        *,
        steps: int | None = None,
        rng: np.random.Generator,
        batch: int = 512,
        on_batch: Any = None,
    ) -> Generated:
        """Charge and time for every event of ``truth``, conditioned on its truth (DDIM with
        ``steps`` steps, the generator's default if None)."""
        import time

        steps = steps or self.steps
        cond = truth.condition(self.preset.detector.radius_m)
        # The predicted x0 stays in the data's range, as image models clip to [-1, 1]: a charge
        # below no light is no event the detector gives. Under the old +/- 6, 97-99% of generated
        # events had a PMT below -0.5 pe (results/quality-diagnosis-h200.md).
        bounds = self.normaliser.bounds(self.preset.detector.n_pmt)
        start = time.perf_counter()
        parts = []
        for lo in range(0, len(cond), batch):
            parts.append(
                ddim_sample(
                    self.eps,
                    cond[lo : lo + batch],
                    self.schedule,
                    self.n_features,
                    steps=steps,
                    rng=rng,
                    clip_x0=bounds,
                )
            )
            if on_batch is not None:
                on_batch(min(lo + batch, len(cond)))
        features = np.concatenate(parts)
        seconds = time.perf_counter() - start
        charge, hit_time = self.normaliser.decode(features)
        events = dataclasses.replace(truth, charge=charge.astype(np.float32), time=hit_time.astype(np.float32))
        return Generated(events, self.normaliser.raw_charge(features).min(axis=1), seconds)
