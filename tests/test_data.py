from __future__ import annotations

import numpy as np
import pytest

from diffusion.data import Loader, sync_batches, threaded_prefetch
from diffusion.errors import ConfigError


def test_sync_batches_are_noised_training_samples(tiny_data):
    train, schedule = tiny_data.train, tiny_data.schedule
    batches = list(sync_batches(train, schedule, 32, seed=0, epoch=0))
    assert len(batches) == len(train) // 32
    x_t, t, cond, noise = batches[0]
    assert x_t.shape == noise.shape == (32, train.x.shape[1])
    assert t.shape == (32, 1) and t.dtype == np.float32
    # x_t is x0 and noise mixed by the schedule: recover x0 and find it in the training set.
    ab = schedule.alpha_bar[t[:, 0].astype(int)][:, None]
    x0 = (x_t - np.sqrt(1 - ab) * noise) / np.sqrt(ab)
    idx = [np.flatnonzero((train.cond == c).all(axis=1))[0] for c in cond]
    np.testing.assert_allclose(x0, train.x[idx], atol=1e-3)


def test_batch_order_depends_on_seed_and_epoch_only(tiny_data):
    first = [b[2] for b in sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=1)]
    again = [b[2] for b in sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=1)]
    other = [b[2] for b in sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=2)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))


def test_thread_prefetch_yields_the_same_batches_as_sync(tiny_data):
    sync = list(sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=0))
    pre = list(threaded_prefetch(sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=0)))
    assert len(pre) == len(sync)
    for a, b in zip(sync, pre, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_thread_prefetch_reports_producer_errors():
    def broken():
        yield (1,)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        list(threaded_prefetch(broken()))


def test_tf_data_prefetch_sees_the_same_events_in_the_same_order(tiny_data):
    loader = Loader("prefetch", tiny_data.train, tiny_data.schedule, 32, seed=0)
    assert loader.implementation == "tf.data"
    pre = [np.asarray(b[2]) for b in loader.epoch(0)]
    sync = [b[2] for b in sync_batches(tiny_data.train, tiny_data.schedule, 32, seed=0, epoch=0)]
    np.testing.assert_array_equal(np.concatenate(pre), np.concatenate(sync))
    x_t, t, _, noise = (np.asarray(a) for a in next(iter(loader.epoch(0))))
    assert 0 <= t.min() and t.max() < tiny_data.schedule.timesteps
    assert abs(noise.std() - 1) < 0.05


def test_validation_passes_of_different_shapes_share_their_samples(tiny_data):
    val = tiny_data.validation
    small = np.concatenate([b[0] for b in val.batches(40, 32)])
    large = np.concatenate([b[0] for b in val.batches(20, 64)])
    np.testing.assert_array_equal(small, large)


def test_validation_pass_larger_than_the_set_is_an_error(tiny_data):
    with pytest.raises(ConfigError, match="needs more than"):
        next(tiny_data.validation.batches(100, 64))
