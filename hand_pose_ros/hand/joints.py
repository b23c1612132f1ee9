"""The canonical 21-joint hand layout used everywhere inside the project.

Order (MediaPipe's and FreiHAND's): wrist, then thumb (CMC, MCP, IP, TIP), then index, middle,
ring and little finger (MCP, PIP, DIP, TIP). Datasets in another order are remapped once, at
load time, to this one.
"""

from enum import IntEnum


class HandLandmark(IntEnum):
    """Index of each of the 21 hand joints in every keypoint array of the project."""

    WRIST = 0
    THUMB_CMC = 1
    THUMB_MCP = 2
    THUMB_IP = 3
    THUMB_TIP = 4
    INDEX_MCP = 5
    INDEX_PIP = 6
    INDEX_DIP = 7
    INDEX_TIP = 8
    MIDDLE_MCP = 9
    MIDDLE_PIP = 10
    MIDDLE_DIP = 11
    MIDDLE_TIP = 12
    RING_MCP = 13
    RING_PIP = 14
    RING_DIP = 15
    RING_TIP = 16
    LITTLE_MCP = 17
    LITTLE_PIP = 18
    LITTLE_DIP = 19
    LITTLE_TIP = 20


class Handedness(IntEnum):
    """Side of a hand, as carried in messages (``label`` strings are ``"right"``/``"left"``)."""

    RIGHT = 0
    LEFT = 1

    @property
    def label(self) -> str:
        return self.name.lower()


NUM_JOINTS = len(HandLandmark)

# Lower-case names, used for TF child frames (prefix + side + joint) and in reports.
JOINT_NAMES: tuple[str, ...] = tuple(j.name.lower() for j in HandLandmark)

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")

# Finger index (into FINGERS) of every joint; the wrist belongs to no finger (-1).
FINGER_OF_JOINT: tuple[int, ...] = (-1,) + tuple(f for f in range(5) for _ in range(4))

# (parent, child) pairs of the kinematic tree, one per bone: each finger chain hangs off the wrist.
BONES: tuple[tuple[int, int], ...] = tuple(
    (0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k) for f in range(5) for k in range(4)
)
