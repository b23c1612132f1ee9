"""The wrist frame of a hand, built from its keypoints.

Convention (the same as ``wrist_pose`` in msg/Hand.msg, and the frame retargeting works in):
- origin: the wrist joint;
- z: palm normal pointing out of the palm (palmar side), for both hands;
- x: from the wrist towards the midpoint of the index and little MCP joints, orthogonal to z;
- y: z cross x (right-handed): towards the little finger on a right hand, the thumb on a left hand.
"""

import numpy as np

from hand_pose_ros.hand.joints import Handedness, HandLandmark


def wrist_frame(keypoints: np.ndarray, side: Handedness | int) -> np.ndarray:
    """Rotation of the wrist frame in the keypoints' frame.

    Args:
        keypoints: (21, 3) joint positions in any right-handed frame (e.g. metres, camera frame).
        side: which hand the keypoints belong to.

    Returns:
        (3, 3) rotation matrix whose columns are the wrist frame's x, y, z axes expressed in the
        keypoints' frame.

    Raises:
        ValueError: when the palm is degenerate (wrist, index MCP and little MCP collinear or
            coincident) or the input is not finite.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (21, 3) or not np.all(np.isfinite(kp)):
        raise ValueError(f"wrist_frame needs finite (21, 3) keypoints, got shape {kp.shape}")
    wrist = kp[HandLandmark.WRIST]
    to_index = kp[HandLandmark.INDEX_MCP] - wrist
    to_little = kp[HandLandmark.LITTLE_MCP] - wrist
    # For a right hand index x little points out of the palm; a left hand is its mirror image.
    normal = np.cross(to_index, to_little)
    if Handedness(side) == Handedness.LEFT:
        normal = -normal
    forward = 0.5 * (to_index + to_little)
    n_norm = np.linalg.norm(normal)
    if n_norm < 1e-9 * max(1.0, np.linalg.norm(forward) ** 2):
        raise ValueError("wrist_frame: degenerate palm (wrist, index MCP, little MCP collinear)")
    z = normal / n_norm
    x = forward - np.dot(forward, z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)
