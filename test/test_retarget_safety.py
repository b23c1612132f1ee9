"""Safety of the commands: limits, velocity limits, hold then safe pose, garbage rejected."""

import numpy as np
import pytest

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.retarget import synthetic
from hand_pose_ros.retarget.config import RetargetConfig
from hand_pose_ros.retarget.safety import CommandGate, TrackingState, hand_rejection_reason

DT = 1.0 / 30.0


@pytest.fixture
def retargeter():
    return RetargetConfig(robot="allegro", side="right", hold_timeout=0.5,
                          return_velocity=0.5).build()


def assert_safe(retargeter, result):
    assert np.all(np.isfinite(result.positions))
    assert np.all(result.positions >= retargeter.lower - 1e-12)
    assert np.all(result.positions <= retargeter.upper + 1e-12)


def test_commands_respect_velocity_limits_and_joint_limits(retargeter):
    seq = synthetic.synthetic_sequence(120, Handedness.RIGHT, noise_std=0.004)
    previous = None
    for i, keypoints in enumerate(seq):
        result = retargeter.step(keypoints, i * DT)
        assert_safe(retargeter, result)
        if previous is not None:
            speed = np.abs(result.positions - previous) / DT
            assert np.all(speed <= retargeter.robot.velocity_limit + 1e-9)
        previous = result.positions
    assert result.state is TrackingState.TRACKING


def test_first_command_is_the_safe_pose(retargeter):
    fist = synthetic.camera_keypoints(synthetic.FIST, Handedness.RIGHT)
    result = retargeter.step(fist, 0.0)
    np.testing.assert_allclose(result.positions, retargeter.kin.to_full(retargeter.gate.safe_pose))


def test_tracking_loss_holds_then_moves_to_safe_pose_at_limited_speed(retargeter):
    fist = synthetic.camera_keypoints(synthetic.FIST, Handedness.RIGHT)
    t = 0.0
    for _ in range(90):  # reach the fist
        last = retargeter.step(fist, t)
        t += DT
    held = last.positions
    safe = retargeter.kin.to_full(retargeter.gate.safe_pose)
    assert np.max(np.abs(held - safe)) > 0.5
    while t < 90 * DT + 0.5 - 1e-6:  # within the hold timeout: hold
        result = retargeter.step(None, t)
        assert result.state is TrackingState.HOLDING
        np.testing.assert_allclose(result.positions, held)
        t += DT
    states, previous = [], held
    for _ in range(200):
        result = retargeter.step(None, t)
        assert_safe(retargeter, result)
        speed = np.abs(result.positions - previous) / DT
        assert np.all(speed <= retargeter.options.return_velocity + 1e-9)
        states.append(result.state)
        previous = result.positions
        t += DT
    assert states[0] is TrackingState.RETURNING and states[-1] is TrackingState.SAFE
    np.testing.assert_allclose(previous, safe, atol=1e-9)


@pytest.mark.parametrize("garbage", ["nan", "inf", "stretched_bone", "tiny_hand", "shape",
                                     "collapsed_palm"])
def test_garbage_hands_are_counted_skipped_and_never_commanded(retargeter, garbage):
    good = synthetic.camera_keypoints(synthetic.OPEN, Handedness.RIGHT)
    bad = good.copy()
    if garbage == "nan":
        bad[8, 1] = np.nan
    elif garbage == "inf":
        bad[3] = np.inf
    elif garbage == "stretched_bone":
        bad[8] = bad[7] + 5.0 * (bad[8] - bad[7])
    elif garbage == "tiny_hand":
        bad = good * 0.01
    elif garbage == "shape":
        bad = good[:20]
    elif garbage == "collapsed_palm":
        bad[:] = good[0]
    for i in range(30):
        retargeter.step(good, i * DT)
    before = retargeter.step(good, 30 * DT).positions
    result = retargeter.step(bad, 31 * DT)
    assert result.skip_reason
    assert sum(retargeter.skipped.values()) == 1
    assert_safe(retargeter, result)
    np.testing.assert_allclose(result.positions, before)  # held, not moved by garbage


def test_plausible_hands_of_other_sizes_pass():
    kp = synthetic.camera_keypoints(synthetic.HALF, Handedness.LEFT)
    for scale in (0.7, 1.0, 1.3):
        assert hand_rejection_reason(kp * scale) is None


def test_gate_survives_time_going_backwards_and_long_gaps():
    gate = CommandGate(np.zeros(2), np.ones(2), np.zeros(2), np.full(2, 1.0), 0.5, 0.5, 0.1)
    gate.update(np.ones(2), 10.0)
    step = gate.update(np.ones(2), 5.0)  # clock went back: no motion allowed
    np.testing.assert_allclose(step, 0.0)
    step = gate.update(np.ones(2), 100.0)  # long gap: at most max_step_dt of motion
    np.testing.assert_allclose(step, 0.1)
    step = gate.update(np.array([np.nan, 2.0]), 100.05)  # non-finite target: treated as lost
    assert gate.state is TrackingState.HOLDING
    np.testing.assert_allclose(step, 0.1)
