"""Verification metrics on the project's own simulated events: known answers, the simulated
ceiling, and that each metric sees the defect it is meant to see."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffusion import quality
from diffusion.detector import PHYSICS_EVENTS, Detector, DetectorConfig
from diffusion.errors import ConfigError


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DetectorConfig(n_pmt=96))


@pytest.fixture(scope="module")
def twins(detector):
    """Two independent simulations of the same 500 events."""
    rng = np.random.default_rng(3)
    truth = detector.sample_truth(rng, 500, PHYSICS_EVENTS)
    return detector.respond(rng, truth), detector.respond(rng, truth)


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], 0.0),
        ([2, 4, 6], [1, 2, 3], 0.0),  # normalised first
        ([1, 0], [0, 1], 1.0),
        ([1, 0], [1, 1], 0.5 * (0.25 / 1.5 + 0.25 / 0.5)),
    ],
)
def test_separation_power_known_answers(p, q, expected):
    assert quality.separation_power(np.array(p), np.array(q)) == pytest.approx(expected)


def test_respond_gives_an_independent_simulation_of_the_same_truth(twins):
    a, b = twins
    for name in ("energy", "vertex", "direction", "multiplicity"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.charge, b.charge)


def test_observables_put_the_ring_at_the_cherenkov_angle(twins, detector):
    obs = quality.observables(twins[0], detector)
    assert obs.per_event["nhit"].sum() == twins[0].hit.sum()
    peak = quality.ring_peak_deg(obs, len(twins[0]))
    assert np.nanmedian(peak) == pytest.approx(detector.config.cherenkov_angle_deg, abs=5.0)


def test_the_simulated_ceiling_is_near_perfect(twins, detector):
    a, b = twins
    bins = quality.energy_bins(a.energy.sum(axis=1))
    table = quality.separation_table(quality.observables(a, detector), quality.observables(b, detector), bins)
    assert set(table) == set(quality.OBSERVABLES)
    assert all(len(v) == quality.ENERGY_BINS for v in table.values())
    assert quality.fidelity(table) > 0.9
    assert quality.energy_violation(a, b, bins) < 0.05
    assert quality.physical(quality.observables(b, detector), detector)["all"].mean() > 0.8


def test_each_metric_sees_its_defect(twins, detector):
    a, b = twins
    bins = quality.energy_bins(a.energy.sum(axis=1))
    ref = quality.observables(a, detector)
    bright = dataclasses.replace(b, charge=b.charge * 3)  # every PMT three times too bright
    assert quality.energy_violation(a, bright, bins) > 0.5
    assert quality.fidelity(quality.separation_table(ref, quality.observables(bright, detector), bins)) < 0.85
    early = dataclasses.replace(b, time=np.where(b.hit, b.time - 30.0, 0.0))  # light before it could arrive
    assert quality.physical(quality.observables(early, detector), detector)["causal"].mean() < 0.1
    dark = np.full(len(b), -0.9)  # a generator that put PMTs below "no light"
    assert not quality.physical(quality.observables(b, detector), detector, dark)["all"].any()


def test_energy_bins_are_terciles():
    bins = quality.energy_bins(np.arange(300.0))
    assert np.bincount(bins).tolist() == [100, 100, 100]


def test_classifier_cannot_tell_two_simulations_apart_but_sees_a_shift(twins):
    from diffusion.two_sample import classifier_auc

    a, b = twins
    features_a, features_b = np.log1p(a.charge), np.log1p(b.charge)
    # Rows share a truth: a split per set would leak truths across labels and score below 0.5.
    assert 0.4 < classifier_auc(features_a, features_b, seed=1, epochs=10) < 0.6
    assert classifier_auc(features_a, features_b + 0.5, seed=1, epochs=10) > 0.9


def test_classifier_needs_paired_rows():
    from diffusion.two_sample import classifier_auc

    with pytest.raises(ConfigError, match="paired rows of equal length"):
        classifier_auc(np.zeros((10, 3)), np.zeros((12, 3)))


def test_auc_known_answers():
    from diffusion.two_sample import auc

    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
