from __future__ import annotations

import numpy as np
import pytest

from diffusion.detector import (
    COND_DIM,
    PHYSICS_EVENTS,
    TRIGGER_EVENTS,
    Detector,
    DetectorConfig,
    EventConfig,
    fibonacci_sphere,
)
from diffusion.errors import ConfigError


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DetectorConfig(n_pmt=768))


def angle_to_track(detector: Detector, events) -> np.ndarray:
    """Angle (deg) between each event's first-ring direction and the vertex->PMT direction."""
    offset = detector.positions[None] - events.vertex[:, None]
    unit = offset / np.linalg.norm(offset, axis=2, keepdims=True)
    cos = np.einsum("npd,nd->np", unit, events.direction[:, 0])
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_default_geometry_covers_about_a_third_of_the_sphere():
    assert 0.30 < DetectorConfig().coverage < 0.40


def test_fibonacci_lattice_is_unit_and_nearly_uniform():
    points = fibonacci_sphere(768)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0)
    assert np.abs(points.mean(axis=0)).max() < 0.01


def test_low_energy_events_give_a_super_kamiokande_like_hits_per_mev(detector):
    events = detector.simulate(np.random.default_rng(1), 2000, TRIGGER_EVENTS)
    hits_per_mev = np.median(events.hit.sum(axis=1) / events.energy.sum(axis=1))
    # Super-Kamiokande sees about 6-7 hits per MeV at low energy.
    assert 4.0 < hits_per_mev < 10.0


def test_charge_weighted_hit_angle_peaks_near_the_cherenkov_angle(detector):
    events = detector.simulate(np.random.default_rng(2), 1500, EventConfig(multiplicity_probs=(1.0, 0.0, 0.0)))
    angles = angle_to_track(detector, events)
    weights, edges = np.histogram(angles.ravel(), bins=90, range=(0, 180), weights=events.charge.ravel())
    peak = edges[np.argmax(weights)] + 1.0
    assert abs(peak - detector.config.cherenkov_angle_deg) < 4.0


def test_total_charge_is_linear_in_energy(detector):
    events = detector.simulate(np.random.default_rng(3), 3000, EventConfig(multiplicity_probs=(1.0, 0.0, 0.0)))
    energy, charge = events.energy.sum(axis=1), events.charge.sum(axis=1)
    slope, intercept = np.polyfit(energy, charge, 1)
    assert np.corrcoef(energy, charge)[0, 1] > 0.95
    # Intercept: dark noise only, about one hit per event; small next to tens of pe per MeV.
    assert abs(intercept) < 3 * slope


def test_dead_pmts_are_never_hit(detector):
    events = detector.simulate(np.random.default_rng(4), 1000, PHYSICS_EVENTS)
    assert detector.dead.sum() == round(0.03 * 768)
    assert not events.hit[:, detector.dead].any()


def test_same_seed_gives_identical_events(detector):
    a = detector.simulate(np.random.default_rng(5), 200)
    b = detector.simulate(np.random.default_rng(5), 200)
    for name, array in a.arrays().items():
        np.testing.assert_array_equal(array, b.arrays()[name], err_msg=name)


def test_rings_are_separated_and_multiplicities_follow_their_probabilities(detector):
    events = detector.simulate(np.random.default_rng(6), 3000)
    counts = np.bincount(events.multiplicity, minlength=4)[1:] / len(events)
    np.testing.assert_allclose(counts, PHYSICS_EVENTS.multiplicity_probs, atol=0.04)
    multi = events.multiplicity >= 2
    cos = np.einsum("nd,nd->n", events.direction[multi, 0], events.direction[multi, 1])
    assert np.degrees(np.arccos(cos.max())) >= PHYSICS_EVENTS.min_ring_separation_deg - 1e-3


def test_hit_times_follow_time_of_flight(detector):
    events = detector.simulate(np.random.default_rng(7), 300, EventConfig(multiplicity_probs=(1.0, 0.0, 0.0)))
    distance = np.linalg.norm(detector.positions[None] - events.vertex[:, None], axis=2)
    tof = distance * 1.33 / 0.299792458
    bright = events.charge > 5  # timing jitter is small at high charge; dark hits have ~1 pe
    residual = events.time[bright] - tof[bright]
    assert abs(np.median(residual)) < 0.5
    assert np.std(residual) < 3.0


def test_conditioning_vector_has_fixed_size_and_pads_missing_rings(detector):
    events = detector.simulate(np.random.default_rng(8), 500)
    cond = events.condition(detector.config.radius_m)
    assert cond.shape == (500, COND_DIM)
    single = events.multiplicity == 1
    np.testing.assert_array_equal(cond[single][:, 11:], 0.0)  # rings 2 and 3 padded with zeros


def test_invalid_event_config_is_rejected_with_the_value():
    with pytest.raises(ConfigError, match="multiplicity_probs"):
        EventConfig(multiplicity_probs=(0.5, 0.5, 0.5))


def test_training_energies_cover_the_trigger_sample():
    # P1 selects PMTs from generated trigger events: outside the training energies the
    # detection rate would measure the model's extrapolation, not the model.
    low, high = PHYSICS_EVENTS.energy_range_mev
    trigger_low, trigger_high = TRIGGER_EVENTS.energy_range_mev
    assert low <= trigger_low and trigger_high <= high
