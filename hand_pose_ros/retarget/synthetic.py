"""Synthetic human hand keypoints: anthropometric bone lengths, named poses, smooth motion.

Used by the retargeting tests and ``hand-pose retarget-bench`` so that both need no hand tracker.
The hand is an adult hand (middle-finger wrist-to-tip length 0.19 m) built as planar finger
chains on a flat palm. Poses are joint-angle sets; ``pinch`` solves the thumb angles so the
thumb tip touches the index tip.

Frames: the hand is built in its wrist frame (hand_pose_ros.hand.frames: x from the wrist towards
the knuckles, z out of the palm, y = z x x), then placed in the camera optical frame (x right,
y down, z forward) facing the camera. Keypoints are in metres, in the project's 21-joint order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.joints import BONES, Handedness

# Right hand, wrist frame, metres. Knuckle (MCP) positions of index, middle, ring, little.
_MCP = np.array(
    [[0.088, -0.024, 0.0], [0.091, -0.004, 0.0], [0.086, 0.014, 0.0], [0.077, 0.031, 0.0]]
)
# Proximal, middle, distal phalanx (distal: joint to fingertip) of index, middle, ring, little.
_PHALANGES = np.array(
    [[0.041, 0.025, 0.021], [0.046, 0.028, 0.023], [0.043, 0.027, 0.022], [0.034, 0.020, 0.019]]
)
_THUMB_CMC = np.array([0.024, -0.026, 0.006])
_THUMB_LENGTHS = np.array([0.042, 0.032, 0.028])  # metacarpal, proximal, distal (to the tip)
# Direction of the thumb metacarpal at rest: forwards and out towards the thumb side.
_THUMB_REST = np.array([0.62, -0.78, 0.10]) / np.linalg.norm([0.62, -0.78, 0.10])


@dataclass(frozen=True)
class HandPose:
    """Joint angles of the synthetic hand, radians.

    fingers: (4, 4) rows index, middle, ring, little; columns abduction (positive spreads away
    from the middle finger), MCP, PIP, DIP flexion (positive curls towards the palm).
    thumb: (4,) CMC abduction (positive: away from the palm plane's thumb direction towards the
    fingers), opposition (rotation of the metacarpal about the wrist x axis, towards the palm),
    MCP and IP flexion.
    """

    fingers: np.ndarray = field(default_factory=lambda: np.zeros((4, 4)))
    thumb: np.ndarray = field(default_factory=lambda: np.zeros(4))


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    return Rotation.from_rotvec(axis * angle).apply(v)


def _finger_chain(base: np.ndarray, direction: np.ndarray, axis: np.ndarray, angles, lengths):
    points, p, d = [], base, direction
    for angle, length in zip(angles, lengths, strict=True):
        d = _rotate(d, axis, angle)
        p = p + length * d
        points.append(p)
    return points


def _thumb_points(thumb: np.ndarray) -> list[np.ndarray]:
    abduction, opposition, mcp, ip = thumb
    d = _rotate(_THUMB_REST, np.array([0.0, 0.0, 1.0]), abduction)
    d = _rotate(d, np.array([-1.0, 0.0, 0.0]), opposition)  # turns the thumb towards +z
    # The thumb curls towards the little finger's side of the palm and out of the palm.
    toward = np.array([0.0, 1.0, 1.0]) / np.sqrt(2.0)
    axis = np.cross(d, toward)
    axis /= np.linalg.norm(axis)
    p1 = _THUMB_CMC + _THUMB_LENGTHS[0] * d
    return [_THUMB_CMC, p1] + _finger_chain(p1, d, axis, (mcp, ip), _THUMB_LENGTHS[1:])


def wrist_frame_keypoints(pose: HandPose) -> np.ndarray:
    """(21, 3) keypoints of a right hand in its wrist frame, metres."""
    z = np.array([0.0, 0.0, 1.0])
    kp = [np.zeros(3)] + _thumb_points(np.asarray(pose.thumb, dtype=np.float64))
    for f in range(4):
        abduction, mcp, pip, dip = pose.fingers[f]
        spread = np.sign(f - 1.5)  # index spreads to -y (thumb side), ring/little to +y
        d = _rotate(_MCP[f] / np.linalg.norm(_MCP[f]), z, spread * abduction)
        axis = np.cross(d, z)
        axis /= np.linalg.norm(axis)
        kp += [_MCP[f]] + _finger_chain(_MCP[f], d, axis, (mcp, pip, dip), _PHALANGES[f])
    return np.array(kp)


def _pose(fingers, thumb) -> HandPose:
    return HandPose(np.array(fingers, dtype=np.float64), np.array(thumb, dtype=np.float64))


def _pinch_pose() -> HandPose:
    """Index half flexed, thumb angles solved so the two tips touch (others loosely curled)."""
    base = _pose(
        [[0.0, 0.85, 0.95, 0.55]] + [[0.0, 0.35, 0.4, 0.2]] * 3,
        [0.0, 0.6, 0.3, 0.3],
    )
    target = wrist_frame_keypoints(base)[8]

    def tip_error(thumb):
        return wrist_frame_keypoints(replace(base, thumb=thumb))[4] - target

    lo, hi = np.array([-1.0, 0.0, -0.3, -0.3]), np.array([1.5, 2.0, 1.5, 1.5])
    sol = least_squares(tip_error, np.array(base.thumb), bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
    return replace(base, thumb=sol.x)


OPEN = _pose([[0.08, 0.05, 0.05, 0.03]] * 4, [0.0, 0.15, 0.1, 0.1])
FIST = _pose([[0.0, 1.45, 1.65, 1.0]] * 4, [0.35, 0.95, 0.7, 0.6])
PINCH = _pinch_pose()
POINT = _pose([[0.0, 0.05, 0.05, 0.05]] + [[0.0, 1.45, 1.6, 1.0]] * 3, [0.3, 0.9, 0.6, 0.5])
HALF = _pose([[0.05, 0.7, 0.8, 0.5]] * 4, [0.1, 0.5, 0.4, 0.3])
POSES: dict[str, HandPose] = {
    "open": OPEN, "fist": FIST, "pinch": PINCH, "point": POINT, "half": HALF
}

#: Bone lengths (metres) of the synthetic adult hand, in the order of hand.joints.BONES.
NOMINAL_BONE_LENGTHS = np.array(
    [np.linalg.norm(np.subtract(*wrist_frame_keypoints(OPEN)[[c, p]])) for p, c in BONES]
)


# Wrist frame -> camera: fingers up the image (wrist x -> camera -y), palm towards the camera
# (wrist z -> camera -z); columns are the wrist axes in camera coordinates.
_FACING_CAMERA = Rotation.from_matrix(np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1.0]]))


def camera_keypoints(
    pose: HandPose,
    side: Handedness | int = Handedness.RIGHT,
    rotation: Rotation | None = None,
    translation=(0.0, 0.0, 0.45),
) -> np.ndarray:
    """(21, 3) camera-frame keypoints of a hand in ``pose``, metres.

    ``rotation`` turns the wrist frame into the camera frame; by default the palm faces the
    camera with the fingers pointing up the image (camera -y). A left hand is the mirror image
    of the right one (its wrist-frame y is negated, as in hand.frames).
    """
    kp = wrist_frame_keypoints(pose)
    if Handedness(side) == Handedness.LEFT:
        kp = kp * np.array([1.0, -1.0, 1.0])
    if rotation is None:
        # wrist x -> camera -y (up), wrist z (out of the palm) -> camera -z (towards the camera).
        rotation = _FACING_CAMERA
    return rotation.apply(kp) + np.asarray(translation, dtype=np.float64)


def _blend(a: HandPose, b: HandPose, s: float) -> HandPose:
    return HandPose(a.fingers + s * (b.fingers - a.fingers), a.thumb + s * (b.thumb - a.thumb))


def synthetic_sequence(
    num_frames: int = 300,
    side: Handedness | int = Handedness.RIGHT,
    seed: int = 0,
    noise_std: float = 0.0,
    frames_per_move: int = 20,
) -> np.ndarray:
    """(num_frames, 21, 3) camera-frame keypoints of a hand moving through the named poses.

    The hand goes open -> pinch -> open -> fist -> point -> half -> random poses, with smooth
    (cosine) transitions of ``frames_per_move`` frames and a slowly turning, drifting wrist.
    ``noise_std`` (metres) adds independent Gaussian noise to every coordinate.
    """
    rng = np.random.default_rng(seed)
    keyframes = [OPEN, PINCH, OPEN, FIST, POINT, HALF]
    while len(keyframes) * frames_per_move < num_frames + frames_per_move:
        s = rng.uniform(0.0, 1.0)
        keyframes.append(_blend(OPEN, FIST, s) if rng.uniform() < 0.5 else _blend(OPEN, PINCH, s))
    wobble = rng.normal(size=3)
    out = np.empty((num_frames, 21, 3))
    for i in range(num_frames):
        k, r = divmod(i, frames_per_move)
        s = 0.5 - 0.5 * np.cos(np.pi * r / frames_per_move)
        pose = _blend(keyframes[k], keyframes[k + 1], s)
        t = i / 30.0
        rot = Rotation.from_rotvec(0.35 * np.sin(0.7 * t + wobble)) * _FACING_CAMERA
        trans = (0.05 * np.sin(0.5 * t), 0.04 * np.cos(0.4 * t), 0.45 + 0.05 * np.sin(0.3 * t))
        out[i] = camera_keypoints(pose, side, rot, trans)
    if noise_std > 0:
        out += rng.normal(scale=noise_std, size=out.shape)
    return out
