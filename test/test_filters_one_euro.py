"""The 1-euro filter: smooths jitter at rest, follows fast motion, restarts cleanly."""

import numpy as np
import pytest

from hand_pose_ros.pipeline.filters import OneEuroFilter


def run(f, signal, dt=1 / 30):
    return np.array([f(x, i * dt) for i, x in enumerate(signal)])


def test_first_sample_and_constant_signal_pass_unchanged():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    signal = np.tile(np.array([[0.1, -0.2, 0.5]]), (30, 1))
    assert np.allclose(run(f, signal), signal)


def test_jitter_at_rest_is_reduced():
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0, 0.003, (300, 21, 3))
    out = run(OneEuroFilter(min_cutoff=1.0, beta=0.0), noisy)
    assert out[30:].std() < 0.4 * noisy[30:].std()


def test_speed_term_reduces_lag_on_fast_motion():
    ramp = np.linspace(0.0, 2.0, 60)[:, None]  # 1 m/s
    slow = run(OneEuroFilter(min_cutoff=1.0, beta=0.0), ramp)
    fast = run(OneEuroFilter(min_cutoff=1.0, beta=20.0), ramp)
    lag_slow = np.abs(slow[-1] - ramp[-1]).item()
    lag_fast = np.abs(fast[-1] - ramp[-1]).item()
    assert lag_fast < 0.3 * lag_slow


def test_reset_and_time_going_backwards_restart_from_the_sample():
    f = OneEuroFilter(min_cutoff=0.5)
    f(np.zeros(3), 0.0)
    f(np.zeros(3), 0.1)
    assert np.allclose(f(np.ones(3), 0.05), 1.0), "time going backwards restarts"
    f(np.zeros(3), 0.2)
    f.reset()
    assert np.allclose(f(np.full(3, 7.0), 0.3), 7.0)


def test_shape_change_restarts():
    f = OneEuroFilter()
    f(np.zeros((21, 3)), 0.0)
    assert f(np.ones(3), 0.1).shape == (3,)


@pytest.mark.parametrize("kwargs", [{"min_cutoff": 0.0}, {"d_cutoff": -1.0},
                                    {"beta": -0.1}, {"min_cutoff": float("nan")}])
def test_invalid_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        OneEuroFilter(**kwargs)
