"""Checkpoints as one .npz: model weights, optimizer variables, and JSON metadata with a checksum.

NumPy only, so that the CLI can check a checkpoint before TensorFlow loads, and the same file
restores on either backend. Writes are atomic (temp file, then rename): a kill mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.dataset import atomic_save_npz
from diffusion.errors import CheckpointError, ConfigError
from diffusion.paths import KNOB_BEFORE
from diffusion.presets import DIFFUSION_BEFORE
from diffusion.shapes import Record, check

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_SCHEMA = 1
# The seed preset's checkpoint (35M weights and Adam's two moments, float32) unpacks to about
# 0.4 GiB; ten times that is no checkpoint of ours but a file that would fill memory on load.
MAX_UNPACKED_BYTES = 4 * 2**30
# What resume, generate and verify read from the metadata (Trainer.checkpoint writes it). The
# digest proves the file is whole, not that its writer was ours: a hand-made one is checked too.
META = Record(
    {"global_step": int, "epoch": int, "path": dict, "preset": str, "model": dict, "seed": int},
    {"rng": Record({"seed": int, "next_epoch": int})},
)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def _digest(weights: list[np.ndarray], optimizer: list[np.ndarray], meta_text: str) -> str:
    h = hashlib.sha256(meta_text.encode())
    for array in (*weights, *optimizer):
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically; the digest covers every array and the metadata."""
    meta_text = json.dumps({**checkpoint.meta, "schema": CHECKPOINT_SCHEMA}, sort_keys=True)
    arrays = {f"w{i:04d}": w for i, w in enumerate(checkpoint.weights)}
    arrays |= {f"o{i:04d}": o for i, o in enumerate(checkpoint.optimizer)}
    arrays["__meta__"] = np.array(meta_text)
    arrays["__digest__"] = np.array(_digest(checkpoint.weights, checkpoint.optimizer, meta_text))
    atomic_save_npz(path, arrays)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint.

    Raises:
        CheckpointError: missing, unreadable, truncated, failing its checksum, or with
            metadata of the wrong shape (naming the field).
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}.")
    try:
        with zipfile.ZipFile(path) as archive:  # sizes from the directory, before anything is unpacked
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_UNPACKED_BYTES:
            raise CheckpointError(
                f"checkpoint {path} is corrupt (it unpacks to {unpacked / 2**30:.1f} GiB; ours stay under "
                f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB)."
            )
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta_text = str(arrays.pop("__meta__"))
        digest = str(arrays.pop("__digest__"))
        weights = [arrays[k] for k in sorted(arrays) if k.startswith("w")]
        optimizer = [arrays[k] for k in sorted(arrays) if k.startswith("o")]
        meta = json.loads(meta_text)
    except (OSError, ValueError, RecursionError, MemoryError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc}).") from None
    if digest != _digest(weights, optimizer, meta_text):
        raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch).")
    schema = meta.get("schema") if isinstance(meta, dict) else f"none (its metadata is a JSON {type(meta).__name__})"
    if schema != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"checkpoint {path} has schema {schema!r}; expected {CHECKPOINT_SCHEMA}.")
    try:
        check(meta, META, f"checkpoint {path}")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return Checkpoint(weights, optimizer, meta)


def check_identity(meta: dict[str, Any], mine: dict[str, Any], where: str = "checkpoint") -> None:
    """Refuse a checkpoint of another run: ``mine`` names the preset, model, path knobs and seed
    of this one. A checkpoint written before a knob existed had that knob's old value.

    Raises:
        CheckpointError: the first field that differs, with both values.
    """
    meta = dict(meta)
    if isinstance(meta.get("path"), dict):
        meta["path"] = {**KNOB_BEFORE, **meta["path"]}
    meta["diffusion"] = {**DIFFUSION_BEFORE, **(meta.get("diffusion") or {})}
    for key, value in mine.items():
        if meta.get(key) != value:
            raise CheckpointError(f"{where} has {key} {meta.get(key)!r}, but this run asks for {value!r}.")
