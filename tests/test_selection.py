from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffusion.detector import TRIGGER_EVENTS, Detector, DetectorConfig
from diffusion.errors import ConfigError
from diffusion.selection import (
    chance_overlap,
    detection_rate,
    enumerated_shapley,
    exact_shapley,
    greedy_coverage,
    hit_frequency,
    random_selection,
    sampled_shapley,
    top_by_value,
    top_overlap,
)
from diffusion.selection_plot import plot_selection

N_PMT = 96
K = 6  # 56% of the 300 trigger events have at least 6 hits on all 96 PMTs: far from 0 and from 1


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DetectorConfig(n_pmt=N_PMT))


@pytest.fixture(scope="module")
def hits(detector) -> np.ndarray:
    return detector.simulate(np.random.default_rng(1), 300, TRIGGER_EVENTS).hit


def variance_ratio(hits: np.ndarray, k: int, permutations: int, seed: int) -> float:
    """Summed squared standard error with antithetic pairs over that with independent permutations."""
    paired = sampled_shapley(hits, k, permutations=permutations, rng=np.random.default_rng(seed))
    single = sampled_shapley(hits, k, permutations=permutations, rng=np.random.default_rng(seed), antithetic=False)
    return float(np.sum(paired.stderr**2) / np.sum(single.stderr**2))


# --- exact values ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(5, 8).flatmap(
        lambda n_pmt: st.tuples(hnp.arrays(bool, st.tuples(st.integers(3, 20), st.just(n_pmt))), st.integers(1, 3))
    )
)
def test_closed_form_equals_enumeration_over_all_coalitions(game):
    hits, k = game
    np.testing.assert_allclose(exact_shapley(hits, k), enumerated_shapley(hits, k), atol=1e-12)


def test_closed_form_equals_enumeration_with_events_short_of_k_and_empty():
    hits = np.array(
        [
            [1, 1, 1, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],  # one hit, short of k = 2
            [0, 0, 0, 0, 0, 0],  # no hits
            [0, 1, 1, 1, 1, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_allclose(exact_shapley(hits, 2), enumerated_shapley(hits, 2), atol=1e-12)
    np.testing.assert_allclose(
        exact_shapley(hits, 2), np.array([1 / 3, 1 / 3 + 1 / 4, 1 / 3 + 1 / 4, 1 / 4, 1 / 4, 0]) / 4
    )


def test_each_triggering_event_splits_its_credit_equally_among_its_hits():
    hits = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    np.testing.assert_allclose(exact_shapley(hits, 1), [0.75, 0.25, 0.0])


def test_exact_values_sum_to_the_share_triggering_on_all_pmts(hits):
    assert 0.3 < detection_rate(hits, np.arange(N_PMT), K) < 0.9
    for k in (1, 3, K, 12):
        assert exact_shapley(hits, k).sum() == pytest.approx(detection_rate(hits, np.arange(N_PMT), k))


# --- sampled values --------------------------------------------------------------------------


def test_sampled_values_lie_within_their_standard_errors_of_the_exact_ones(hits):
    estimate = sampled_shapley(hits, K, permutations=1000, rng=np.random.default_rng(2))
    error = np.abs(estimate.values - exact_shapley(hits, K))
    assert np.all(error <= 4 * estimate.stderr + 1e-12)
    assert np.mean(error <= 2 * estimate.stderr + 1e-12) >= 0.88  # ~95% expected


def test_pmts_never_hit_get_exactly_zero_with_zero_error(hits):
    estimate = sampled_shapley(hits, K, permutations=20, rng=np.random.default_rng(3))
    never = ~hits.any(axis=0)
    assert never.any()  # dead PMTs
    assert np.all(estimate.values[never] == 0) and np.all(estimate.stderr[never] == 0)


def test_sampled_estimate_records_its_permutations_and_time(hits):
    estimate = sampled_shapley(hits, K, permutations=10, rng=np.random.default_rng(4))
    assert estimate.permutations == 10 and estimate.seconds > 0
    assert estimate.values.shape == estimate.stderr.shape == (N_PMT,)


def test_chunking_bounds_memory_without_changing_the_estimate(hits):
    whole = sampled_shapley(hits, K, permutations=40, rng=np.random.default_rng(5))
    chunked = sampled_shapley(hits, K, permutations=40, rng=np.random.default_rng(5), chunk=6)
    np.testing.assert_allclose(chunked.values, whole.values, atol=1e-15)
    np.testing.assert_allclose(chunked.stderr, whole.stderr, atol=1e-15)


def test_one_pair_gives_no_standard_error(hits):
    assert np.all(np.isnan(sampled_shapley(hits, K, permutations=2, rng=np.random.default_rng(6)).stderr))


def test_antithetic_pairs_reduce_variance_on_the_trigger_game(hits):
    assert variance_ratio(hits, K, permutations=2000, seed=7) < 0.8


def test_antithetic_pairs_double_variance_when_every_event_has_2k_minus_1_hits():
    # Forwards and backwards the 2nd of 3 hits is pivotal: the reverse repeats its permutation.
    rng = np.random.default_rng(8)
    hits = np.zeros((200, 20), dtype=bool)
    for row in hits:
        row[rng.choice(20, 3, replace=False)] = True
    assert variance_ratio(hits, 2, permutations=2000, seed=9) > 1.5


# --- detection and selections ----------------------------------------------------------------


def test_detection_rate_counts_events_with_k_hits_among_the_selected():
    hits = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
    assert detection_rate(hits, np.array([0, 1]), 2) == pytest.approx(1 / 3)
    assert detection_rate(hits, np.array([1]), 1) == pytest.approx(2 / 3)
    assert detection_rate(hits, np.array([], dtype=int), 1) == 0.0


@pytest.mark.parametrize("method", ["greedy", "frequency", "random", "value"])
@pytest.mark.parametrize("m", [1, 24, N_PMT])
def test_selections_return_m_distinct_indices(hits, method, m):
    select = {
        "greedy": lambda: greedy_coverage(hits, K, m),
        "frequency": lambda: hit_frequency(hits, m),
        "random": lambda: random_selection(N_PMT, m, np.random.default_rng(10)),
        "value": lambda: top_by_value(exact_shapley(hits, K), m),
    }[method]
    selected = select()
    assert selected.shape == (m,) and np.issubdtype(selected.dtype, np.integer)
    assert len(np.unique(selected)) == m and selected.min() >= 0 and selected.max() < N_PMT


def test_top_by_value_breaks_ties_by_lower_index():
    np.testing.assert_array_equal(top_by_value(np.array([1.0, 3.0, 3.0, 2.0]), 3), [1, 2, 3])


def test_hit_frequency_ranks_by_events_hit():
    hits = np.array([[0, 1, 1], [0, 1, 0], [1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(hit_frequency(hits, 3), [1, 2, 0])


def test_greedy_counts_progress_towards_k_before_any_event_triggers():
    # k = 2, so no single PMT triggers anything: PMT 2 takes all three events halfway, then
    # PMT 0 completes two of them and PMT 1 the last.
    hits = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(greedy_coverage(hits, 2, 3), [2, 0, 1])


def test_greedy_beats_random_selection_in_detection_rate(hits):
    greedy = detection_rate(hits, greedy_coverage(hits, K, 24), K)
    randoms = [detection_rate(hits, random_selection(N_PMT, 24, np.random.default_rng(s)), K) for s in range(20)]
    assert greedy > max(randoms)


def test_top_overlap_is_the_shared_share_of_the_first_n():
    a, b = np.array([0, 1, 2, 3]), np.array([2, 0, 5, 6])
    assert top_overlap(a, b, 2) == 0.5
    assert top_overlap(a, b, 3) == pytest.approx(2 / 3)
    assert top_overlap(a, a, 4) == 1.0


def test_chance_overlap_is_what_random_selections_share_on_average():
    assert chance_overlap(96, 24) == 0.25
    rng = np.random.default_rng(11)
    shares = [top_overlap(random_selection(96, 24, rng), random_selection(96, 24, rng), 24) for _ in range(2000)]
    assert np.mean(shares) == pytest.approx(0.25, abs=0.01)


# --- bad input -------------------------------------------------------------------------------

GOOD = np.eye(4, dtype=bool)


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        (lambda: exact_shapley(GOOD, 0), "k=0"),
        (lambda: exact_shapley(GOOD.astype(float), 1), "float64"),
        (lambda: exact_shapley(GOOD[0], 1), "(4,)"),
        (lambda: exact_shapley(np.zeros((0, 4), bool), 1), "(0, 4)"),
        (lambda: enumerated_shapley(np.zeros((2, 11), bool), 1), "P=11"),
        (lambda: sampled_shapley(GOOD, 1, permutations=3, rng=np.random.default_rng()), "permutations=3"),
        (lambda: sampled_shapley(GOOD, 1, permutations=0, rng=np.random.default_rng()), "permutations=0"),
        (lambda: sampled_shapley(GOOD, 1, permutations=4, rng=np.random.default_rng(), chunk=0), "chunk=0"),
        (lambda: top_by_value(np.ones(4), 0), "m=0"),
        (lambda: greedy_coverage(GOOD, 1, 5), "m=5"),
        (lambda: hit_frequency(GOOD, -1), "m=-1"),
        (lambda: random_selection(4, 5, np.random.default_rng()), "m=5"),
        (lambda: detection_rate(GOOD, np.array([4]), 1), "[4]"),
        (lambda: detection_rate(GOOD, np.array([1, 1]), 1), "[1, 1]"),
        (lambda: top_overlap(np.arange(3), np.arange(4), 4), "n=4"),
        (lambda: chance_overlap(4, 0), "n=0"),
        (lambda: plot_selection(np.zeros((4, 2)), {"a": np.arange(2)}, Path("x.png")), "(4, 2)"),
    ],
)
def test_bad_input_raises_config_error_naming_the_value(call, shown):
    with pytest.raises(ConfigError) as error:
        call()
    assert shown in str(error.value)


def test_odd_permutations_are_fine_without_pairs():
    estimate = sampled_shapley(GOOD, 1, permutations=3, rng=np.random.default_rng(12), antithetic=False)
    np.testing.assert_allclose(estimate.values, 0.25)


# --- plot ------------------------------------------------------------------------------------


def test_plot_selection_writes_a_png_and_leaves_no_temp_file(detector, hits, tmp_path):
    path = tmp_path / "selection.png"
    selections = {"greedy": greedy_coverage(hits, K, 24), "value": top_by_value(exact_shapley(hits, K), 24)}
    plot_selection(detector.unit, selections, path)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["selection.png"]
