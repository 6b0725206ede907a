"""Model, diffusion and data sizes, and the presets that bundle them, as a lookup table."""

from __future__ import annotations

from dataclasses import dataclass, field

from diffusion.detector import PHYSICS_EVENTS, DetectorConfig, EventConfig
from diffusion.errors import ConfigError

SCHEDULES: tuple[str, ...] = ("linear", "cosine")
PREDICTIONS: tuple[str, ...] = ("eps", "v")
# What a checkpoint written before DiffusionConfig was recorded in it was trained with.
DIFFUSION_BEFORE: dict[str, object] = {"timesteps": 1000, "schedule": "linear", "prediction": "eps"}


@dataclass(frozen=True)
class ModelConfig:
    """Size and optimiser of the denoiser."""

    hidden_dim: int = 256
    blocks: int = 4
    expansion: int = 2  # inner width of a residual block's MLP, as a multiple of hidden_dim
    time_embed_dim: int = 64  # sinusoidal features of the timestep
    learning_rate: float = 3e-4

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "blocks", "expansion", "time_embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be at least 1, but got {getattr(self, name)}.")
        if self.time_embed_dim % 2:
            raise ConfigError(f"`time_embed_dim` must be even, but got {self.time_embed_dim}.")
        if not self.learning_rate > 0:
            raise ConfigError(f"`learning_rate` must be positive, but got {self.learning_rate}.")


@dataclass(frozen=True)
class DiffusionConfig:
    """The DDPM forward process."""

    timesteps: int = 1000
    schedule: str = "linear"  # linear: Ho et al. 2020; cosine: Nichol & Dhariwal 2021
    # What the network predicts. eps (the noise) weighs the clean sample's error by the
    # signal-to-noise ratio, ~0 at large t, where the conditioning alone must place the rings;
    # v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022) weighs it by 1 + SNR. NEU at small:
    # the leading ring in the Cherenkov band in 33% (eps) vs 69% (v) of generated events
    # (results/quality-diagnosis-h200.md). The step's cost: a gather and two elementwise ops.
    prediction: str = "v"

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"`prediction` must be one of {', '.join(PREDICTIONS)}, but got {self.prediction!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` must be one of {', '.join(SCHEDULES)}, but got {self.schedule!r}.")
        if self.timesteps < 2:
            raise ConfigError(f"`timesteps` must be at least 2, but got {self.timesteps}.")


@dataclass(frozen=True)
class Preset:
    """Everything that sets the size of a run, so that 'tiny', 'small' and 'seed' mean one thing."""

    name: str
    detector: DetectorConfig
    model: ModelConfig
    n_train: int  # training events; an epoch is n_train // batch_size steps
    n_val: int  # fixed, pre-noised validation samples; >= the largest pass (50 x 64 for ablation V3)
    events: EventConfig = PHYSICS_EVENTS
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    seed: int = 0


PRESETS: dict[str, Preset] = {
    # Tests and CI smoke: an epoch in well under a second.
    "tiny": Preset(
        name="tiny",
        detector=DetectorConfig(n_pmt=96),
        model=ModelConfig(hidden_dim=64, blocks=2, time_embed_dim=32),
        n_train=512,
        n_val=3200,
    ),
    # Default: the whole ALT-vs-NEU comparison in minutes on 2 cores.
    "small": Preset(
        name="small",
        detector=DetectorConfig(n_pmt=768),
        model=ModelConfig(hidden_dim=256, blocks=4),
        n_train=4096,
        n_val=3200,
    ),
    # The seed report's scale: hidden_dim 768 and enough PMTs that ALT trains at tens of samples/s.
    "seed": Preset(
        name="seed",
        detector=DetectorConfig(n_pmt=4096, pmt_radius_m=0.0735),  # keeps ~35% coverage
        model=ModelConfig(hidden_dim=768, blocks=6, time_embed_dim=128),
        n_train=8192,
        n_val=3200,
    ),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Raises:
        ConfigError: unknown name; the message lists the presets.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}.") from None
