"""numpy <-> message conversion: exact round trips, right-first order, TF tree, no NaN out."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.nodes.convert import (
    hand_array_msg,
    hand_to_msg,
    hand_transforms,
    keypoints_from_msg,
)


def make_hand(side=Handedness.RIGHT, seed=0, **changes):
    rng = np.random.default_rng(seed)
    keypoints = rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.6]
    fields = dict(
        side=side,
        handedness_score=0.95,
        detection_score=0.9,
        tracking_id=3,
        keypoints=keypoints,
        keypoints_image=rng.uniform(0, 480, (21, 2)),
        keypoint_confidence=None,
        wrist_quaternion_xyzw=Rotation.from_matrix(wrist_frame(keypoints, side)).as_quat(),
    )
    fields.update(changes)
    return hand_to_msg(**fields), keypoints


def test_keypoints_round_trip_exactly():
    msg, keypoints = make_hand()
    np.testing.assert_array_equal(keypoints_from_msg(msg), keypoints)
    assert msg.handedness == "right" and list(msg.keypoint_confidence) == [1.0] * 21


def test_hand_array_puts_right_hands_first():
    left, _ = make_hand(Handedness.LEFT, 1)
    right, _ = make_hand(Handedness.RIGHT, 2)
    array = hand_array_msg(Header(frame_id="cam"), "m", [left, right])
    assert [h.handedness for h in array.hands] == ["right", "left"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("keypoints", np.full((21, 3), np.nan), "NaN or inf"),
        ("keypoints", np.zeros((20, 3)), "shape"),
        ("keypoints_image", np.full((21, 2), np.inf), "NaN or inf"),
        ("wrist_quaternion_xyzw", np.zeros(4), "zero"),
        ("detection_score", float("nan"), r"\[0, 1\]"),
        ("handedness_score", 1.5, r"\[0, 1\]"),
    ],
)
def test_non_finite_or_malformed_input_never_becomes_a_message(field, value, message):
    with pytest.raises(ValueError, match=message):
        make_hand(**{field: value})


def test_mesh_faces_must_index_existing_vertices():
    with pytest.raises(ValueError, match="outside"):
        make_hand(mesh_vertices=np.zeros((3, 3)), mesh_faces=np.array([[0, 1, 3]]))


def test_tf_tree_composes_back_to_the_keypoints():
    msg, keypoints = make_hand(Handedness.LEFT, 5)
    transforms = hand_transforms(Header(frame_id="cam"), msg, "hand_")
    wrist = transforms[0].transform
    rotation = Rotation.from_quat(
        [wrist.rotation.x, wrist.rotation.y, wrist.rotation.z, wrist.rotation.w]
    )
    origin = np.array([wrist.translation.x, wrist.translation.y, wrist.translation.z])
    for joint, t in enumerate(transforms[1:], start=1):
        assert t.header.frame_id == "hand_left_wrist"
        local = np.array([t.transform.translation.x, t.transform.translation.y,
                          t.transform.translation.z])
        np.testing.assert_allclose(rotation.apply(local) + origin, keypoints[joint], atol=1e-9)
    assert transforms[20].child_frame_id == "hand_left_little_tip"
