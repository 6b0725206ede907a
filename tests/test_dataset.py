from __future__ import annotations

import numpy as np
import pytest

from diffusion import dataset
from diffusion.dataset import Normaliser, load_events
from diffusion.detector import PHYSICS_EVENTS, DetectorConfig

DET = DetectorConfig(n_pmt=64)


def test_cached_data_set_is_loaded_not_regenerated(tmp_path, monkeypatch):
    first = load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    calls = []
    monkeypatch.setattr(dataset, "simulate", lambda *a: calls.append(a))
    second = load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(first.charge, second.charge)


def test_cache_is_keyed_by_configuration(tmp_path):
    load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    load_events(DetectorConfig(n_pmt=64, dead_fraction=0.05), PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    load_events(DET, PHYSICS_EVENTS, 100, seed=2, directory=tmp_path)
    assert len(list(tmp_path.glob("events-*.npz"))) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_file_is_regenerated_not_trusted(tmp_path, damage):
    good = load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    (path,) = tmp_path.glob("events-*.npz")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="regenerating corrupt"):
        again = load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)
    np.testing.assert_array_equal(good.charge, again.charge)
    load_events(DET, PHYSICS_EVENTS, 100, seed=1, directory=tmp_path)  # repaired: no warning now


def test_normaliser_round_trips_hit_patterns(tmp_path):
    events = load_events(DET, PHYSICS_EVENTS, 300, seed=3, directory=tmp_path)
    norm = Normaliser.fit(events)
    features = norm.encode(events)
    assert features.shape == (300, 128)
    charge, time = norm.decode(features)
    hit = events.charge >= norm.hit_threshold
    np.testing.assert_allclose(charge[hit], events.charge[hit], rtol=1e-4)
    np.testing.assert_allclose(time[hit], events.time[hit], rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(charge > 0, hit)


def test_normaliser_bounds_hold_the_training_features_and_start_at_no_light(tmp_path):
    events = load_events(DET, PHYSICS_EVENTS, 300, seed=3, directory=tmp_path)
    norm = Normaliser.fit(events)
    features = norm.encode(events)
    low, high = norm.bounds(DET.n_pmt)
    assert low.shape == high.shape == (features.shape[1],)
    assert np.all(features >= low - 1e-6) and np.all(features <= high + 1e-6)
    unlit = features[:, : DET.n_pmt][events.charge == 0]
    np.testing.assert_allclose(unlit, low[0], atol=1e-6)  # the charge floor is exactly "no light"


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_normaliser_round_trips_at_any_charge_scale_and_shows_charges_below_no_light(tmp_path, scale):
    events = load_events(DET, PHYSICS_EVENTS, 300, seed=3, directory=tmp_path)
    norm = Normaliser.fit(events, charge_scale_pe=scale)
    features = norm.encode(events)
    charge, _ = norm.decode(features)
    hit = events.charge >= norm.hit_threshold
    np.testing.assert_allclose(charge[hit], events.charge[hit], rtol=1e-4)
    below = features.copy()
    below[:, 0] = norm.bounds(DET.n_pmt)[0][0] - 1.0  # under the no-light point
    assert np.all(norm.raw_charge(below)[:, 0] < 0)
    assert np.all(norm.decode(below)[0][:, 0] == 0)  # decoding shows no light, never negative light


def test_ensure_cached_simulates_what_the_cache_lacks_once(tmp_path, monkeypatch):
    from diffusion.data import ensure_cached, event_sets
    from diffusion.presets import get_preset

    monkeypatch.setenv("PMT_DIFFUSION_CACHE", str(tmp_path))
    preset = get_preset("tiny")
    made: list[int] = []
    simulate = dataset.simulate
    monkeypatch.setattr(dataset, "simulate", lambda det, ev, n, seed: made.append(n) or simulate(det, ev, n, seed))
    ensure_cached(preset)
    assert sorted(made) == sorted(n for n, _ in event_sets(preset))  # both sets, simulated now
    for n, seed in event_sets(preset):
        assert dataset.events_path(preset.detector, preset.events, n, seed).exists()
    ensure_cached(preset)
    assert len(made) == 2  # cached: nothing simulated again, nothing loaded


def _prepared_equal(a, b) -> None:
    from diffusion.data import _prepared_arrays

    for name, array in _prepared_arrays(a).items():
        np.testing.assert_array_equal(array, _prepared_arrays(b)[name], err_msg=name)
    assert a.normaliser == b.normaliser
    np.testing.assert_array_equal(a.schedule.betas, b.schedule.betas)


def test_prepared_data_is_cached_and_read_back_as_made(tmp_path, monkeypatch):
    from diffusion import data
    from diffusion.presets import get_preset

    monkeypatch.setenv("PMT_DIFFUSION_CACHE", str(tmp_path))
    preset = get_preset("tiny")
    made = data.prepare(preset)
    assert data.prepared_path(preset).is_dir()
    assert not list(tmp_path.glob(".prepared-*"))  # no temp directory left behind
    monkeypatch.setattr(data, "load_events", lambda *a, **k: pytest.fail("events loaded, not the prepared cache"))
    _prepared_equal(data.prepare(preset), made)


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_prepared_cache_is_made_again_not_trusted(tmp_path, monkeypatch, damage):
    from diffusion import data
    from diffusion.presets import get_preset

    monkeypatch.setenv("PMT_DIFFUSION_CACHE", str(tmp_path))
    preset = get_preset("tiny")
    made = data.prepare(preset)
    directory = data.prepared_path(preset)
    target = directory / ("meta.json" if damage == "meta" else "val_noise.npy")
    raw = bytearray(target.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[-5] ^= 0xFF  # one byte of the array's data: the checksum no longer matches
    else:
        raw = bytearray(b'{"key": "another"}')
    target.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="prepared-data cache .* is unusable"):
        again = data.prepare(preset)
    _prepared_equal(again, made)
    _prepared_equal(data.prepare(preset), made)  # made again whole: read back without a warning


def test_prepared_cache_key_follows_the_data_the_noise_and_the_code(monkeypatch):
    import dataclasses

    from diffusion import data
    from diffusion.presets import get_preset

    tiny = get_preset("tiny")
    keys = {
        data.prepared_key(tiny),
        data.prepared_key(dataclasses.replace(tiny, seed=1)),
        data.prepared_key(dataclasses.replace(tiny, n_val=tiny.n_val + 32)),
        data.prepared_key(dataclasses.replace(tiny, diffusion=dataclasses.replace(tiny.diffusion, timesteps=500))),
    }
    assert len(keys) == 4
    assert data.prepared_key(tiny) == data.prepared_key(get_preset("tiny"))
    monkeypatch.setattr(data, "PREPARED_BY", data.PREPARED_BY[:-1])  # other code, another key
    assert data.prepared_key(tiny) not in keys


def test_prepared_arrays_read_back_are_writable_copies_on_write_that_never_reach_the_cache(tmp_path, monkeypatch):
    import warnings

    import psutil

    from diffusion import data
    from diffusion.presets import get_preset

    monkeypatch.setenv("PMT_DIFFUSION_CACHE", str(tmp_path))
    preset = get_preset("tiny")
    made = data.prepare(preset)
    rss = psutil.Process().memory_info().rss
    loaded = data.prepare(preset)
    # Every page was read at load (the checksum), so the process holds the data from here on.
    held = sum(array.nbytes for array in data._prepared_arrays(loaded).values())  # ~5.5 MB at tiny
    assert psutil.Process().memory_info().rss - rss >= 0.9 * held
    loaded.train.x[:] = 7.0  # a write stays in this process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no damaged cache: the write never reached the file
        _prepared_equal(data.prepare(preset), made)
