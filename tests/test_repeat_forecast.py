"""bench.repeat_forecast: the spreads a repeat record holds, and the verdict chances they imply."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.repeat_forecast import RunRow, Spread, agree_chance, forecast, spread, verdict_chances
from bench.stats import interval_of, verdict


def simulated_runs(mu: float, round_sd: float, run_sd: float, n: int, runs: int, seed: int) -> list[RunRow]:
    """Runs as the harness makes them: each run's rounds share one drift, then its t-interval."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(runs):
        ratios = np.exp(rng.normal(mu + rng.normal(0, run_sd), round_sd, n))
        iv = interval_of(ratios)
        out.append(RunRow(iv.estimate, iv.low, iv.high, n, per_round=tuple(ratios.tolist())))
    return out


def test_a_runs_round_sd_backed_out_of_its_interval_equals_the_one_from_its_rounds():
    ratios = np.array([1.71, 1.66, 1.64, 1.75, 1.70, 1.72])
    iv = interval_of(ratios, 0.99)
    with_rounds = RunRow(iv.estimate, iv.low, iv.high, 6, 0.99, tuple(ratios.tolist()))
    without = RunRow(iv.estimate, iv.low, iv.high, 6, 0.99)
    assert without.log_sd() == pytest.approx(with_rounds.log_sd(), rel=1e-9)
    assert with_rounds.log_sd() == pytest.approx(float(np.std(np.log(ratios), ddof=1)))


@pytest.mark.parametrize("run_sd", [0.0, 0.05])
def test_spread_recovers_the_round_and_run_level_spreads_of_planted_runs(run_sd):
    s = spread(simulated_runs(math.log(2.0), 0.04, run_sd, 6, 200, seed=1))
    assert s is not None and s.runs == 200 and s.n == 6
    assert s.mu == pytest.approx(math.log(2.0), abs=0.01)
    assert s.round_sd == pytest.approx(0.04, rel=0.1)
    assert s.run_sd == pytest.approx(run_sd, abs=0.012)


def test_fewer_than_two_runs_give_no_spread():
    assert spread(simulated_runs(0.5, 0.03, 0.0, 6, 1, seed=0)) is None


@pytest.mark.parametrize(
    ("ratio", "claimed", "run_sd"),
    [(1.71, 2.0, 0.012), (0.997, 1.3, 0.025), (7.34, 8.0, 0.038), (3.6, 2.4, 0.0)],
    ids=["V3 at the band's edge", "T2 on 1", "V1 near the edge", "T1 far from every edge"],
)
def test_the_simulated_chances_match_runs_judged_by_the_harness_rule(ratio, claimed, run_sd):
    """The shortcut (a normal mean, a chi-square sd) against whole runs of per-round ratios
    through interval_of and verdict, as bench.compare judges them."""
    round_sd, n = 0.05, 6
    s = Spread(math.log(ratio), round_sd, run_sd, runs=10, n=n)
    chances = verdict_chances(s, n, claimed, 0.2, 0.1, draws=4000, seed=3)
    runs = simulated_runs(math.log(ratio), round_sd, run_sd, n, 4000, seed=4)
    words = [verdict(interval_of(np.array(r.per_round)), claimed, 0.2).value for r in runs]
    for word in set(words) | set(chances):
        assert chances.get(word, 0.0) == pytest.approx(words.count(word) / len(words), abs=0.03), word


def test_agree_chance_is_the_binomial_chance_of_nine_in_ten():
    assert agree_chance(1.0) == pytest.approx(1.0)
    assert agree_chance(0.9) == pytest.approx(0.9**10 + 10 * 0.9**9 * 0.1)
    assert agree_chance(0.5) == pytest.approx(11 / 1024)


def test_a_claim_far_from_its_edges_repeats_and_one_on_an_edge_never_does():
    far = forecast(simulated_runs(math.log(3.6), 0.08, 0.0, 6, 10, seed=5), 2.4, 0.2, 0.1)
    assert far is not None and far.agree > 0.95 and far.rounds_to_repeat is not None and far.rounds_to_repeat <= 6
    assert next(iter(far.chances)) == "exceeded"
    # T2's case: a ratio of 1 against a claimed 1.3, with drift between runs: refuted or refuted
    # (reversed) depending on the run, however many rounds.
    on_edge = forecast(simulated_runs(0.0, 0.04, 0.03, 6, 10, seed=6), 1.3, 0.2, 0.1)
    assert on_edge is not None and on_edge.rounds_to_repeat is None and on_edge.agree < 0.6


def test_the_chances_at_the_runs_n_use_the_runs_own_level():
    """Runs judged at a look's 99% have wider intervals: fewer of them clear V3's edge."""
    from dataclasses import replace

    runs = simulated_runs(math.log(1.75), 0.03, 0.0, 6, 10, seed=7)
    at_95 = forecast(runs, 2.0, 0.2, 0.1)
    at_99 = forecast([replace(r, confidence=0.99) for r in runs], 2.0, 0.2, 0.1)
    assert at_95 is not None and at_99 is not None and at_99.spread.confidence == 0.99
    assert at_99.chances.get("holds", 0.0) < at_95.chances.get("holds", 0.0) - 0.1
    assert at_99.rounds_to_repeat == at_95.rounds_to_repeat  # a fixed-n run at 95%, both


def test_old_rows_back_their_spread_out_of_the_interval_and_single_rounds_give_none():
    from bench.repeat_analysis import run_rows

    runs = simulated_runs(math.log(1.71), 0.033, 0.0, 6, 3, seed=8)
    kept_rows = [{"estimate": r.estimate, "low": r.low, "high": r.high, "n": r.n} for r in runs]  # no per_round
    record = {"runs": [{"rows": {"V3": row}} for row in kept_rows] + [{"rows": {}}]}
    rows = run_rows(record, "V3")
    assert len(rows) == 3 and all(r.confidence == 0.95 and r.per_round == () for r in rows)
    assert spread(rows).round_sd == pytest.approx(spread(runs).round_sd, rel=1e-9)
    single = [RunRow(1.7, 1.7, 1.7, 1) for _ in range(3)]
    assert spread(single) is None and forecast(single, 2.0, 0.2, 0.1) is None
    with pytest.raises(ValueError, match="`n` must be at least 2"):
        verdict_chances(spread(runs), 1, 2.0, 0.2, 0.1)


def test_runs_stopped_at_different_rounds_and_levels_are_forecast_at_their_own():
    """A sequential run stops where its budget lets it: the chances are those of the record's
    mix of (rounds, level), each in its share of the runs, not those of its median run."""
    from dataclasses import replace

    from bench.repeat_forecast import mixed_chances

    long = simulated_runs(math.log(1.75), 0.03, 0.0, 8, 6, seed=9)
    short = []
    for r in simulated_runs(math.log(1.75), 0.03, 0.0, 5, 4, seed=10):
        iv = interval_of(np.array(r.per_round), 0.982)
        short.append(RunRow(iv.estimate, iv.low, iv.high, 5, 0.982, r.per_round))
    s = spread(long + short)
    assert s is not None and s.mix == ((8, 0.95, 0.6), (5, 0.982, 0.4))
    got = forecast(long + short, 2.0, 0.2, 0.1)
    assert got is not None and list(got.chances.values()) == sorted(got.chances.values(), reverse=True)
    at_8 = verdict_chances(s, 8, 2.0, 0.2, 0.1)
    at_5 = verdict_chances(s, 5, 2.0, 0.2, 0.1, confidence=0.982)
    assert at_5["holds"] < at_8["holds"] - 0.2  # 5 rounds at 98.2% decide much less often
    assert got.chances["holds"] == pytest.approx(0.6 * at_8["holds"] + 0.4 * at_5["holds"])
    assert sum(got.chances.values()) == pytest.approx(1.0)
    # A run of one round has no interval: inconclusive, in its share.
    one = replace(s, mix=((1, 0.95, 0.5), (8, 0.95, 0.5)))
    assert mixed_chances(one, 2.0, 0.2, 0.1)["inconclusive"] == pytest.approx(0.5 + 0.5 * at_8.get("inconclusive", 0))
