"""Statistics for the harness: pure functions on arrays and small dataclasses. No rendering.

Ratios are computed per round (base and candidate measured in the same round, in a random
order) and summarised by their geometric mean, with a 95% Student-t interval on the log
ratios. Pairing by round cancels slow drifts of the machine; the log scale makes a 2x speedup
and a 2x slowdown symmetric. The harness runs 3-10 rounds, where a bootstrap interval
under-covers (72% at n = 3, 84% at n = 5, measured); the t-interval's coverage is checked at
those round counts by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

DEFAULT_TOLERANCE = 0.20  # the seed writes "~": a claim c holds within c/1.2 .. 1.2c
EQUIVALENCE_MARGIN = 0.10  # an "equal" claim holds within 1/1.1 .. 1.1
MIN_ROUNDS = 3  # fewer paired rounds give no verdict: a t-interval at n = 2 spans a decade
CONFIDENCE = 0.95
KINDS = ("ratio", "share", "exact", "projection")
# What a verdict may carry in brackets: "holds (exact)", a value judged without an interval;
# "projection (simulated)", a projection with a committed simulation behind it.
VERDICT_LABELS = ("exact", "simulated")


class Verdict(str, Enum):
    HOLDS = "holds"
    REFUTED = "refuted"
    REVERSED = "refuted (reversed)"
    EXCEEDED = "exceeded"
    INCONCLUSIVE = "inconclusive"
    PROJECTION = "projection"
    NOT_APPLICABLE = "not applicable"
    PENDING = "pending"
    NOT_MEASURED = "not measured"


def verdict_word(verdict: str) -> str:
    """The verdict without its label: "holds (exact)" -> "holds"."""
    for label in VERDICT_LABELS:
        verdict = verdict.removesuffix(f" ({label})")
    return verdict


# The verdicts that settle a claim: a sequential run stops once every claim it watches has one.
DECIDED = frozenset({Verdict.HOLDS, Verdict.EXCEEDED, Verdict.REFUTED, Verdict.REVERSED})


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval."""

    estimate: float
    low: float
    high: float
    n: int  # rounds (or trials, for a share) behind it

    @property
    def half_width_rel(self) -> float:
        """Half the interval's width relative to the estimate (0.1 = +/-10%)."""
        return (self.high - self.low) / 2 / abs(self.estimate) if self.estimate else float("inf")


def geometric_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(np.mean(np.log(values), axis=axis))


def paired_ratios(
    base: Mapping[int, float], candidate: Mapping[int, float], *, higher_is_better: bool = True
) -> dict[int, float]:
    """Per-round "times better" ratios of candidate over base, paired by round id.

    Rounds present on one side only (a failed worker) are dropped, never paired with another
    round. Raises ValueError on a non-positive value, which has no ratio.
    """
    rounds = sorted(set(base) & set(candidate))
    if any(base[r] <= 0 or candidate[r] <= 0 for r in rounds):
        raise ValueError("ratios need positive values.")
    return {r: (candidate[r] / base[r] if higher_is_better else base[r] / candidate[r]) for r in rounds}


def product_by_round(factors: list[Mapping[int, float]]) -> dict[int, float]:
    """The product of several per-round ratios over the rounds that all of them measured."""
    rounds = sorted(set.intersection(*(set(f) for f in factors))) if factors else []
    return {r: math.prod(f[r] for f in factors) for r in rounds}


def check_confidence(confidence: float) -> float:
    """``confidence`` itself, or ValueError unless it lies strictly between 0 and 1."""
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), but got {confidence!r}.")
    return confidence


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student-t multiplier: ``t(0.5 + confidence/2, df)``. Cached: scipy's ppf
    costs ~50 us a call, and a sequential simulation asks for the same few levels 10^4 times."""
    return float(scipy_stats.t.ppf(0.5 + check_confidence(confidence) / 2, df))


def rounds_interval(ratios: Mapping[Any, float], confidence: float = CONFIDENCE) -> Interval:
    """``interval_of`` over per-round ratios keyed by round (what ``paired_ratios`` returns)."""
    return interval_of(np.fromiter(ratios.values(), float, len(ratios)), confidence)


def interval_of(ratios: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Geometric mean of positive ratios with a Student-t interval on their logs.

    Args:
        ratios: one positive ratio per round.
        confidence: the interval's level; 0.95 for a fixed number of rounds. A sequential run
            passes its look's level (``Schedule.confidence``), a simultaneous verdict
            ``1 - alpha/m``.

    With one ratio there is no spread to estimate: the interval is the point, and ``n = 1``
    says so (the verdict rule gives no verdict below ``MIN_ROUNDS``).

    Raises:
        ValueError: an empty, non-1-D or non-positive array, or a level outside (0, 1).
    """
    check_confidence(confidence)
    ratios = np.asarray(ratios, float)
    # Python floats, not numpy reductions: on a few rounds each of those costs ~15 us, and the
    # sequential rule's coverage simulation judges 10^4-10^5 intervals.
    values = ratios.tolist() if ratios.ndim == 1 else []
    if not values or not all(0 < v < math.inf for v in values):
        raise ValueError(f"ratios must be a non-empty 1-D array of positive numbers, but got {ratios!r}.")
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean = math.fsum(logs) / n
    if n < 2:
        return Interval(math.exp(mean), math.exp(mean), math.exp(mean), n)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


def share_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """A share of trials with its Wilson interval at ``confidence`` (``n`` = trials)."""
    check_confidence(confidence)
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, but got {successes=} and {trials=}.")
    ci = scipy_stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(successes / trials, float(ci.low), float(ci.high), trials)


def claim_band(
    claimed: float, tolerance: float = DEFAULT_TOLERANCE, margin: float = EQUIVALENCE_MARGIN
) -> tuple[float, float]:
    """The values a claim allows: log-symmetric ``c/(1+tol) .. c(1+tol)``; for an "equal"
    claim (c = 1) the equivalence margin ``1/(1+margin) .. 1+margin``."""
    if not claimed > 0:
        raise ValueError(f"`claimed` must be positive, but got {claimed}.")
    if not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be in [0, 1), but got {tolerance}.")
    if not 0 < margin < 1:
        raise ValueError(f"`margin` must be in (0, 1), but got {margin}.")
    if claimed == 1.0:
        return 1 / (1 + margin), 1 + margin
    return claimed / (1 + tolerance), claimed * (1 + tolerance)


def verdict(
    measured: Interval,
    claimed: float,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    kind: str = "ratio",
    margin: float = EQUIVALENCE_MARGIN,
    min_rounds: int = MIN_ROUNDS,
) -> Verdict:
    """The verdict rule.

    - Evidence first: a ``ratio`` or ``share`` measured over fewer than ``min_rounds`` rounds
      is ``inconclusive``. An ``exact`` quantity (bytes, counts) is judged as the value it is;
      a ``projection`` (computed, not measured) gets its own word and no other verdict.
    - Direction (ratios and exact ratios): a claimed speed-up (c > 1) holds or is exceeded only
      if the whole interval lies above 1, and is ``refuted (reversed)`` when the whole interval
      lies below 1; mirrored for c < 1 ("NEU uses more"). Shares have no direction.
    - Band: ``holds`` when the whole interval lies in ``claim_band``; ``refuted`` when wholly
      below it, ``exceeded`` when wholly above (for c = 1, either side is ``refuted``: not equal);
      otherwise ``inconclusive``.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(KINDS)}, but got {kind!r}.")
    low_edge, high_edge = claim_band(claimed, tolerance, margin)
    if kind == "projection":
        return Verdict.PROJECTION
    if kind != "exact" and measured.n < min_rounds:
        return Verdict.INCONCLUSIVE
    if kind != "share" and claimed != 1.0:
        up = claimed > 1.0
        if (up and measured.high < 1.0) or (not up and measured.low > 1.0):
            return Verdict.REVERSED
        on_claimed_side = measured.low > 1.0 if up else measured.high < 1.0
    else:
        on_claimed_side = True
    if measured.high < low_edge:
        return Verdict.REFUTED
    if measured.low > high_edge:
        return Verdict.REFUTED if claimed == 1.0 and kind != "share" else Verdict.EXCEEDED
    if low_edge <= measured.low and measured.high <= high_edge and on_claimed_side:
        return Verdict.HOLDS
    return Verdict.INCONCLUSIVE


def verdict_reason(measured: Interval, claimed: float, verdict_: Verdict, *, kind: str = "ratio") -> str:
    """One clause saying why a verdict is what it is, where the table alone does not show it."""
    if verdict_ is Verdict.INCONCLUSIVE and kind != "exact" and measured.n < MIN_ROUNDS:
        what = "trials" if kind == "share" else "rounds"
        return f"n = {measured.n}: too few {what} (a verdict needs {MIN_ROUNDS})"
    if verdict_ is Verdict.REVERSED:
        return f"the effect goes the other way: the whole interval lies {'below' if claimed > 1 else 'above'} 1"
    if verdict_ is Verdict.INCONCLUSIVE:
        return "the interval straddles an edge of the claim's band" + (
            " or 1" if kind != "share" and claimed != 1.0 else ""
        )
    return ""


def trials_to_decide(share: float, claimed: float, tolerance: float = DEFAULT_TOLERANCE) -> int | None:
    """Trials needed (about) before a 95% interval around ``share`` clears the nearest edge of
    the claim's band, so the verdict is no longer inconclusive. None if the share sits on an edge."""
    low_edge, high_edge = claimed / (1 + tolerance), claimed * (1 + tolerance)
    distance = min(abs(share - low_edge), abs(share - high_edge))
    if distance == 0:
        return None
    z = float(scipy_stats.norm.ppf(0.5 + CONFIDENCE / 2))
    variance = max(share * (1 - share), 1e-9)
    return math.ceil(z * z * variance / distance**2)


def median(values: np.ndarray) -> float:
    return float(np.median(np.asarray(values, float)))


def detectable_loss(
    log_sd: float, n: int, floor: float, *, confidence: float = CONFIDENCE, power: float = 0.9
) -> float:
    """The smallest loss (1 - true ratio) a gate of ``n`` rounds catches with probability ``power``
    (computed, not measured): the rule fires when the ``confidence`` t-interval of the per-round
    ratios lies wholly below ``floor``, i.e. when ``(mean - log floor) / (s / sqrt n)`` falls
    below ``-t``; for normal log ratios of spread ``log_sd`` that statistic is noncentral t, and
    the loss is where its chance of falling there reaches ``power``. The run's own spread stands
    in for the true one, so the figure is as uncertain as that spread.

    Raises:
        ValueError: fewer than 2 rounds, a negative spread, a floor outside (0, 1] or a power outside (0, 1).
    """
    if n < 2 or not log_sd >= 0 or not 0 < floor <= 1 or not 0 < power < 1:
        raise ValueError(
            f"need n >= 2, log_sd >= 0, 0 < floor <= 1, 0 < power < 1, but got {n}, {log_sd}, {floor}, {power}."
        )
    if log_sd == 0:
        return 1 - floor
    from scipy.optimize import brentq

    t = t_quantile(confidence, n - 1)
    # P(T < -t) for T ~ nct(n - 1, ncp) rises as ncp falls; find the ncp where it equals power.
    ncp = brentq(lambda c: scipy_stats.nct.cdf(-t, n - 1, c) - power, -t - 60.0, 0.0)
    return 1 - floor * math.exp(ncp * log_sd / math.sqrt(n))


def run_detectable_loss(ratios: list[float], floor: float, *, power: float = 0.9) -> float | None:
    """``detectable_loss`` of one gate run from its per-round ratios (their log spread); None
    below 2 positive ratios, where there is no spread to speak of."""
    logs = [math.log(r) for r in ratios if r > 0]
    if len(logs) < 2:
        return None
    return detectable_loss(float(np.std(logs, ddof=1)), len(logs), floor, power=power)


def rate_interval(events: int, runs: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided Clopper-Pearson interval of a rate (``events`` of ``runs``)."""
    check_confidence(confidence)
    if not 0 <= events <= runs or runs < 1:
        raise ValueError(f"need 0 <= events <= runs and runs >= 1, but got {events=} and {runs=}.")
    ci = scipy_stats.binomtest(events, runs).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)
