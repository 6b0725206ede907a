"""How often a claim's verdict should repeat, computed from a repeat record (pure; no rendering).

A verdict flips between runs when a claim's ratio lies near an edge of its band (or near 1):
whether a run's interval clears that edge is then a matter of the run's luck, whatever the code
does. This module says how much luck: from the runs together it estimates

- ``mu``: the claim's log ratio (the mean of the runs' log estimates);
- ``round_sd``: the spread of one round's log ratio within a run, pooled over the runs (from
  each run's per-round ratios, or, in records made before runs kept them, backed out of the
  run's t-interval at its confidence);
- ``run_sd``: the extra spread of a whole run's estimate beyond ``round_sd / sqrt(n)``: drift
  between runs that no run's interval sees (zero when the runs agree as well as their rounds
  predict);

and then simulates runs of ``n`` rounds under that normal model: a run's log estimate
``~ N(mu, round_sd^2 / n + run_sd^2)``, its sample sd ``round_sd * sqrt(chi2(n - 1) / (n - 1))``
(independent of the mean, as for normal rounds), its interval the Student-t interval that
``bench.stats.interval_of`` builds, judged by ``bench.stats.verdict``. The chances "at n" are
for a run like the record's: at the rounds and level of each of its runs, in their shares
(a sequential run's rounds and level depend on where its budget stopped it). That is right
for runs stopped by the budget or the maximum, whose rounds depend on durations; a run stopped
because every claim was decided at an early look decided them for sure, and the mix, taking
it as a fixed-n run at its rounds and level, understates such runs' decided chances (the
table says how many runs stopped so).

Each figure is computed, not measured, and as uncertain as the estimates behind it, which the
simulation takes as true (a plug-in): from 10 runs, ``run_sd`` has 9 degrees of freedom, and a
value below ~0.7 ``round_sd / sqrt(n)`` is indistinguishable from none (it is truncated at 0, so
it is biased up when there is no drift). "Rounds to repeat" is for fixed-n runs at 95%; the
speed suite's sequential rule spends its alpha over several looks once a budget holds 8 rounds
or more, so it needs at least as many.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from bench.stats import CONFIDENCE, DECIDED, Interval, Verdict, t_quantile, verdict

DRAWS = 4000  # simulated runs per (claim, n): the chance of a verdict to about +/-0.008
ROUNDS_TRIED = (4, 5, 6, 7, 8, 10, 12, 16, 20, 24, 32, 48, 64)  # where "rounds to repeat" looks
REPEAT_CHANCE = 0.9  # a claim "repeats" when >= 9 of 10 runs agree with this chance or more


@dataclass(frozen=True)
class RunRow:
    """One run's figures for one claim, as a repeat record keeps them."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    per_round: tuple[float, ...] = ()

    def log_sd(self) -> float | None:
        """This run's sd of a round's log ratio: from its rounds, else from its interval."""
        if len(self.per_round) >= 2:
            return float(np.std(np.log(self.per_round), ddof=1))
        if self.n < 2 or not self.low > 0:
            return None
        half = (math.log(self.high) - math.log(self.low)) / 2
        return half * math.sqrt(self.n) / t_quantile(self.confidence, self.n - 1)


@dataclass(frozen=True)
class Spread:
    """A claim's estimated log ratio and spreads over a record's runs."""

    mu: float
    round_sd: float
    run_sd: float
    runs: int
    n: int  # the runs' median rounds
    confidence: float = CONFIDENCE  # the runs' most common level
    # Each (rounds, level) the runs were judged at, with its share of the runs, most common
    # first: a sequential run stops at a look, or between looks at the next one's level, so
    # runs of one record differ in both. Empty: every run at ``n`` and ``confidence``.
    mix: tuple[tuple[int, float, float], ...] = ()


def spread(rows: Sequence[RunRow]) -> Spread | None:
    """``mu``, the pooled ``round_sd`` and the run-level ``run_sd`` of one claim (module
    docstring); None with fewer than 2 runs or no run with a spread."""
    sds = [(row.n, sd) for row in rows if (sd := row.log_sd()) is not None]
    if len(rows) < 2 or not sds:
        return None
    logs = np.log([row.estimate for row in rows])
    dof = sum(n - 1 for n, _ in sds)
    round_sd = math.sqrt(sum((n - 1) * sd * sd for n, sd in sds) / dof)
    expected = float(np.mean([round_sd**2 / row.n for row in rows]))
    run_sd = math.sqrt(max(0.0, float(np.var(logs, ddof=1)) - expected))
    level = Counter(row.confidence for row in rows).most_common(1)[0][0]
    mix = tuple((n, c, k / len(rows)) for (n, c), k in Counter((row.n, row.confidence) for row in rows).most_common())
    n = int(np.median([row.n for row in rows]))
    return Spread(float(np.mean(logs)), round_sd, run_sd, len(rows), n, level, mix)


def verdict_chances(
    s: Spread,
    n: int,
    claimed: float,
    tolerance: float,
    margin: float,
    *,
    confidence: float = CONFIDENCE,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[str, float]:
    """The simulated share of runs of ``n`` rounds that give each verdict (seeded), most likely
    first, for a ratio claim of ``claimed`` with its band's ``tolerance`` and ``margin``.

    Raises:
        ValueError: ``n`` below 2 (a run of one round has no interval) or ``draws`` below 1.
    """
    if n < 2 or draws < 1:
        raise ValueError(f"`n` must be at least 2 and `draws` at least 1, but got {n=} and {draws=}.")
    rng = np.random.default_rng(seed)
    means = rng.normal(s.mu, math.sqrt(s.round_sd**2 / n + s.run_sd**2), draws)
    sds = s.round_sd * np.sqrt(rng.chisquare(n - 1, draws) / (n - 1))
    halves = t_quantile(confidence, n - 1) * sds / math.sqrt(n)
    counts = Counter(
        verdict(Interval(math.exp(m), math.exp(m - h), math.exp(m + h), n), claimed, tolerance, margin=margin).value
        for m, h in zip(means.tolist(), halves.tolist(), strict=True)
    )
    return {word: k / draws for word, k in counts.most_common()}


def mixed_chances(
    s: Spread, claimed: float, tolerance: float, margin: float, *, draws: int = DRAWS, seed: int = 0
) -> dict[str, float]:
    """The verdict chances of a run like one of the record's, at its rounds and level with the
    share of the runs that had them (``Spread.mix``), most likely first; a run of one round
    gives no interval and counts as inconclusive."""
    total: Counter[str] = Counter()
    for n, level, share in s.mix or ((s.n, s.confidence, 1.0),):
        if n < 2:
            total[Verdict.INCONCLUSIVE.value] += share
            continue
        chances = verdict_chances(s, n, claimed, tolerance, margin, confidence=level, draws=draws, seed=seed)
        for word, p in chances.items():
            total[word] += share * p
    return dict(total.most_common())


def agree_chance(p: float, runs: int = 10, share: float = REPEAT_CHANCE) -> float:
    """The chance that at least ``ceil(share * runs)`` of ``runs`` runs give a verdict that each
    gives with chance ``p`` (binomial)."""
    need = math.ceil(share * runs)
    return float(scipy_stats.binom.sf(need - 1, runs, p))


@dataclass(frozen=True)
class Forecast:
    """What the spreads say of one claim (every figure computed)."""

    spread: Spread
    chances: dict[str, float]  # at the runs' own rounds and levels (``mixed_chances``)
    agree: float  # chance that >= 9 of 10 such runs give the most likely verdict
    rounds_to_repeat: int | None  # fewest of ROUNDS_TRIED where a decided verdict repeats so; None: none


def forecast(
    rows: Sequence[RunRow], claimed: float, tolerance: float, margin: float, *, seed: int = 0
) -> Forecast | None:
    """The verdict chances at the runs' own rounds and levels, and the fewest of ``ROUNDS_TRIED``
    at which a fixed-n run at 95% gives a decided verdict that >= 9 of 10 runs share with chance
    ``REPEAT_CHANCE`` (module docstring); None when the rows hold no spread (fewer than 2 runs,
    or runs of a single round)."""
    s = spread(rows)
    if s is None or s.n < 2:
        return None
    here = mixed_chances(s, claimed, tolerance, margin, seed=seed)
    needed = None
    for n in ROUNDS_TRIED:
        word, p = next(iter(verdict_chances(s, n, claimed, tolerance, margin, seed=seed).items()))
        if Verdict(word) in DECIDED and agree_chance(p) >= REPEAT_CHANCE:
            needed = n
            break
    return Forecast(s, here, agree_chance(next(iter(here.values()))), needed)
