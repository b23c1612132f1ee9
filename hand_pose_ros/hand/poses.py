"""Pose presets (canonical gestures) and random valid poses of the open hand model.

A pose is a (15, 3) array of (flex, abd, twist) radians per articulated joint (see
``skeleton``). Gestures are written per finger in degrees; names follow common usage, with the
HaGRID gesture class names (used by CLIP-Hand's gesture templates) as aliases where they match.
"""

import numpy as np

from hand_pose_ros.hand.skeleton import FREE_DOFS, POSE_LIMITS, clamp_pose

# Thumb: (CMC flex, CMC abd, CMC twist, MCP flex, MCP abd, IP flex); fingers: (MCP flex,
# MCP abd, PIP flex, DIP flex). Degrees.
_STRAIGHT = (0, 0, 0, 0)
_CURLED = (85, 0, 100, 60)
_THUMB_OPEN = (0, 0, 0, 0, 0, 0)
_THUMB_OVER_FINGERS = (-3, -2, 24, 53, 2, 54)  # folded over the curled index and middle


def _pose(thumb, index, middle, ring, little) -> np.ndarray:
    pose = np.zeros((15, 3))
    cmc_flex, cmc_abd, cmc_twist, mcp_flex, mcp_abd, ip_flex = thumb
    pose[0:3] = [[cmc_flex, cmc_abd, cmc_twist], [mcp_flex, mcp_abd, 0], [ip_flex, 0, 0]]
    for f, (mcp_flex, mcp_abd, pip_flex, dip_flex) in enumerate((index, middle, ring, little)):
        pose[3 + 3 * f : 6 + 3 * f] = [[mcp_flex, mcp_abd, 0], [pip_flex, 0, 0], [dip_flex, 0, 0]]
    return clamp_pose(np.radians(pose))


# Thumb angles of the gestures where the thumb touches something were solved once so that its
# tip lands on the target (the index tip for pinch/ok, the curled fingers otherwise).
_PINCH_INDEX = (45, 0, 50, 25)
_PINCH_THUMB = (17, -14, 29, 19, 3, 20)
GESTURES: dict[str, np.ndarray] = {
    "open": _pose(_THUMB_OPEN, _STRAIGHT, _STRAIGHT, _STRAIGHT, _STRAIGHT),
    "spread": _pose((-10, -5, 0, 0, 0, 0), (0, -12, 0, 0), (0, 0, 0, 0), (0, 8, 0, 0),
                    (0, 18, 0, 0)),
    "stop": _pose((15, 0, 0, 5, 0, 0), (0, 6, 0, 0), _STRAIGHT, (0, -5, 0, 0), (0, -12, 0, 0)),
    "relaxed": _pose((10, -10, 15, 10, 0, 10), (20, 0, 25, 10), (25, 0, 30, 12), (30, 0, 32, 14),
                     (35, 0, 35, 15)),
    "fist": _pose(_THUMB_OVER_FINGERS, _CURLED, _CURLED, _CURLED, _CURLED),
    "point": _pose((6, -6, 23, 54, 2, 51), _STRAIGHT, _CURLED, _CURLED, _CURLED),
    "pinch": _pose(_PINCH_THUMB, _PINCH_INDEX, (40, 0, 45, 20), (45, 0, 45, 20), (50, 0, 45, 20)),
    "ok": _pose(_PINCH_THUMB, _PINCH_INDEX, (5, 0, 5, 5), (5, 5, 5, 5), (5, 12, 5, 5)),
    "thumbs_up": _pose((-15, -20, 10, 0, 0, 0), _CURLED, _CURLED, _CURLED, _CURLED),
    "peace": _pose((20, -14, 21, 59, 2, 50), (0, -10, 0, 0), (0, 8, 0, 0), _CURLED, _CURLED),
    "three": _pose((39, -22, 19, 57, 3, 43), (0, -10, 0, 0), _STRAIGHT, (0, 10, 0, 0), _CURLED),
    "four": _pose((38, -12, -7, 60, 3, 57), (0, -8, 0, 0), _STRAIGHT, (0, 5, 0, 0),
                  (0, 12, 0, 0)),
    "rock": _pose((12, -9, 22, 58, 2, 51), (0, -8, 0, 0), _CURLED, _CURLED, (0, 12, 0, 0)),
    "call": _pose((-15, -10, 0, 0, 0, 0), _CURLED, _CURLED, _CURLED, (0, 15, 0, 0)),
}
# HaGRID class names for the same hand poses (their "inverted" classes differ only in the
# global rotation, which is not part of a pose).
GESTURE_ALIASES: dict[str, str] = {
    "palm": "spread",
    "like": "thumbs_up",
    "dislike": "thumbs_up",
    "one": "point",
    "mute": "point",
    "two_up": "peace",
}


def gesture(name: str) -> np.ndarray:
    """(15, 3) pose of a named gesture (see GESTURES and GESTURE_ALIASES), radians."""
    key = GESTURE_ALIASES.get(name, name)
    if key not in GESTURES:
        names = sorted(GESTURES) + sorted(GESTURE_ALIASES)
        raise KeyError(f"unknown gesture {name!r}; known: {', '.join(names)}")
    return GESTURES[key].copy()


def random_poses(count: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """(count, 15, 3) poses drawn uniformly within the joint limits, radians (seeded)."""
    rng = np.random.default_rng(seed)
    low, high = POSE_LIMITS[..., 0], POSE_LIMITS[..., 1]
    poses = low + (high - low) * rng.random((count, 15, 3))
    return np.where(FREE_DOFS, poses, 0.0)
