"""The analytic memory and checkpoint footprint of a model, from its layer shapes.

Pure arithmetic on shapes and counts: what a training or validation phase must hold at the
least, to set beside what the sampler measured. Parameters, gradients and Adam's two moments
are one value per trainable weight each; activations are every layer's output per sample,
which training keeps for the backward pass. Everything a framework adds (per-op temporaries,
workspaces, traced-graph caches, allocator slack) is outside the estimate, on purpose: the
gap between measured and analytic is the framework's share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIB = 2**20
FLOAT32_BYTES = 4
ADAM_MOMENTS = 2  # Adam keeps a first and a second moment per weight


@dataclass(frozen=True)
class LayerShape:
    """One operation of a model, as the footprint sees it.

    Attributes:
        name: the operation's name.
        output_values: values of its output(s) per sample.
        params: trainable values it owns.
    """

    name: str
    output_values: int
    params: int = 0


@dataclass(frozen=True)
class Footprint:
    """Bytes a model needs, by part.

    Attributes:
        params: trainable values.
        activations_per_sample: values of all layer outputs for one sample (inputs included:
            the first layers' weight gradients need them).
        bytes_per_value: 4 for float32.
    """

    params: int
    activations_per_sample: int
    bytes_per_value: int = FLOAT32_BYTES

    @property
    def parameter_bytes(self) -> int:
        return self.params * self.bytes_per_value

    @property
    def gradient_bytes(self) -> int:
        return self.params * self.bytes_per_value

    @property
    def optimizer_bytes(self) -> int:
        return ADAM_MOMENTS * self.params * self.bytes_per_value

    def activation_bytes(self, batch: int) -> int:
        return batch * self.activations_per_sample * self.bytes_per_value

    def train_total_bytes(self, batch: int) -> int:
        """Everything a training step holds at its peak: weights, gradients, Adam, activations."""
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes(batch)

    def train_growth_bytes(self, batch: int) -> int:
        """What a training phase adds above its start: gradients and activations. Weights and
        Adam's moments exist before it (the trainer builds the optimizer at setup)."""
        return self.gradient_bytes + self.activation_bytes(batch)

    def validate_growth_bytes(self, batch: int) -> int:
        """What a validation pass adds: the forward activations of one batch, no gradients."""
        return self.activation_bytes(batch)

    def growth_bytes(self, phase: str, batch: int) -> int:
        """The analytic growth of ``phase`` ("train" or "validate") at ``batch``.

        Raises:
            ValueError: an unknown phase.
        """
        if phase == "train":
            return self.train_growth_bytes(batch)
        if phase == "validate":
            return self.validate_growth_bytes(batch)
        raise ValueError(f"`phase` must be train or validate, but got {phase!r}.")

    @property
    def checkpoint_bytes(self) -> int:
        """A checkpoint's arrays: weights and Adam's moments (scalars such as the step count aside)."""
        return self.parameter_bytes + self.optimizer_bytes

    def parts_mib(self, phase: str, batch: int) -> dict[str, float]:
        """The estimate's parts in MiB, for a record or a table row."""
        return {
            "params_mib": self.parameter_bytes / MIB,
            "gradients_mib": self.gradient_bytes / MIB,
            "adam_mib": self.optimizer_bytes / MIB,
            "activations_mib": self.activation_bytes(batch) / MIB,
            "growth_mib": self.growth_bytes(phase, batch) / MIB,
            "total_mib": (
                self.train_total_bytes(batch)
                if phase == "train"
                else self.parameter_bytes + self.activation_bytes(batch)
            )
            / MIB,
        }

    def record(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "activations_per_sample": self.activations_per_sample,
            "bytes_per_value": self.bytes_per_value,
            "parameter_bytes": self.parameter_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "checkpoint_bytes": self.checkpoint_bytes,
        }


def footprint(layers: Iterable[LayerShape], *, bytes_per_value: int = FLOAT32_BYTES) -> Footprint:
    """Sum parameters and per-sample activations over a model's operations."""
    layers = list(layers)
    return Footprint(
        params=sum(layer.params for layer in layers),
        activations_per_sample=sum(layer.output_values for layer in layers),
        bytes_per_value=bytes_per_value,
    )


def layer_shapes(model: Any) -> list[LayerShape]:
    """Read a built Keras functional model's operations (layers and ops such as ``x * y``).

    Only attributes are read (``operations``, ``output.shape``, ``trainable_weights``), so this
    module imports no framework.
    """
    shapes = []
    for op in model.operations:
        outputs = op.output if isinstance(op.output, list | tuple) else [op.output]
        values = sum(math.prod(d for d in tensor.shape[1:]) for tensor in outputs)
        params = sum(math.prod(w.shape) for w in getattr(op, "trainable_weights", []))
        shapes.append(LayerShape(op.name, int(values), int(params)))
    return shapes
