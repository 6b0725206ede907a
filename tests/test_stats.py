from __future__ import annotations

import numpy as np
import pytest

from bench.stats import Interval, Verdict, interval_of, product_interval, ratio_interval, verdict


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (7.0, 9.0, Verdict.HOLDS),  # inside 8 +/- 20% = [6.4, 9.6]
        (2.0, 3.0, Verdict.REFUTED),  # wholly below the band
        (10.0, 12.0, Verdict.EXCEEDED),  # wholly above
        (5.0, 7.0, Verdict.INCONCLUSIVE),  # straddles the lower edge
        (9.0, 11.0, Verdict.INCONCLUSIVE),  # straddles the upper edge
        (1.0, 20.0, Verdict.INCONCLUSIVE),  # too wide to say
        (6.4, 9.6, Verdict.HOLDS),  # edges belong to the band
    ],
)
def test_verdict_rule_against_a_claim_of_8x(low, high, expected):
    assert verdict(Interval((low + high) / 2, low, high, 5), claimed=8.0) == expected


def test_tolerance_is_configurable():
    measured = Interval(7.0, 6.9, 7.1, 5)
    assert verdict(measured, 8.0, tolerance=0.2) == Verdict.HOLDS
    assert verdict(measured, 8.0, tolerance=0.1) == Verdict.REFUTED


def test_verdict_rejects_nonsense_claims():
    with pytest.raises(ValueError, match="claimed"):
        verdict(Interval(1, 1, 1, 1), claimed=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        verdict(Interval(1, 1, 1, 1), claimed=1.0, tolerance=1.5)


def test_paired_ratio_recovers_a_known_speedup():
    rng = np.random.default_rng(0)
    drift = rng.lognormal(0, 0.3, 12)  # the machine's speed drifts between rounds
    base = 100 * drift * rng.lognormal(0, 0.02, 12)
    candidate = 250 * drift * rng.lognormal(0, 0.02, 12)
    iv = ratio_interval(base, candidate)
    assert iv.low < 2.5 < iv.high
    assert iv.half_width_rel < 0.05  # pairing cancels the drift


def test_times_are_read_as_times_faster():
    iv = ratio_interval(np.array([120.0, 121.0, 119.0]), np.array([15.0, 15.2, 14.8]), higher_is_better=False)
    assert iv.estimate == pytest.approx(8.0, rel=0.02)


def test_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 200
    for i in range(trials):
        ratios = 2.0 * rng.lognormal(0, 0.1, 20)
        iv = interval_of(ratios, seed=i)
        hits += iv.low <= 2.0 <= iv.high
    assert 0.88 <= hits / trials <= 0.99


def test_one_round_gives_a_point_interval():
    iv = ratio_interval(np.array([10.0]), np.array([20.0]))
    assert (iv.estimate, iv.low, iv.high, iv.n) == (2.0, 2.0, 2.0, 1)


def test_product_of_factors_multiplies_per_round():
    iv = product_interval([np.array([2.0, 2.0, 2.0]), np.array([1.5, 1.5, 1.5])])
    assert iv.estimate == pytest.approx(3.0)


def test_ratios_need_paired_positive_values():
    with pytest.raises(ValueError, match="paired"):
        ratio_interval(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="positive"):
        ratio_interval(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
