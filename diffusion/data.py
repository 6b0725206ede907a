"""Training batches and the fixed validation set.

A batch is ``(x_t, t, cond, noise)``: noised features, timestep (N, 1) float32, conditioning,
and the noise the model must predict. Two loaders make them, as the path's ``loader`` knob says:

- ``sync``: NumPy noising inside the training loop; the step waits for it (the seed's ALT).
- ``prefetch``: the same batches made ahead of the step. On TensorFlow a ``tf.data`` pipeline
  noises with TF ops in ``map`` and ``prefetch(AUTOTUNE)``; on other backends (JAX on a GPU
  machine without TensorFlow) a background thread feeds NumPy batches through a queue.

Both loaders draw the batch order from the same seeded permutation, so they see the same
events in the same order; only the noise draws differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusion.dataset import Normaliser, arrays_digest, cache_dir, current_umask, dataset_key, events_path, load_events
from diffusion.errors import ConfigError
from diffusion.presets import Preset
from diffusion.schedule import NoiseSchedule

Batch = tuple  # (x_t, t, cond, noise): NumPy arrays or backend tensors
VALIDATION_SEED_OFFSET = 1_000_003  # validation events and noise never share a seed with training
PREPARED_SCHEMA = 1
# The code that turns cached events into a preset's arrays. Its text is part of the prepared
# cache's key, so an edit of it never meets arrays that an older version prepared.
PREPARED_BY = ("data.py", "dataset.py", "detector.py", "schedule.py")
PREPARED_ARRAYS = ("train_x", "train_cond", "val_x_t", "val_t", "val_cond", "val_noise")


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Clean features and conditioning of the training events."""

    x: np.ndarray  # (N, F) float32
    cond: np.ndarray  # (N, C) float32

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class ValidationSet:
    """A fixed, pre-noised, ordered validation set: every path validates on a prefix of it."""

    x_t: np.ndarray
    t: np.ndarray
    cond: np.ndarray
    noise: np.ndarray

    def __len__(self) -> int:
        return len(self.x_t)

    def batches(self, n_batches: int, batch_size: int) -> Iterator[Batch]:
        """The first n_batches * batch_size samples, in order, in batches.

        Raises:
            ConfigError: the pass needs more samples than the set holds.
        """
        if n_batches * batch_size > len(self):
            raise ConfigError(
                f"a validation pass of {n_batches} x {batch_size} = {n_batches * batch_size} samples "
                f"needs more than the {len(self)} that this preset's validation set holds."
            )
        for b in range(n_batches):
            s = slice(b * batch_size, (b + 1) * batch_size)
            yield self.x_t[s], self.t[s], self.cond[s], self.noise[s]


@dataclass(frozen=True, eq=False)
class PreparedData:
    train: TrainingData
    validation: ValidationSet
    normaliser: Normaliser
    schedule: NoiseSchedule


def event_sets(preset: Preset) -> tuple[tuple[int, int], tuple[int, int]]:
    """(events, seed) of the preset's training and validation sets."""
    return (preset.n_train, preset.seed), (preset.n_val, preset.seed + VALIDATION_SEED_OFFSET)


def ensure_cached(preset: Preset) -> float:
    """Simulate and cache the preset's data sets that the cache lacks, and prepare them, as
    ``prepare`` would on first use; returns the seconds it took (about 0 when all was cached). A
    measurement calls it before its clock starts, so a fresh machine's first run does not spend
    its budget on simulating data."""
    start = time.perf_counter()
    for n, seed in event_sets(preset):
        if not events_path(preset.detector, preset.events, n, seed).exists():
            load_events(preset.detector, preset.events, n, seed)
    if not prepared_path(preset).is_dir():
        prepare(preset)
    return time.perf_counter() - start


def prepared_key(preset: Preset) -> str:
    """A digest of everything that determines ``prepare``'s arrays: the two data sets' keys,
    the preset's seed, radius and noise process, and the text of the code that prepares them."""
    code = hashlib.sha256()
    for name in PREPARED_BY:
        code.update((Path(__file__).parent / name).read_bytes())
    spec = {
        "schema": PREPARED_SCHEMA,
        "sets": [dataset_key(preset.detector, preset.events, n, seed) for n, seed in event_sets(preset)],
        "seed": preset.seed,
        "radius_m": preset.detector.radius_m,
        "diffusion": dataclasses.asdict(preset.diffusion),
        "code": code.hexdigest(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def prepared_path(preset: Preset) -> Path:
    """The cache directory of the preset's prepared arrays (it may not exist yet)."""
    return cache_dir() / f"prepared-{prepared_key(preset)}"


def prepare(preset: Preset) -> PreparedData:
    """The preset's normalised training and validation data: from the prepared cache, or made
    from the (cached or simulated) events and cached.

    Every worker of a round of turns prepares the same data; at seed, encoding and noising
    took ~5 of a worker's ~7 s of set-up, and 8 workers share 2 cores. The cache holds plain
    .npy files, mapped copy-on-write (``_load_prepared``).
    """
    schedule = NoiseSchedule.from_config(preset.diffusion)
    directory = prepared_path(preset)
    key = directory.name.removeprefix("prepared-")
    if (cached := _load_prepared(directory, key, schedule)) is not None:
        return cached
    data = _prepare(preset, schedule)
    try:
        _save_prepared(directory, key, data)
    except OSError as exc:  # a read-only cache costs time, not the run
        warnings.warn(f"prepared data not cached in {directory}: {exc}", stacklevel=2)
    return data


def _prepare(preset: Preset, schedule: NoiseSchedule) -> PreparedData:
    radius = preset.detector.radius_m
    (n_train, train_seed), (n_val, val_seed) = event_sets(preset)
    train_events = load_events(preset.detector, preset.events, n_train, train_seed)
    val_events = load_events(preset.detector, preset.events, n_val, val_seed)
    normaliser = Normaliser.fit(train_events)
    train = TrainingData(normaliser.encode(train_events), train_events.condition(radius))
    rng = np.random.default_rng([preset.seed, VALIDATION_SEED_OFFSET])
    x0 = normaliser.encode(val_events)
    t = rng.integers(0, schedule.timesteps, len(x0))
    noise = rng.standard_normal(x0.shape, dtype=np.float32)
    validation = ValidationSet(
        x_t=schedule.q_sample(x0, t, noise).astype(np.float32),
        t=t[:, None].astype(np.float32),
        cond=val_events.condition(radius),
        noise=noise,
    )
    return PreparedData(train, validation, normaliser, schedule)


def _prepared_arrays(data: PreparedData) -> dict[str, np.ndarray]:
    train, val = data.train, data.validation
    arrays = (train.x, train.cond, val.x_t, val.t, val.cond, val.noise)
    return dict(zip(PREPARED_ARRAYS, arrays, strict=True))


def _save_prepared(directory: Path, key: str, data: PreparedData) -> None:
    """Write the arrays and their key, checksum and normaliser into a temp directory beside
    ``directory``, then rename it: a reader sees the whole cache or none. When another process
    renamed its own first, that one stays (the same arrays)."""
    arrays = _prepared_arrays(data)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        meta = {"key": key, "digest": arrays_digest(arrays), "normaliser": dataclasses.asdict(data.normaliser)}
        files = {f"{name}.npy": array for name, array in arrays.items()} | {"meta.json": meta}
        for name, content in files.items():
            with open(tmp / name, "wb") as f:
                if isinstance(content, np.ndarray):
                    np.save(f, content, allow_pickle=False)
                else:
                    f.write(json.dumps(content).encode())
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_prepared(directory: Path, key: str, schedule: NoiseSchedule) -> PreparedData | None:
    """The cached prepared data, or None when there is none. A cache whose key or checksum does
    not match (truncated, edited) is not trusted: it is removed with a warning, to be made again.

    The arrays are mapped copy-on-write, not read into fresh memory: on these VMs a fresh page
    costs far more than a mapped one (457 MB at seed: 1.2-2.3 s read, mostly system time, 0.35 s
    mapped and checksummed), and a round's 8 workers then share one copy in the page cache. The
    checksum reads every page, so from set-up on a process's RSS holds them, as it held the
    arrays it made: no phase's RSS growth includes the data. A write to an array stays private.
    """
    if not directory.is_dir():
        return None
    try:
        meta = json.loads((directory / "meta.json").read_text())
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="c", allow_pickle=False).view(np.ndarray)
            for name in PREPARED_ARRAYS
        }
        if meta["key"] != key or meta["digest"] != arrays_digest(arrays):
            raise ValueError("key or checksum mismatch")
        normaliser = Normaliser(**meta["normaliser"])
    # TypeError: metadata that is no object, or a normaliser with other fields.
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        warnings.warn(f"preparing again: the prepared-data cache {directory} is unusable: {exc}", stacklevel=3)
        shutil.rmtree(directory, ignore_errors=True)
        return None
    train = TrainingData(arrays["train_x"], arrays["train_cond"])
    validation = ValidationSet(arrays["val_x_t"], arrays["val_t"], arrays["val_cond"], arrays["val_noise"])
    return PreparedData(train, validation, normaliser, schedule)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The batch order of one epoch; both loaders use it."""
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def sync_batches(
    data: TrainingData, schedule: NoiseSchedule, batch_size: int, seed: int, epoch: int
) -> Iterator[Batch]:
    """One epoch of batches, noised with NumPy as they are asked for. Drops the last partial batch."""
    order = epoch_permutation(seed, epoch, len(data))
    rng = np.random.default_rng([seed, epoch, 1])
    for b in range(len(data) // batch_size):
        idx = order[b * batch_size : (b + 1) * batch_size]
        x0 = data.x[idx]
        t = rng.integers(0, schedule.timesteps, batch_size)
        noise = rng.standard_normal(x0.shape, dtype=np.float32)
        yield schedule.q_sample(x0, t, noise), t[:, None].astype(np.float32), data.cond[idx], noise


def threaded_prefetch(batches: Iterator[Batch], depth: int = 4) -> Iterator[Batch]:
    """Run a batch iterator in a background thread, ``depth`` batches ahead of the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        buffer.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the consumer, not lost in the thread
            buffer.put(exc)
            return
        buffer.put(done)

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


class Loader:
    """Makes the training batches of each epoch, in the way the path's ``loader`` knob names.

    Attributes:
        implementation: what actually runs: ``numpy-sync``, ``tf.data`` or ``thread``; results
            record it so a reader knows which prefetch was measured.
    """

    def __init__(self, kind: str, data: TrainingData, schedule: NoiseSchedule, batch_size: int, seed: int) -> None:
        if batch_size > len(data):
            raise ConfigError(f"`batch_size` must be at most the {len(data)} training events, but got {batch_size}.")
        self.kind, self.data, self.schedule, self.batch_size, self.seed = kind, data, schedule, batch_size, seed
        self.steps_per_epoch = len(data) // batch_size
        if kind == "sync":
            self.implementation = "numpy-sync"
        elif _backend() == "tensorflow":
            self.implementation = "tf.data"
            self._tf = _TFPipeline(data, schedule, batch_size, seed)
        else:
            self.implementation = "thread"

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch, in a fixed order for (seed, epoch)."""
        return itertools.islice(self.stream(epoch), self.steps_per_epoch)

    def stream(self, start_epoch: int = 0) -> Iterator[Batch]:
        """Batches of all epochs from ``start_epoch`` on, without end.

        One pipeline spans the epochs: rebuilding a ``tf.data`` pipeline per epoch retraces its
        map function and restarts its prefetch, a stall at every epoch boundary.
        """
        if self.implementation == "tf.data":
            return self._tf.stream(start_epoch)
        batches = self._sync_stream(start_epoch)
        return batches if self.implementation == "numpy-sync" else threaded_prefetch(batches)

    def _sync_stream(self, start_epoch: int) -> Iterator[Batch]:
        for epoch in itertools.count(start_epoch):
            yield from sync_batches(self.data, self.schedule, self.batch_size, self.seed, epoch)


def _backend() -> str:
    import keras

    return keras.backend.backend()


class _TFPipeline:
    """``tf.data``: gather a batch by index, noise it with TF ops in ``map``, prefetch with AUTOTUNE."""

    def __init__(self, data: TrainingData, schedule: NoiseSchedule, batch_size: int, seed: int) -> None:
        import tensorflow as tf

        self.tf = tf
        self.x = tf.constant(data.x)
        self.cond = tf.constant(data.cond)
        self.sqrt_ab = tf.constant(np.sqrt(schedule.alpha_bar), tf.float32)
        self.sqrt_1m_ab = tf.constant(np.sqrt(1.0 - schedule.alpha_bar), tf.float32)
        self.timesteps, self.batch_size, self.seed, self.n = schedule.timesteps, batch_size, seed, len(data)

    def stream(self, start_epoch: int) -> Iterator[Batch]:
        tf = self.tf
        steps = self.n // self.batch_size

        def epoch_index(epoch: tf.Tensor) -> tf.data.Dataset:
            # The same NumPy permutation as the sync loader, so both see the same events in order.
            order = tf.numpy_function(
                lambda e: epoch_permutation(self.seed, int(e), self.n)[: steps * self.batch_size].astype(np.int64),
                [epoch],
                tf.int64,
                stateful=False,
            )
            index = tf.reshape(order, [steps, self.batch_size])
            keys = tf.stack([tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64)], axis=1)
            return tf.data.Dataset.from_tensor_slices((keys, index))

        def noise(key: tf.Tensor, idx: tf.Tensor) -> Batch:
            # Stateless ops seeded by (seed, epoch, step): reproducible whatever the map's parallelism.
            seed = tf.stack([tf.constant(self.seed, tf.int64) * 1_000_003 + key[0], key[1]])
            x0 = tf.gather(self.x, idx)
            t = tf.random.stateless_uniform([self.batch_size], seed, 0, self.timesteps, dtype=tf.int64)
            eps = tf.random.stateless_normal(tf.shape(x0), seed + 1, dtype=tf.float32)
            a = tf.gather(self.sqrt_ab, t)[:, None]
            s = tf.gather(self.sqrt_1m_ab, t)[:, None]
            return a * x0 + s * eps, tf.cast(t, tf.float32)[:, None], tf.gather(self.cond, idx), eps

        ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_index)
        ds = ds.map(noise, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return iter(ds.prefetch(tf.data.AUTOTUNE))
