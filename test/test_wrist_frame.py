"""The wrist frame convention of msg/Hand.msg: z out of the palm, x towards the fingers."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import Handedness, HandLandmark


def flat_right_hand_facing_camera() -> np.ndarray:
    """Right palm towards the camera, fingers up: thumb side at +x (camera optical frame)."""
    kp = np.zeros((21, 3))
    kp[:, 2] = 0.5
    kp[HandLandmark.INDEX_MCP] = [0.03, -0.08, 0.5]
    kp[HandLandmark.LITTLE_MCP] = [-0.03, -0.07, 0.5]
    kp[HandLandmark.MIDDLE_MCP] = [0.01, -0.085, 0.5]
    return kp


def test_right_hand_palm_towards_camera_has_z_towards_camera_and_x_up():
    right_kp = flat_right_hand_facing_camera()
    rotation = wrist_frame(right_kp, Handedness.RIGHT)
    np.testing.assert_allclose(rotation[:, 2], [0, 0, -1], atol=1e-9)  # out of the palm
    assert rotation[1, 0] < -0.99  # x points up the image, towards the fingers
    towards_index = right_kp[HandLandmark.INDEX_MCP] - right_kp[HandLandmark.LITTLE_MCP]
    assert rotation[:, 1] @ towards_index < 0  # y towards the little finger
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_mirrored_left_hand_gets_the_mirrored_frame():
    right = flat_right_hand_facing_camera()
    left = right * [-1, 1, 1]  # mirror x: a left hand, palm still towards the camera
    r_left = wrist_frame(left, Handedness.LEFT)
    np.testing.assert_allclose(r_left[:, 2], [0, 0, -1], atol=1e-9)
    towards_index = left[HandLandmark.INDEX_MCP] - left[HandLandmark.LITTLE_MCP]
    assert r_left[:, 1] @ towards_index > 0  # y towards the thumb side on a left hand


def test_frame_rotates_with_the_hand():
    kp = flat_right_hand_facing_camera()
    turn = Rotation.from_euler("xyz", [0.3, -0.5, 1.1])
    rotated = turn.apply(kp - kp[0]) + kp[0]
    np.testing.assert_allclose(
        wrist_frame(rotated, Handedness.RIGHT), turn.as_matrix() @ wrist_frame(kp, 0), atol=1e-9
    )


@pytest.mark.parametrize("bad", [np.zeros((21, 3)), np.full((21, 3), np.nan), np.zeros((5, 3))])
def test_degenerate_or_invalid_keypoints_raise(bad):
    with pytest.raises(ValueError):
        wrist_frame(bad, Handedness.RIGHT)
