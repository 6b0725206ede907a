from __future__ import annotations

import numpy as np
import pytest

from bench.stats import (
    Interval,
    Verdict,
    claim_band,
    interval_of,
    paired_ratios,
    product_by_round,
    rounds_interval,
    share_interval,
    trials_to_decide,
    verdict,
    verdict_reason,
)


def iv(low: float, high: float, n: int = 5) -> Interval:
    return Interval(float(np.sqrt(low * high)), low, high, n)


# --- the interval: real coverage at the round counts the harness uses ------------------------


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("sigma", [0.02, 0.3])
def test_interval_covers_the_true_ratio_at_least_93_percent_at_the_rounds_we_use(n, sigma):
    rng = np.random.default_rng(1000 * n + int(100 * sigma))
    experiments = 2000
    truth = 2.5
    hits = 0
    for _ in range(experiments):
        got = interval_of(truth * rng.lognormal(0.0, sigma, n))
        hits += got.low <= truth <= got.high
    assert hits / experiments >= 0.93


def test_interval_is_the_student_t_interval_on_log_ratios():
    # logs 0, ln 2, ln 4: mean ln 2, sd ln 2, t(0.975, 2) = 4.3027
    got = interval_of(np.array([1.0, 2.0, 4.0]))
    half = 4.302652729911275 * np.log(2) / np.sqrt(3)
    assert got.estimate == pytest.approx(2.0)
    assert got.low == pytest.approx(2.0 * np.exp(-half))
    assert got.high == pytest.approx(2.0 * np.exp(half))
    assert got.n == 3


def test_two_rounds_give_a_wide_interval_not_a_narrow_one():
    got = interval_of(np.array([7.0, 9.0]))
    assert got.high / got.low > 4  # t(0.975, 1) = 12.7: two rounds say little


def test_one_round_is_a_point_marked_n_1():
    got = rounds_interval(paired_ratios({0: 10.0}, {0: 20.0}))
    assert (got.estimate, got.low, got.high, got.n) == (2.0, 2.0, 2.0, 1)


def test_paired_ratio_recovers_a_known_speedup_despite_drift():
    rng = np.random.default_rng(0)
    drift = rng.lognormal(0, 0.3, 12)  # the machine's speed drifts between rounds
    base = 100 * drift * rng.lognormal(0, 0.02, 12)
    candidate = 250 * drift * rng.lognormal(0, 0.02, 12)
    got = rounds_interval(paired_ratios(dict(enumerate(base)), dict(enumerate(candidate))))
    assert got.low < 2.5 < got.high
    assert got.half_width_rel < 0.05  # pairing cancels the drift


def test_times_are_read_as_times_faster():
    got = rounds_interval(
        paired_ratios({0: 120.0, 1: 121.0, 2: 119.0}, {0: 15.0, 1: 15.2, 2: 14.8}, higher_is_better=False)
    )
    assert got.estimate == pytest.approx(8.0, rel=0.02)


def test_ratios_are_paired_by_round_and_need_positive_values():
    assert paired_ratios({0: 1.0, 1: 2.0}, {1: 4.0, 2: 8.0}) == {1: 2.0}  # round 0 and 2 have no partner
    with pytest.raises(ValueError, match="positive"):
        paired_ratios({0: 1.0, 1: 0.0}, {0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="positive"):
        interval_of(np.array([]))


# --- pairing by round id ----------------------------------------------------------------------


def test_rounds_pair_by_id_and_a_failed_round_is_dropped_not_shifted():
    base = {0: 10.0, 1: 20.0, 2: 40.0, 3: 80.0}
    candidate = {0: 20.0, 2: 80.0, 3: 160.0}  # round 1's worker failed
    assert paired_ratios(base, candidate) == {0: 2.0, 2: 2.0, 3: 2.0}


def test_product_multiplies_the_same_rounds_only():
    v2 = {0: 2.0, 1: 2.0, 2: 2.0, 3: 2.0}
    v3 = {0: 1.5, 2: 1.5, 3: 1.5}  # round 1 failed
    v4 = {0: 3.0, 1: 3.0, 2: 3.0, 3: 3.0}
    product = product_by_round([v2, v3, v4])
    assert product == {0: 9.0, 2: 9.0, 3: 9.0}


# --- the verdict rule, at every edge -----------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (7.0, 9.0, Verdict.HOLDS),  # inside 8/1.2 .. 8*1.2 = [6.67, 9.6]
        (8 / 1.2, 9.6, Verdict.HOLDS),  # edges belong to the band
        (2.0, 3.0, Verdict.REFUTED),  # wholly below the band, above 1
        (10.0, 12.0, Verdict.EXCEEDED),  # wholly above
        (6.0, 7.0, Verdict.INCONCLUSIVE),  # straddles the lower edge
        (9.0, 11.0, Verdict.INCONCLUSIVE),  # straddles the upper edge
        (1.5, 20.0, Verdict.INCONCLUSIVE),  # too wide to say
        (0.5, 0.9, Verdict.REVERSED),  # slower, though "8x faster" was claimed
    ],
)
def test_verdict_rule_against_a_claim_of_8x(low, high, expected):
    assert verdict(iv(low, high), claimed=8.0) == expected


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.901, 0.927, Verdict.REVERSED),  # T4 as measured: clipping makes the step 9% slower
        (0.95, 1.05, Verdict.INCONCLUSIVE),  # inside 1.1/1.2 .. 1.32, but reaches below 1
        (1.02, 1.2, Verdict.HOLDS),
        (0.85, 0.9, Verdict.REVERSED),
    ],
)
def test_a_speedup_claim_never_holds_with_an_interval_that_reaches_below_1(low, high, expected):
    assert verdict(iv(low, high), claimed=1.1) == expected


@pytest.mark.parametrize(
    ("low", "high", "m1", "m2"),
    [
        (0.894, 0.895, Verdict.REFUTED, Verdict.EXCEEDED),  # M1 as measured at small: NEU 12% more
        (0.93, 0.952, Verdict.HOLDS, Verdict.EXCEEDED),  # M2 as measured at small: within 10% of equal
        (0.95, 1.05, Verdict.HOLDS, Verdict.EXCEEDED),
        (0.74, 0.80, Verdict.REFUTED, Verdict.HOLDS),  # NEU uses 25-35% more
        (1.2, 1.3, Verdict.REFUTED, Verdict.REVERSED),  # NEU uses less
        (0.88, 0.93, Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE),
    ],
)
def test_equal_and_plus_25_percent_memory_claims_never_both_hold(low, high, m1, m2):
    # M1: equal (margin 10%); M2: ratio 0.8 with the registry's tolerance 0.1
    assert verdict(iv(low, high), claimed=1.0) == m1
    assert verdict(iv(low, high), claimed=0.8, tolerance=0.1) == m2
    assert not (m1 == Verdict.HOLDS and m2 == Verdict.HOLDS)


def test_bands_are_log_symmetric_and_equal_claims_use_the_margin():
    assert claim_band(8.0) == pytest.approx((8 / 1.2, 9.6))
    assert claim_band(0.25) == pytest.approx((0.25 / 1.2, 0.3))
    assert claim_band(1.0) == pytest.approx((1 / 1.1, 1.1))
    assert claim_band(1.0, margin=0.05) == pytest.approx((1 / 1.05, 1.05))


def test_a_claim_below_1_mirrors_the_direction_rule():
    assert verdict(iv(1.05, 1.2), claimed=0.25) == Verdict.REVERSED  # NEU writes less, not 4x more
    assert verdict(iv(0.22, 0.28), claimed=0.25) == Verdict.HOLDS
    assert verdict(iv(0.9, 1.1), claimed=0.8) == Verdict.INCONCLUSIVE


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_3_rounds_give_no_verdict_and_say_why(n):
    measured = Interval(20.0, 19.0, 21.0, n)  # would be "exceeded" with enough rounds
    got = verdict(measured, claimed=8.0)
    assert got == Verdict.INCONCLUSIVE
    assert verdict_reason(measured, 8.0, got) == f"n = {n}: too few rounds (a verdict needs 3)"


def test_exact_quantities_are_judged_as_exact_values():
    one_epoch = Interval(1.0, 1.0, 1.0, 1)  # bytes of two checkpoints: deterministic
    assert verdict(one_epoch, claimed=1.0, kind="exact") == Verdict.HOLDS
    assert verdict(Interval(0.5, 0.5, 0.5, 1), claimed=1.0, kind="exact") == Verdict.REFUTED


def test_a_computed_figure_is_a_projection_whatever_its_value():
    assert verdict(Interval(5.0, 5.0, 5.0, 1), claimed=32.0, kind="projection") == Verdict.PROJECTION


def test_shares_use_a_wilson_interval_and_have_no_direction():
    share = share_interval(10, 20)
    assert share.estimate == 0.5 and share.n == 20
    assert share.low == pytest.approx(0.2993, abs=1e-3) and share.high == pytest.approx(0.7007, abs=1e-3)
    assert verdict(share, claimed=0.3, kind="share") == Verdict.INCONCLUSIVE
    assert verdict(share_interval(300, 1000), claimed=0.3, kind="share") == Verdict.HOLDS


def test_trials_to_decide_shrinks_as_the_share_moves_away_from_the_band_edges():
    near = trials_to_decide(0.35, claimed=0.3)
    far = trials_to_decide(0.5, claimed=0.3)
    assert near is not None and far is not None and near > far > 20
    enough = int(1.2 * far)  # the estimate is a normal approximation of Wilson's interval
    assert verdict(share_interval(enough // 2, enough), 0.3, kind="share") == Verdict.EXCEEDED


def test_verdict_rejects_nonsense_claims():
    with pytest.raises(ValueError, match="claimed"):
        verdict(iv(1, 1), claimed=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        verdict(iv(1, 1), claimed=1.0, tolerance=1.5)
    with pytest.raises(ValueError, match="kind"):
        verdict(iv(1, 1), claimed=1.0, kind="vibes")


# --- the level of an interval ---------------------------------------------------------------------


def test_interval_at_another_level_uses_that_levels_t_quantile():
    # logs 0, ln 2, ln 4: t(0.995, 2) = 9.9248
    got = interval_of(np.array([1.0, 2.0, 4.0]), 0.99)
    half = 9.924843200918276 * np.log(2) / np.sqrt(3)
    assert got.low == pytest.approx(2.0 * np.exp(-half)) and got.high == pytest.approx(2.0 * np.exp(half))
    assert interval_of(np.array([1.0, 2.0, 4.0])) == interval_of(np.array([1.0, 2.0, 4.0]), 0.95)


def test_a_higher_level_widens_ratio_and_share_intervals():
    base, cand = np.array([10.0, 11.0, 9.0, 10.5]), np.array([20.0, 23.0, 17.0, 21.0])
    ratios = paired_ratios(dict(enumerate(base)), dict(enumerate(cand)))
    narrow, wide = rounds_interval(ratios), rounds_interval(ratios, confidence=0.995)
    assert wide.low < narrow.low and narrow.high < wide.high
    assert share_interval(30, 40, 0.995).low < share_interval(30, 40).low


@pytest.mark.parametrize("level", [0.0, 1.0, 95.0, -0.5])
def test_a_level_outside_0_1_is_refused(level):
    with pytest.raises(ValueError, match="confidence"):
        interval_of(np.array([1.0, 2.0, 3.0]), level)
    with pytest.raises(ValueError, match="confidence"):
        share_interval(3, 4, level)


def test_nan_and_infinite_ratios_are_refused():
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="positive"):
            interval_of(np.array([1.0, bad, 2.0]))
