"""Statistics for the harness: pure functions on arrays and small dataclasses. No rendering.

Ratios are computed per round (base and candidate measured in the same round, in a random
order) and summarised by their geometric mean, with a 95% bootstrap confidence interval over
rounds. Pairing by round cancels slow drifts of the machine; the log scale makes a 2x speedup
and a 2x slowdown symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_TOLERANCE = 0.20  # the seed writes "~": +/-20% around a claimed ratio
CONFIDENCE = 0.95


class Verdict(str, Enum):
    HOLDS = "holds"
    REFUTED = "refuted"
    EXCEEDED = "exceeded"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval."""

    estimate: float
    low: float
    high: float
    n: int  # rounds behind it

    @property
    def half_width_rel(self) -> float:
        """Half the interval's width relative to the estimate (0.1 = +/-10%)."""
        return (self.high - self.low) / 2 / abs(self.estimate) if self.estimate else float("inf")


def geometric_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(np.mean(np.log(values), axis=axis))


def ratio_interval(
    base: np.ndarray, candidate: np.ndarray, *, higher_is_better: bool = True, seed: int = 0
) -> Interval:
    """Ratio of candidate over base, paired by round, as "times better".

    Args:
        base, candidate: one value per round, same length, paired by index.
        higher_is_better: True for throughput (ratio = candidate / base); False for times and
            memory read as "x faster/smaller" (ratio = base / candidate).
        seed: for the bootstrap's resampling, so a saved result re-renders identically.

    Returns:
        The geometric mean of per-round ratios with a 95% BCa bootstrap interval (percentile
        where BCa is undefined, e.g. all ratios equal). With one round the interval is the point.
    """
    base, candidate = np.asarray(base, float), np.asarray(candidate, float)
    if base.shape != candidate.shape or base.ndim != 1 or len(base) == 0:
        raise ValueError(
            f"base and candidate must be 1-D and paired, but got shapes {base.shape} and {candidate.shape}."
        )
    if np.any(base <= 0) or np.any(candidate <= 0):
        raise ValueError("ratios need positive values.")
    ratios = candidate / base if higher_is_better else base / candidate
    return interval_of(ratios, seed=seed)


def interval_of(ratios: np.ndarray, *, seed: int = 0) -> Interval:
    """Geometric mean of positive ratios with a 95% bootstrap interval over them."""
    ratios = np.asarray(ratios, float)
    estimate = float(geometric_mean(ratios))
    if len(ratios) < 2 or np.allclose(ratios, ratios[0]):
        return Interval(estimate, estimate, estimate, len(ratios))
    logs = np.log(ratios)
    for method in ("BCa", "percentile"):
        result = scipy_stats.bootstrap(
            (logs,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=4999,
            method=method,
            random_state=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return Interval(estimate, float(np.exp(low)), float(np.exp(high)), len(ratios))
    return Interval(estimate, float(ratios.min()), float(ratios.max()), len(ratios))


def product_interval(factors: list[np.ndarray], *, seed: int = 0) -> Interval:
    """Product of several per-round ratios (same rounds), e.g. V2 x V3 x V4, with its interval."""
    stacked = np.prod(np.vstack([np.asarray(f, float) for f in factors]), axis=0)
    return interval_of(stacked, seed=seed)


def verdict(measured: Interval, claimed: float, tolerance: float = DEFAULT_TOLERANCE) -> Verdict:
    """The verdict rule.

    The claim's band is ``claimed * (1 +/- tolerance)``. ``holds`` when the whole interval lies
    in the band; ``refuted`` when it lies wholly below; ``exceeded`` when wholly above;
    ``inconclusive`` when it straddles an edge of the band (too wide, or too close to say).
    """
    if not claimed > 0:
        raise ValueError(f"`claimed` must be positive, but got {claimed}.")
    if not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be in [0, 1), but got {tolerance}.")
    band_low, band_high = claimed * (1 - tolerance), claimed * (1 + tolerance)
    if measured.high < band_low:
        return Verdict.REFUTED
    if measured.low > band_high:
        return Verdict.EXCEEDED
    if band_low <= measured.low and measured.high <= band_high:
        return Verdict.HOLDS
    return Verdict.INCONCLUSIVE


def median(values: np.ndarray) -> float:
    return float(np.median(np.asarray(values, float)))
