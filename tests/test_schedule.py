from __future__ import annotations

import numpy as np
import pytest

from diffusion.schedule import NoiseSchedule, ddim_sample


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)])
def test_alpha_bar_decreases_from_one_to_almost_zero(schedule):
    ab = schedule.alpha_bar
    assert np.all(np.diff(ab) < 0)
    assert ab[0] > 0.99 and ab[-1] < 0.01


def test_q_sample_has_the_forward_process_moments():
    schedule = NoiseSchedule.linear(1000)
    rng = np.random.default_rng(0)
    x0 = np.full((20000, 4), 2.0)
    t = np.full(20000, 500)
    xt = schedule.q_sample(x0, t, rng.standard_normal(x0.shape))
    ab = schedule.alpha_bar[500]
    np.testing.assert_allclose(xt.mean(), 2.0 * np.sqrt(ab), atol=0.02)
    np.testing.assert_allclose(xt.std(), np.sqrt(1 - ab), atol=0.02)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_the_true_noise_recovers_the_data(eta):
    schedule = NoiseSchedule.cosine(200)
    target = np.random.default_rng(1).uniform(-2, 2, (16, 8)).astype(np.float32)

    def oracle(x, t, cond):  # the noise that makes x out of target at step t
        ab = schedule.alpha_bar[int(t[0, 0])]
        return (x - np.sqrt(ab) * target) / np.sqrt(1 - ab)

    out = ddim_sample(oracle, np.zeros((16, 3)), schedule, 8, steps=25, eta=eta, rng=np.random.default_rng(2))
    np.testing.assert_allclose(out, target, atol=1e-3)


def test_ddim_is_deterministic_for_a_seed():
    schedule = NoiseSchedule.linear(100)

    def eps(x, t, c):
        return 0.1 * x

    a = ddim_sample(eps, np.zeros((4, 2)), schedule, 5, steps=10, rng=np.random.default_rng(3))
    b = ddim_sample(eps, np.zeros((4, 2)), schedule, 5, steps=10, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)])
def test_v_target_is_the_velocity_and_gives_back_the_noise(schedule):
    rng = np.random.default_rng(4)
    x0 = rng.uniform(-2, 2, (64, 6))
    noise = rng.standard_normal(x0.shape)
    t = rng.integers(0, schedule.timesteps - 1, 64)  # the cosine schedule's last step has ab ~ 1e-9
    x_t = schedule.q_sample(x0, t, noise)
    ab = schedule.alpha_bar[t][:, None]
    v = schedule.target("v", x_t, t[:, None], noise)
    np.testing.assert_allclose(v, np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0, atol=1e-6)
    np.testing.assert_allclose(schedule.eps_from("v", v, x_t, t[:, None]), noise, atol=1e-9)


def test_eps_target_and_output_are_the_noise_itself():
    schedule = NoiseSchedule.linear(100)
    x_t, noise = np.ones((3, 2)), np.full((3, 2), 0.5)
    t = np.array([[1], [50], [99]])
    assert schedule.target("eps", x_t, t, noise) is noise
    assert schedule.eps_from("eps", noise, x_t, t) is noise


def test_ddim_keeps_the_samples_inside_per_feature_bounds():
    schedule = NoiseSchedule.linear(200)
    low, high = np.array([-0.5, -1.0, 0.0]), np.array([0.5, 3.0, 0.1])

    def wild(x, t, cond):  # a noise guess whose x0 lands far outside the bounds
        return -5.0 * x - 3.0

    out = ddim_sample(wild, np.zeros((32, 1)), schedule, 3, steps=20, rng=np.random.default_rng(5), clip_x0=(low, high))
    assert np.all(out >= low - 1e-6) and np.all(out <= high + 1e-6)
    loose = ddim_sample(wild, np.zeros((32, 1)), schedule, 3, steps=20, rng=np.random.default_rng(5), clip_x0=6.0)
    assert np.any(loose < low) or np.any(loose > high)  # the bound, not the guess, kept them in
