"""Count Cherenkov rings in PMT hit patterns: a Hough transform on the sphere of track directions.

The vertex is known (it is part of an event's conditioning), so each hit PMT is a direction seen
from the vertex. A track with direction d lights PMTs near the Cherenkov angle from d, so each hit
votes, weighted by its charge, for every candidate direction on a fixed grid that lies near the
Cherenkov angle from it. The highest vote is the first ring; the hits on that ring's cone are then
taken out and the votes summed again for the next ring, which counts if its peak is at least a
set fraction of the first. Used to score generated events: the share whose counted rings equal
the conditioning's multiplicity, next to the same share for simulated events (the ceiling).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from diffusion.cli import SEED, Parser, bounded, check_writable_file, run
from diffusion.dataset import simulate
from diffusion.detector import MAX_RINGS, Detector, fibonacci_sphere
from diffusion.environment import cpu_model, environment
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.presets import get_preset

SCHEMA = "pmt-bench/rings/1"
CHARGE_WEIGHTS: tuple[str, ...] = ("hit", "log1p", "sqrt", "linear")
KERNEL_TABLE = 8192  # kernel tabulated in cos(angle): 0.03 deg steps at the Cherenkov angle, no arccos per vote
CHUNK_ELEMENTS = 1 << 23  # votes (events x hits x grid) held at once: ~32 MB in float32


@dataclass(frozen=True)
class RingCounterConfig:
    """Knobs of the ring counter.

    Tuned by grid search (charge weight, kernel 4-20 deg, band 10-20 deg, grid 512/1024, threshold
    0.02-0.60) on simulated events of seed 101 (3000 `tiny`, 1500 `small`); never on a reported set.
    One setting holds for both detectors: at the shared threshold 0.11 `small` is within 0.4 points
    of its own best (0.999 at 0.07-0.10) and `tiny` within 0.1 (0.863 at 0.12).
    """

    grid_points: int = 1024  # candidate directions (Fibonacci sphere), ~6 deg apart; 512 loses ~1 point on tiny
    kernel_width_deg: float = 10.0  # Gaussian sigma in angle: ring width 5 deg plus PMT spacing (7 deg small, 21 tiny)
    cherenkov_angle_deg: float = 41.5  # as in DetectorConfig: cos = 1 / (n beta), n = 1.33
    # Charge as it is, measured best on both detectors (small, kernel 8, band 10: linear 0.98, sqrt 0.97,
    # log1p 0.95, hit 0.74; tiny at its best: 0.86, 0.84, 0.84, 0.62): the peak ratio then follows the
    # rings' energy ratio, and little charge is left once a ring's band is removed.
    charge_weight: str = "linear"
    band_deg: float = 15.0  # hits this near a found cone are its own: 12 leaves its tails, 18 eats crossing rings
    relative_threshold: float = 0.11  # a further ring counts if its peak is at least this share of the first's
    max_rings: int = MAX_RINGS

    def __post_init__(self) -> None:
        if self.grid_points < 12:
            raise ConfigError(f"`grid_points` must be at least 12, but got {self.grid_points}.")
        for name in ("kernel_width_deg", "band_deg"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"`{name}` must be positive, but got {getattr(self, name)}.")
        if not 0 < self.cherenkov_angle_deg < 90:
            raise ConfigError(f"`cherenkov_angle_deg` must be in (0, 90), but got {self.cherenkov_angle_deg}.")
        if self.charge_weight not in CHARGE_WEIGHTS:
            raise ConfigError(
                f"`charge_weight` must be one of {', '.join(CHARGE_WEIGHTS)}, but got {self.charge_weight!r}."
            )
        if not 0 < self.relative_threshold <= 1:
            raise ConfigError(f"`relative_threshold` must be in (0, 1], but got {self.relative_threshold}.")
        if not 1 <= self.max_rings <= MAX_RINGS:
            raise ConfigError(f"`max_rings` must be in 1..{MAX_RINGS}, but got {self.max_rings}.")


@dataclass(frozen=True, eq=False)
class RingFit:
    """What the ring search found, per event.

    Attributes:
        directions: (N, max_rings, 3) peak direction (a grid point) of each search, strongest first.
        peaks: (N, max_rings) accumulator maximum of each search; 0 where no hits were left.
        count: (N,) rings counted, 1..max_rings.
    """

    directions: np.ndarray
    peaks: np.ndarray
    count: np.ndarray


def charge_weights(charge: np.ndarray, how: str) -> np.ndarray:
    """Vote weight per PMT (same shape as ``charge``), 0 where not hit.

    Raises:
        ConfigError: ``how`` is not one of CHARGE_WEIGHTS.
    """
    q = np.clip(np.asarray(charge, dtype=np.float32), 0.0, None)
    if how == "hit":
        return (q > 0).astype(np.float32)
    if how == "log1p":
        return np.log1p(q)
    if how == "sqrt":
        return np.sqrt(q)
    if how == "linear":
        return q
    raise ConfigError(f"`charge_weight` must be one of {', '.join(CHARGE_WEIGHTS)}, but got {how!r}.")


def _kernel_table(config: RingCounterConfig) -> np.ndarray:
    cos = np.linspace(-1.0, 1.0, KERNEL_TABLE)
    angle = np.arccos(cos)
    offset = (angle - np.radians(config.cherenkov_angle_deg)) / np.radians(config.kernel_width_deg)
    return np.exp(-0.5 * offset**2).astype(np.float32)


def _kernel(table: np.ndarray, unit: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Kernel of every (event, hit, grid direction) triple, (n, H, G) float32."""
    n, hits = unit.shape[:2]
    # One (n H, 3) x (3, G) product: a batched (H, 3) x (3, G) matmul is ~15x slower for K = 3.
    index = (unit.reshape(-1, 3) @ grid.T).reshape(n, hits, len(grid))
    index += 1.0
    index *= 0.5 * (KERNEL_TABLE - 1)
    index += 0.5  # rounds on the truncating cast below
    return table.take(np.clip(index, 0, KERNEL_TABLE - 1, out=index).astype(np.int32))


def _votes(weight: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.matmul(weight[:, None, :], kernel)[:, 0]


def _check_shapes(charge: np.ndarray, positions: np.ndarray, vertex: np.ndarray) -> None:
    if charge.ndim != 2 or positions.shape != (charge.shape[1], 3) or vertex.shape != (charge.shape[0], 3):
        raise ConfigError(
            "`charge`, `positions` and `vertex` must have shapes (N, P), (P, 3) and (N, 3), but got "
            f"{charge.shape}, {positions.shape} and {vertex.shape}."
        )
    for name, array in (("charge", charge), ("positions", positions), ("vertex", vertex)):
        if not np.isfinite(array).all():
            raise ConfigError(
                f"`{name}` must be finite, but got {np.size(array) - np.isfinite(array).sum()} NaN/inf values."
            )


def _hits(charge: np.ndarray, positions: np.ndarray, vertex: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors vertex -> hit PMT (n, H, 3) and weights (n, H), padded with weight 0 to the most hits."""
    weight = charge_weights(charge, how)
    most = max(1, int((weight > 0).sum(axis=1).max(initial=0)))
    # Hits first in each row; a stable sort keeps PMT order, so the result does not depend on ties.
    order = np.argsort(weight <= 0, axis=1, kind="stable")[:, :most]
    offset = positions[order] - vertex[:, None, :]
    unit = offset / np.maximum(np.linalg.norm(offset, axis=2, keepdims=True), 1e-9)
    return unit.astype(np.float32), np.take_along_axis(weight, order, axis=1)


def _chunks(charge: np.ndarray, grid_points: int) -> list[np.ndarray]:
    """Event indices in chunks of similar hit count, so that padding to a chunk's most hits costs little."""
    hits = np.maximum((charge > 0).sum(axis=1), 1)
    order = np.argsort(hits, kind="stable")
    chunks, start = [], 0
    while start < len(order):
        # Sorted, so a chunk's last event has its most hits and what fits the budget is a leading run.
        fits = np.arange(1, len(order) - start + 1) * hits[order[start:]] * grid_points <= CHUNK_ELEMENTS
        size = max(1, int(fits.sum()))
        chunks.append(order[start : start + size])
        start += size
    return chunks


def hough_map(
    charge: np.ndarray, positions: np.ndarray, vertex: np.ndarray, config: RingCounterConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Votes of all hits for each candidate track direction (the first search's accumulator).

    Args:
        charge: (N, P) charge per PMT, 0 where not hit.
        positions: (P, 3) PMT positions, in the same unit as ``vertex`` (``Detector(cfg).positions``, m).
        vertex: (N, 3) event vertices (for conditioning vectors: the vertex part times the detector radius).
        config: counter knobs; None for the defaults (tuned for both `tiny` and `small`).

    Returns:
        The grid of candidate directions (G, 3) and the accumulator (N, G).

    Raises:
        ConfigError: the shapes do not fit together, or a value is NaN or infinite.
    """
    charge, positions, vertex = (np.asarray(a, dtype=np.float64) for a in (charge, positions, vertex))
    _check_shapes(charge, positions, vertex)
    config = config or RingCounterConfig()
    grid = fibonacci_sphere(config.grid_points).astype(np.float32)
    table = _kernel_table(config)
    out = np.zeros((len(charge), len(grid)), dtype=np.float32)
    for part in _chunks(charge, len(grid)):
        unit, weight = _hits(charge[part], positions, vertex[part], config.charge_weight)
        out[part] = _votes(weight, _kernel(table, unit, grid))
    return grid, out


def find_rings(
    charge: np.ndarray, positions: np.ndarray, vertex: np.ndarray, config: RingCounterConfig | None = None
) -> RingFit:
    """Search for up to ``config.max_rings`` rings per event: peak, remove that ring's hits, repeat.

    Args and Raises: as ``hough_map``.

    Returns:
        The peak directions and heights of every search and the ring count per event.
    """
    charge, positions, vertex = (np.asarray(a, dtype=np.float64) for a in (charge, positions, vertex))
    _check_shapes(charge, positions, vertex)
    config = config or RingCounterConfig()
    grid = fibonacci_sphere(config.grid_points).astype(np.float32)
    table = _kernel_table(config)
    cherenkov, half_band = np.radians(config.cherenkov_angle_deg), np.radians(config.band_deg)
    n = len(charge)
    directions = np.zeros((n, config.max_rings, 3), dtype=np.float32)
    peaks = np.zeros((n, config.max_rings), dtype=np.float32)
    for part in _chunks(charge, len(grid)):
        unit, weight = _hits(charge[part], positions, vertex[part], config.charge_weight)
        # The kernel of every hit-direction pair is computed once; each search only re-weights it.
        kernel = _kernel(table, unit, grid)
        rows = np.arange(len(unit))
        for ring in range(config.max_rings):
            votes = _votes(weight, kernel)
            best = votes.argmax(axis=1)
            peaks[part, ring] = votes[rows, best]
            directions[part, ring] = grid[best]
            angle = np.arccos(np.clip(np.einsum("nhd,nd->nh", unit, grid[best]), -1.0, 1.0))
            weight = np.where(np.abs(angle - cherenkov) <= half_band, 0.0, weight)
    return RingFit(directions=directions, peaks=peaks, count=count_from_peaks(peaks, config.relative_threshold))


def count_from_peaks(peaks: np.ndarray, relative_threshold: float) -> np.ndarray:
    """Rings counted from the peak heights of successive searches (N, K): the first always, each
    further one while its peak is at least ``relative_threshold`` of the first's."""
    first = np.maximum(peaks[:, :1], 1e-12)
    passed = peaks[:, 1:] >= relative_threshold * first
    # A ring counts only if every earlier search also found one: cumprod stops at the first miss.
    return (1 + np.cumprod(passed, axis=1).sum(axis=1)).astype(np.int64)


def count_rings(
    charge: np.ndarray, positions: np.ndarray, vertex: np.ndarray, config: RingCounterConfig | None = None
) -> np.ndarray:
    """Rings counted per event, 1..``config.max_rings``; arguments as ``hough_map``."""
    return find_rings(charge, positions, vertex, config).count


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, max_rings: int = MAX_RINGS) -> np.ndarray:
    """Event counts (max_rings, max_rings): rows the true multiplicity, columns the counted rings.

    Raises:
        ConfigError: the arrays differ in length or hold values outside 1..max_rings.
    """
    true, predicted = np.asarray(true).astype(np.int64).ravel(), np.asarray(predicted).astype(np.int64).ravel()
    if true.shape != predicted.shape:
        raise ConfigError(
            f"`true` and `predicted` must have the same length, but got {len(true)} and {len(predicted)}."
        )
    for name, values in (("true", true), ("predicted", predicted)):
        if values.size and (values.min() < 1 or values.max() > max_rings):
            raise ConfigError(
                f"`{name}` must hold ring counts in 1..{max_rings}, but got {values.min()}..{values.max()}."
            )
    matrix = np.zeros((max_rings, max_rings), dtype=np.int64)
    np.add.at(matrix, (true - 1, predicted - 1), 1)
    return matrix


def success_rate(true: np.ndarray, predicted: np.ndarray) -> float:
    """Share of events whose counted rings equal the true multiplicity (NaN for no events).

    Raises:
        ConfigError: the arrays differ in length.
    """
    true, predicted = np.asarray(true).ravel(), np.asarray(predicted).ravel()
    if true.shape != predicted.shape:
        raise ConfigError(
            f"`true` and `predicted` must have the same length, but got {len(true)} and {len(predicted)}."
        )
    return float(np.mean(true == predicted)) if true.size else float("nan")


def format_matrix(matrix: np.ndarray) -> str:
    """The confusion matrix as plain text, with each true multiplicity's success rate."""
    k = len(matrix)
    lines = ["true \\ counted " + " ".join(f"{c:>6d}" for c in range(1, k + 1)) + "   events  success"]
    for row in range(k):
        total = int(matrix[row].sum())
        share = f"{matrix[row, row] / total:8.3f}" if total else "       -"
        lines.append(f"{row + 1:>14d} " + " ".join(f"{v:>6d}" for v in matrix[row]) + f"   {total:>6d} {share}")
    return "\n".join(lines)


# --events stops at a million: at the small preset (768 PMTs) that is already 3 GB per float32 per-PMT array.
def build_parser() -> Parser:
    parser = Parser(prog="python -m diffusion.rings", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="detector and event config to simulate (default: small)")
    parser.add_argument(
        "--events", type=bounded(int, low=1, high=1_000_000), default=2000, help="events to simulate (default: 2000)"
    )
    parser.add_argument("--seed", type=SEED, default=11, help="simulation seed; not 101, the tuning set (default: 11)")
    parser.add_argument("--json", type=Path, default=None, help="write the record here (atomically)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Simulate a preset's events, count their rings, print the confusion matrix, optionally save a record."""
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset)
    if args.json is not None:
        check_writable_file(args.json, "--json")
    config = RingCounterConfig()

    start = time.perf_counter()
    events = simulate(preset.detector, preset.events, args.events, args.seed)
    simulated = time.perf_counter()
    counted = count_rings(events.charge, Detector(preset.detector).positions, events.vertex, config)
    count_s, wall_s = time.perf_counter() - simulated, time.perf_counter() - start

    matrix = confusion_matrix(events.multiplicity, counted, config.max_rings)
    totals = matrix.sum(axis=1)
    rate = success_rate(events.multiplicity, counted)
    print(f"{preset.name}: {args.events} events, seed {args.seed}, {preset.detector.n_pmt} PMTs")
    print(format_matrix(matrix))
    print(f"success rate {rate:.4f}; counting {count_s / args.events * 1000:.2f} s per 1000 events")
    if args.json is not None:
        record = {
            "schema": SCHEMA,
            "preset": preset.name,
            "n_pmt": preset.detector.n_pmt,
            "events": args.events,
            "seed": args.seed,
            "config": dataclasses.asdict(config),
            "matrix": matrix,
            "success_rate": rate,
            "success_by_multiplicity": {
                str(m + 1): (float(matrix[m, m] / totals[m]) if totals[m] else None) for m in range(len(matrix))
            },
            "events_by_multiplicity": {str(m + 1): int(totals[m]) for m in range(len(matrix))},
            "wall_seconds": round(wall_s, 3),
            "count_seconds": round(count_s, 3),
            "count_seconds_per_1000_events": round(count_s / args.events * 1000, 3),
            "machine": cpu_model(),
            "environment": environment(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json_atomic(args.json, record)
    return 0


if __name__ == "__main__":
    run(main)
