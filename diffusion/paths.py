"""Training paths as data: a frozen value of independent knobs, and the spec-string parser.

A path is never a branch in code. ``ALT`` and ``NEU`` are two values of the same dataclass;
an ablation is one of them with a single knob replaced. This module imports nothing heavy so
that argument errors answer before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from diffusion.errors import ConfigError

Compile = Literal["eager", "graph", "xla"]
Loader = Literal["sync", "prefetch"]
Tracking = Literal["none", "jsonl", "tensorboard", "histograms"]

COMPILE_MODES: tuple[str, ...] = ("eager", "graph", "xla")
LOADERS: tuple[str, ...] = ("sync", "prefetch")
# Each level writes what the one before it writes, and more (diffusion/tracking.py).
TRACKINGS: tuple[str, ...] = ("none", "jsonl", "tensorboard", "histograms")
# Phases whose time and memory a worker measures; a knob of another phase ("disk") changes
# only what a fit writes, so a one-knob ablation of it has nothing to time.
MEASURED_PHASES: tuple[str, ...] = ("validate", "train")


# Caps on the count knobs: 64x the largest batch measured here (1024, on a GPU), and a
# validation pass 500x NEU's 20 batches, run every epoch; past them a run takes hours or
# cannot allocate its batch.
KNOB_MAX: dict[str, int] = {"batch_size": 65_536, "val_batch_size": 65_536, "val_batches": 10_000}


@dataclass(frozen=True)
class TrainingPath:
    """One training setup, as independent knobs.

    Attributes:
        train_compile: how the train step runs. ``graph`` is ``tf.function(reduce_retracing=True)``,
            ``xla`` adds ``jit_compile=True``; on JAX both mean ``jax.jit``.
        val_compile: the same for the validation step.
        batch_size: training batch size.
        loader: ``sync`` noises batches in NumPy inside the loop (no overlap); ``prefetch``
            noises them in a pipeline that runs ahead of the step (``tf.data`` or a thread).
        clip_norm: clip gradients to this global norm, or ``None`` for no clipping.
        val_batches: batches per validation pass.
        val_batch_size: samples per validation batch.
        tracking: what ``fit`` logs beside the checkpoint. ``none``: nothing; ``jsonl``: one JSON
            line per epoch (``metrics.jsonl``); ``tensorboard``: that line plus TensorBoard
            event files (per-epoch scalars, the training loss every few steps); ``histograms``:
            that plus a histogram of every weight per epoch (Keras's ``histogram_freq=1``).
    """

    # `phase` names the phase a knob changes: an ablation of the knob measures only that phase.
    train_compile: Compile = field(default="eager", metadata={"phase": "train"})
    val_compile: Compile = field(default="eager", metadata={"phase": "validate"})
    batch_size: int = field(default=32, metadata={"phase": "train"})
    loader: Loader = field(default="sync", metadata={"phase": "train"})
    clip_norm: float | None = field(default=None, metadata={"phase": "train"})
    val_batches: int = field(default=50, metadata={"phase": "validate"})
    val_batch_size: int = field(default=32, metadata={"phase": "validate"})
    tracking: Tracking = field(default="jsonl", metadata={"phase": "disk"})

    def __post_init__(self) -> None:
        for knob in ("train_compile", "val_compile"):
            value = getattr(self, knob)
            if value not in COMPILE_MODES:
                raise ConfigError(f"`{knob}` must be one of {', '.join(COMPILE_MODES)}, but got {value!r}.")
        if self.loader not in LOADERS:
            raise ConfigError(f"`loader` must be one of {', '.join(LOADERS)}, but got {self.loader!r}.")
        if self.tracking not in TRACKINGS:
            raise ConfigError(f"`tracking` must be one of {', '.join(TRACKINGS)}, but got {self.tracking!r}.")
        for knob in ("batch_size", "val_batches", "val_batch_size"):
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{knob}` must be an integer of at least 1, but got {value!r}.")
            if value > KNOB_MAX[knob]:
                raise ConfigError(f"`{knob}` must be at most {KNOB_MAX[knob]}, but got {value!r}.")
        if self.clip_norm is not None and not (0 < self.clip_norm < math.inf):
            raise ConfigError(f"`clip_norm` must be a finite positive number or none, but got {self.clip_norm!r}.")

    @property
    def val_samples(self) -> int:
        """Samples in one validation pass."""
        return self.val_batches * self.val_batch_size

    def knobs(self) -> dict[str, Any]:
        """All knobs as a JSON-ready dict, in declaration order."""
        return dataclasses.asdict(self)


ALT = TrainingPath()
NEU = TrainingPath(
    train_compile="graph",
    val_compile="graph",
    loader="prefetch",
    clip_norm=1.0,
    val_batches=20,
    val_batch_size=64,
    # The report credits NEU's "more tracking" (section 5) for its 4x log volume: TensorBoard
    # scalars, as a Keras user's TensorBoard callback writes them.
    tracking="tensorboard",
)
PATHS: dict[str, TrainingPath] = {"alt": ALT, "neu": NEU}
KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainingPath))
# Knobs added after records and checkpoints were first written, with the value every path had
# before: an older record without the knob means that value.
KNOB_BEFORE: dict[str, Any] = {"tracking": "jsonl"}
KNOB_PHASE: dict[str, str] = {f.name: f.metadata["phase"] for f in dataclasses.fields(TrainingPath)}


def _parse_value(knob: str, text: str) -> Any:
    field_type = {f.name: f.type for f in dataclasses.fields(TrainingPath)}[knob]
    if knob == "clip_norm":
        if text.lower() in ("none", "off", ""):
            return None
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"`clip_norm` must be a positive number or none, but got {text!r}.") from None
    if "int" in str(field_type):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"`{knob}` must be an integer of at least 1, but got {text!r}.") from None
    return text


def parse_path(spec: str) -> TrainingPath:
    """Parse a path spec: a path name with optional ``knob=value`` overrides.

    Examples: ``alt``, ``neu``, ``neu:train_compile=xla``, ``alt:val_batches=20,val_batch_size=64``.

    Raises:
        ConfigError: unknown path name, unknown knob, a knob given twice, or invalid value; the
            message lists the valid choices.
    """
    name, _, overrides = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in PATHS:
        raise ConfigError(f"unknown path {name!r} in spec {spec!r}; valid paths: {', '.join(PATHS)}.")
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        knob, eq, text = item.partition("=")
        knob = knob.strip()
        if not eq:
            raise ConfigError(f"override {item!r} in spec {spec!r} must look like knob=value.")
        if knob not in KNOBS:
            raise ConfigError(f"unknown knob {knob!r} in spec {spec!r}; valid knobs: {', '.join(KNOBS)}.")
        if knob in changes:  # which one was meant? a record must not say one thing and time another
            raise ConfigError(f"knob {knob!r} is given twice in spec {spec!r}; give each knob once.")
        changes[knob] = _parse_value(knob, text.strip())
    return dataclasses.replace(PATHS[name], **changes)


def path_from_knobs(knobs: Mapping[str, Any]) -> TrainingPath:
    """The path a knob mapping (``TrainingPath.knobs()``) describes: how a path crosses a process
    boundary, so that it is parsed once, where it entered. A knob an older mapping lacks takes
    the value every path had then (``KNOB_BEFORE``).

    Raises:
        ConfigError: an unknown or missing knob, or an invalid value; the message lists the knobs.
    """
    unknown = [k for k in knobs if k not in KNOBS]
    if unknown:
        raise ConfigError(f"unknown knobs {unknown} in a path's knob mapping; valid knobs: {', '.join(KNOBS)}.")
    missing = [k for k in KNOBS if k not in knobs and k not in KNOB_BEFORE]
    if missing:
        raise ConfigError(f"a path's knob mapping lacks {missing}; a path gives every knob: {', '.join(KNOBS)}.")
    return TrainingPath(**{**KNOB_BEFORE, **knobs})


def format_path(path: TrainingPath) -> str:
    """The shortest spec that parses back to ``path`` (named base plus the knobs that differ)."""
    best = ""
    for name, base in PATHS.items():
        diffs = [
            f"{knob}={'none' if getattr(path, knob) is None else getattr(path, knob)}"
            for knob in KNOBS
            if getattr(path, knob) != getattr(base, knob)
        ]
        spec = name + (":" + ",".join(diffs) if diffs else "")
        if not best or len(spec) < len(best):
            best = spec
    return best


def compile_semantics(backend: str) -> dict[str, str]:
    """What each compile knob value runs as on this backend (for the environment record)."""
    if backend == "jax":
        return {"eager": "un-jitted JAX", "graph": "jax.jit", "xla": "jax.jit (same as graph)"}
    return {
        "eager": "TF eager",
        "graph": "tf.function(reduce_retracing=True)",
        "xla": "tf.function(jit_compile=True, reduce_retracing=True)",
    }
