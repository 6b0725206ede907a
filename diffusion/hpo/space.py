"""The search space, declared as data, and how a trial's parameters become a model and a path."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.errors import ConfigError
from diffusion.paths import TrainingPath
from diffusion.presets import ModelConfig, Preset


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def check(self, name: str, value: Any) -> float:
        if not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise ConfigError(f"`{name}` must be a number in [{self.low}, {self.high}], but got {value!r}.")
        return float(value)


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the option it names. ``64.0 == 64`` and ``True == 1.0`` in Python, but a
        float layer width or a boolean clip norm breaks the model: an integer option takes an
        integer only, a float option an integer or float, and never a bool."""
        for option in self.options:
            numeric = isinstance(option, (int, float)) and not isinstance(option, bool)
            if numeric and isinstance(value, bool):
                continue
            if isinstance(option, int) and numeric and not isinstance(value, int):
                continue
            if value == option:
                return option
        raise ConfigError(f"`{name}` must be one of {', '.join(map(str, self.options))}, but got {value!r}.")


# What the search tunes: model size, learning rate, batch size and clipping. `clip_norm` 0
# stands for no clipping (categorical values must be plain numbers or strings).
SEARCH_SPACE: dict[str, LogUniform | Choice] = {
    "learning_rate": LogUniform(1e-4, 3e-3),
    "hidden_dim": Choice((64, 128, 256, 512, 768)),
    "blocks": Choice((2, 3, 4, 6)),
    "batch_size": Choice((16, 32, 64)),
    "clip_norm": Choice((0.0, 0.5, 1.0, 5.0)),
}
MODEL_PARAMS = ("learning_rate", "hidden_dim", "blocks")
PATH_PARAMS = ("batch_size", "clip_norm")


def suggest(trial: Any, space: dict[str, LogUniform | Choice] = SEARCH_SPACE) -> dict[str, Any]:
    """Draw one parameter set from ``space`` for an Optuna trial."""
    return {name: dist.suggest(trial, name) for name, dist in space.items()}


def check_params(params: dict[str, Any], space: dict[str, LogUniform | Choice] = SEARCH_SPACE) -> dict[str, Any]:
    """Validate a parameter set against the space (used for best.json and enqueued trials).

    Raises:
        ConfigError: unknown names or values outside the space.
    """
    unknown = sorted(set(params) - set(space))
    if unknown:
        raise ConfigError(f"unknown parameters {unknown}; valid: {', '.join(space)}.")
    return {name: space[name].check(name, value) for name, value in params.items()}


def apply_params(preset: Preset, path: TrainingPath, params: dict[str, Any]) -> tuple[Preset, TrainingPath]:
    """The preset and path a parameter set describes; parameters not given keep their values."""
    model_changes = {k: params[k] for k in MODEL_PARAMS if k in params}
    path_changes: dict[str, Any] = {k: params[k] for k in PATH_PARAMS if k in params}
    if "clip_norm" in path_changes:
        path_changes["clip_norm"] = path_changes["clip_norm"] or None
    model: ModelConfig = dataclasses.replace(preset.model, **model_changes)
    return dataclasses.replace(preset, model=model), dataclasses.replace(path, **path_changes)


def load_best(path: Path) -> dict[str, Any]:
    """Read a ``best.json`` written by ``python -m diffusion.hpo best``.

    Raises:
        ConfigError: missing, not JSON, or parameters outside the search space.
    """
    from diffusion.files import read_json_record

    data = read_json_record(path, "--config")
    if not isinstance(data.get("params"), dict):
        raise ConfigError(
            f"--config {str(path)!r} has no `params` object; write it with `python -m diffusion.hpo best`."
        )
    try:
        data["params"] = check_params(data["params"])
    except ConfigError as exc:  # say which file, as every other --config message does
        raise ConfigError(f"--config {str(path)!r}: {exc}") from None
    return data
