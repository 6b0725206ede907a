"""DDPM noise schedules, forward noising, and a DDIM sampler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffusion.presets import DiffusionConfig

# eps_fn(x_t, t, cond) -> predicted noise, all NumPy; t has shape (N, 1).
EpsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# The predicted x0 is clipped to +/- a bound, or to per-feature (low, high) bounds.
Clip = float | tuple[np.ndarray | float, np.ndarray | float]


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Betas of a DDPM forward process and the products derived from them."""

    betas: np.ndarray

    @classmethod
    def linear(cls, timesteps: int, start: float = 1e-4, end: float = 0.02) -> NoiseSchedule:
        return cls(np.linspace(start, end, timesteps, dtype=np.float64))

    @classmethod
    def cosine(cls, timesteps: int, s: float = 0.008) -> NoiseSchedule:
        steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
        f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
        alpha_bar = f / f[0]
        return cls(np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999))

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> NoiseSchedule:
        return cls.linear(config.timesteps) if config.schedule == "linear" else cls.cosine(config.timesteps)

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alpha_bar(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    def q_sample(self, x0: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; t is an integer array of shape (N,)."""
        ab = self.alpha_bar[t].astype(x0.dtype)[:, None]
        return np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * noise

    def target(self, prediction: str, x_t: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """What a ``prediction`` model regresses on: the noise, or v = sqrt(ab) noise - sqrt(1 - ab) x0.

        ``t`` has shape (N,) or (N, 1). v is written with x_t and the noise alone, (noise -
        sqrt(1 - ab) x_t) / sqrt(ab), because a batch carries no x0; the train step computes
        the same (``diffusion.steps.regression_target``).
        """
        if prediction == "eps":
            return noise
        a, s = self._coefficients(t)
        return ((noise - s * x_t) / a).astype(noise.dtype)

    def eps_from(self, prediction: str, output: np.ndarray, x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The noise that a ``prediction`` model's output implies: eps = sqrt(ab) v + sqrt(1 - ab) x_t."""
        if prediction == "eps":
            return output
        a, s = self._coefficients(t)
        return a * output + s * x_t

    def _coefficients(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ab = self.alpha_bar[np.asarray(t).reshape(-1).astype(int)][:, None]
        return np.sqrt(ab), np.sqrt(1.0 - ab)


def ddim_sample(
    eps_fn: EpsFn,
    cond: np.ndarray,
    schedule: NoiseSchedule,
    n_features: int,
    *,
    steps: int = 50,
    eta: float = 0.0,
    rng: np.random.Generator | None = None,
    clip_x0: Clip | None = 6.0,
) -> np.ndarray:
    """Generate samples x0 (N, n_features) for conditioning vectors ``cond`` with DDIM (Song et al. 2021).

    Args:
        eps_fn: the noise predictor.
        cond: (N, C) conditioning vectors.
        schedule: the schedule the predictor was trained with.
        n_features: feature count of a sample.
        steps: denoising steps, evenly spaced over the schedule.
        eta: 0 is deterministic DDIM; 1 matches DDPM's posterior variance.
        rng: noise source; a fixed seed gives the same samples.
        clip_x0: clip the predicted x0 to +/- this, or to per-feature ``(low, high)`` bounds
            (the data's range: ``Normaliser.bounds``), or None.
    """
    if not 1 <= steps <= schedule.timesteps:
        raise ValueError(f"`steps` must be in [1, {schedule.timesteps}], but got {steps}.")
    rng = rng or np.random.default_rng()
    alpha_bar = schedule.alpha_bar
    low, high = (-clip_x0, clip_x0) if isinstance(clip_x0, (int, float)) else (clip_x0 or (None, None))
    times = np.linspace(schedule.timesteps - 1, 0, steps).round().astype(int)
    x = rng.standard_normal((len(cond), n_features)).astype(np.float32)
    for i, t in enumerate(times):
        ab = alpha_bar[t]
        ab_prev = alpha_bar[times[i + 1]] if i + 1 < len(times) else 1.0
        eps = np.asarray(eps_fn(x, np.full((len(cond), 1), t, np.float32), cond), dtype=np.float64)
        x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        if clip_x0 is not None:
            x0 = np.clip(x0, low, high)
            eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        direction = np.sqrt(np.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
        x = np.sqrt(ab_prev) * x0 + direction + sigma * rng.standard_normal(x.shape)
        x = x.astype(np.float32)
    return x
