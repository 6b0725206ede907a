"""Simulated data sets, cached on disk keyed by their configuration, and their normalisation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusion.detector import Detector, DetectorConfig, EventConfig, Events

CACHE_SCHEMA = 1
CHUNK = 512  # events simulated per call: bounds the (N, rings, PMTs) temporaries
# Charge features are log1p(q / this); 1 pe is log1p(q).
CHARGE_SCALE_PE = 1.0


def cache_dir() -> Path:
    """Where data sets are cached: $PMT_DIFFUSION_CACHE, else ~/.cache/pmt-diffusion."""
    return Path(os.environ.get("PMT_DIFFUSION_CACHE", Path.home() / ".cache" / "pmt-diffusion"))


def dataset_key(detector: DetectorConfig, events: EventConfig, n: int, seed: int) -> str:
    """A digest of everything that determines the data set's content."""
    spec = {
        "schema": CACHE_SCHEMA,
        "detector": dataclasses.asdict(detector),
        "events": dataclasses.asdict(events),
        "n": n,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(memoryview(np.ascontiguousarray(arrays[name])).cast("B"))  # no copy of the bytes
    return h.hexdigest()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in ``path``'s directory (so the rename is atomic), with the permissions an
    ordinary open() would give (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, tmp


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that a reader never sees a half-written file: temp file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def simulate(detector: DetectorConfig, events: EventConfig, n: int, seed: int) -> Events:
    """Simulate n events in chunks; the same arguments always give the same events."""
    det = Detector(detector)
    rng = np.random.default_rng(seed)
    chunks = [det.simulate(rng, min(CHUNK, n - start), events) for start in range(0, n, CHUNK)]
    return Events(**{f.name: np.concatenate([getattr(c, f.name) for c in chunks]) for f in dataclasses.fields(Events)})


def events_path(
    detector: DetectorConfig, events: EventConfig, n: int, seed: int, *, directory: Path | None = None
) -> Path:
    """The cache file of these simulated events (it may not exist yet)."""
    return (directory or cache_dir()) / f"events-{dataset_key(detector, events, n, seed)}.npz"


def load_events(
    detector: DetectorConfig, events: EventConfig, n: int, seed: int, *, directory: Path | None = None
) -> Events:
    """Simulated events from the cache, or simulated now and cached.

    A cache file whose key or checksum does not match (truncated, edited, another version) is
    not trusted: it is regenerated with a warning.
    """
    key = dataset_key(detector, events, n, seed)
    path = events_path(detector, events, n, seed, directory=directory)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            meta = json.loads(str(arrays.pop("__meta__")))
            if meta["key"] != key or meta["digest"] != arrays_digest(arrays):
                raise ValueError("key or checksum mismatch")
            return Events(**arrays)
        # TypeError: metadata that is no object, or arrays that are not Events' fields.
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(f"regenerating corrupt data-set cache {path}: {exc}", stacklevel=2)
    result = simulate(detector, events, n, seed)
    arrays = result.arrays()
    meta = json.dumps({"key": key, "digest": arrays_digest(arrays)})
    atomic_save_npz(path, {**arrays, "__meta__": np.array(meta)})
    return result


@dataclass(frozen=True)
class Normaliser:
    """Maps a hit pattern to model features and back: [standardised log1p(charge / scale),
    standardised time].

    Unhit PMTs get time feature 0; the charge feature says whether a PMT was hit.
    """

    charge_mean: float
    charge_std: float
    time_mean: float
    time_std: float
    hit_threshold: float = 0.5  # decoded charge below half a photoelectron counts as no hit
    # The data's range (``bounds``): the largest charge (pe) and the hit times (ns) of the
    # training set. The charge's lower bound is no light, 0 pe, whatever the set.
    charge_max: float = float("inf")
    time_min: float = float("-inf")
    time_max: float = float("inf")
    charge_scale_pe: float = CHARGE_SCALE_PE

    @classmethod
    def fit(cls, events: Events, *, charge_scale_pe: float = CHARGE_SCALE_PE) -> Normaliser:
        log_q = np.log1p(events.charge / charge_scale_pe)
        times = events.time[events.hit]
        return cls(
            charge_scale_pe=charge_scale_pe,
            charge_mean=float(log_q.mean()),
            charge_std=float(log_q.std() + 1e-6),
            time_mean=float(times.mean()),
            time_std=float(times.std() + 1e-6),
            charge_max=float(events.charge.max()),
            time_min=float(times.min()),
            time_max=float(times.max()),
        )

    def bounds(self, n_pmt: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature (low, high) of the data in feature units, (2 P,) each: charge from no
        light to the largest training charge, time over the training hits' times and the unhit 0."""
        q_low, q_high = (
            (self._log_charge(np.array([0.0, self.charge_max])) - self.charge_mean) / self.charge_std
        ).tolist()
        t_low, t_high = ((np.array([self.time_min, self.time_max]) - self.time_mean) / self.time_std).tolist()
        low = np.concatenate([np.full(n_pmt, q_low), np.full(n_pmt, min(t_low, 0.0))])
        high = np.concatenate([np.full(n_pmt, q_high), np.full(n_pmt, max(t_high, 0.0))])
        return low, high

    def encode(self, events: Events) -> np.ndarray:
        """Features (N, 2P), float32."""
        q = (self._log_charge(events.charge) - self.charge_mean) / self.charge_std
        t = np.where(events.hit, (events.time - self.time_mean) / self.time_std, 0.0)
        return np.concatenate([q, t], axis=1).astype(np.float32)

    def visible(self, events: Events) -> Events:
        """The events as decoding can show them: hits below ``hit_threshold`` removed. Generated
        events never have them, so simulated ones are scored after the same cut."""
        keep = events.charge >= self.hit_threshold
        return dataclasses.replace(
            events,
            charge=np.where(keep, events.charge, 0.0).astype(np.float32),
            time=np.where(keep, events.time, 0.0).astype(np.float32),
        )

    def _log_charge(self, charge: np.ndarray) -> np.ndarray:
        return np.log1p(charge / self.charge_scale_pe)

    def raw_charge(self, features: np.ndarray) -> np.ndarray:
        """Charge (N, P) in pe as the features say, before decoding clips it at 0: a model that
        puts a PMT below "no light" shows it here as a negative charge."""
        n_pmt = features.shape[1] // 2
        return self.charge_scale_pe * np.expm1(features[:, :n_pmt] * self.charge_std + self.charge_mean)

    def decode(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Charge and time (N, P) from features; charge and time are 0 where decoded as not hit."""
        n_pmt = features.shape[1] // 2
        q = np.maximum(self.raw_charge(features), 0.0)
        hit = q >= self.hit_threshold
        t = features[:, n_pmt:] * self.time_std + self.time_mean
        return np.where(hit, q, 0.0), np.where(hit, t, 0.0)
