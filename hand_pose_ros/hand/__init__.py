"""Hand conventions and the hand model: joint order, skeleton, (later) mesh model and fitting."""

from hand_pose_ros.hand.joints import (
    BONES,
    FINGER_OF_JOINT,
    FINGERS,
    JOINT_NAMES,
    NUM_JOINTS,
    Handedness,
    HandLandmark,
)

__all__ = [
    "BONES",
    "FINGERS",
    "FINGER_OF_JOINT",
    "JOINT_NAMES",
    "NUM_JOINTS",
    "HandLandmark",
    "Handedness",
]
