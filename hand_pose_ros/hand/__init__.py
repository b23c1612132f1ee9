"""Hand conventions and the hand model.

joints (canonical order), frames (wrist frame); the open hand model: skeleton (bones, limits,
shape), mesh (template surface, skinning weights, part labels), model (HandModel interface,
OpenHandModel forward kinematics + skinning, numpy or torch), fit (joints -> parameters -> mesh),
poses (gesture presets, random valid poses); mano (a user-supplied MANO file, same interface).
The model modules import torch, so they are imported from their modules, not from here.
"""

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
