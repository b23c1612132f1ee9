"""Known human poses give the expected robot poses, for every robot config and method."""

import numpy as np
import pytest
from robot_cases import robot_params

from hand_pose_ros.hand.joints import JOINT_NAMES, Handedness
from hand_pose_ros.retarget import synthetic
from hand_pose_ros.retarget.config import RetargetConfig, robot_configs


def retarget_static(retargeter, pose_name: str, side: str) -> dict[str, np.ndarray]:
    """Robot point positions after a few frames of a static human pose."""
    hand = Handedness.RIGHT if side == "right" else Handedness.LEFT
    keypoints = synthetic.camera_keypoints(synthetic.POSES[pose_name], hand)
    for _ in range(3):
        q, _ = retargeter.solve(keypoints)
    return dict(zip(retargeter.kin.point_names, retargeter.kin.point_positions(q), strict=True))


def extension(retargeter, points: dict[str, np.ndarray]) -> dict[str, float]:
    """Fingertip distance from the wrist relative to the robot's open (zero) pose."""
    kin = retargeter.kin
    open_q = np.clip(np.zeros(kin.num_active), kin.lower, kin.upper)
    ref = dict(zip(kin.point_names, kin.point_positions(open_q), strict=True))
    tips = retargeter.robot.dexpilot.fingertips
    return {t: np.linalg.norm(points[t] - points["wrist"])
            / np.linalg.norm(ref[t] - ref["wrist"]) for t in tips}


@pytest.mark.parametrize("method", ["vector", "dexpilot", "position"])
@pytest.mark.parametrize(("robot", "side"), robot_params())
def test_open_hand_opens_and_fist_flexes_the_robot(robot, side, method):
    retargeter = RetargetConfig(robot=robot, side=side, method=method).build()
    opened = extension(retargeter, retarget_static(retargeter, "open", side))
    assert min(opened.values()) > 0.85, opened
    fist = extension(retargeter, retarget_static(retargeter, "fist", side))
    fingers = [v for t, v in fist.items() if t != "thumb_tip"]
    assert max(fingers) < 0.6, fist
    assert all(fist[t] < opened[t] for t in fist)


@pytest.mark.parametrize(("robot", "side"), robot_params())
def test_dexpilot_pinch_brings_thumb_and_index_tips_within_1cm(robot, side):
    retargeter = RetargetConfig(robot=robot, side=side, method="dexpilot").build()
    pinch = retarget_static(retargeter, "pinch", side)
    assert np.linalg.norm(pinch["thumb_tip"] - pinch["index_tip"]) < 0.01
    retargeter.reset()
    opened = retarget_static(retargeter, "open", side)
    assert np.linalg.norm(opened["thumb_tip"] - opened["index_tip"]) > 0.05


@pytest.mark.parametrize("robot", sorted({r for r, _ in robot_configs()}))
def test_left_and_right_configs_fit_mirrored_hands_equally_well(robot):
    errors = {}
    for side in ("right", "left"):
        try:
            retargeter = RetargetConfig(robot=robot, side=side, filter_min_cutoff=0).build()
        except FileNotFoundError:
            pytest.skip(f"{robot} not fetched: run `hand-pose fetch-robots`")
        hand = Handedness.RIGHT if side == "right" else Handedness.LEFT
        seq = synthetic.synthetic_sequence(60, hand, seed=1)
        kin, scale = retargeter.kin, retargeter.robot.scale
        idx = {n: i for i, n in enumerate(kin.point_names)}
        tips = list(retargeter.robot.dexpilot.fingertips)
        err = []
        for keypoints in seq:
            q, _ = retargeter.solve(keypoints)
            p = kin.point_positions(q)
            human = retargeter.human_in_base(keypoints)
            h = human[[JOINT_NAMES.index(t) for t in tips]]
            err.append(np.linalg.norm(p[[idx[t] for t in tips]] - p[idx["wrist"]] - scale * h,
                                      axis=1).mean())
        errors[side] = np.mean(err)
    assert abs(errors["right"] - errors["left"]) < 1e-3, errors
