"""Skeleton of the open hand model: bone lengths, rest pose, joint degrees of freedom and limits.

Model frame (right hand, rest pose = flat open hand): origin at the wrist joint, x towards the
fingers, z out of the palm (palmar side), y = z cross x (towards the little finger). It is the
wrist frame of ``frames.wrist_frame`` for the rest pose. Units: metres and radians.

Pose: 15 articulated joints (every joint except the wrist and the fingertips, in the canonical
order: thumb CMC, MCP, IP, then MCP, PIP, DIP of index, middle, ring, little), each with three
angles (flexion, abduction, twist). A joint's local rotation is

    E(flex, abd, twist) = Rz(abd) @ Ry(-flex) @ Rx(twist)

in the joint's own frame, whose x runs along the bone it moves, z towards the palmar side of
that bone and y = z cross x. Positive flexion curls the bone towards the palm, positive
abduction moves it towards the little finger (for the thumb: dorsally, so palmar abduction is
negative), twist turns it about its own axis (for the thumb CMC: positive is the pronation of
opposition). Degrees of freedom a real joint lacks (PIP/DIP abduction and twist, ...)
have the limit range [0, 0].

Shape: 7 numbers, all logarithms so that zero is the template hand: overall scale (which is
also the palm's length), the lengths of the thumb, index, middle, ring and little finger (their
three articulated bones, relative to the scale) and the palm width (y, relative to the scale).
Each is observable from the 21 joints, so a fit to joints determines it.
"""

import numpy as np

NUM_POSE_JOINTS = 15
NUM_SHAPE = 7
# Rigid frames that move the skin: the palm (root, frame 0) and one per articulated joint.
NUM_FRAMES = 1 + NUM_POSE_JOINTS

SHAPE_NAMES: tuple[str, ...] = (
    "log_scale",
    "log_thumb_length",
    "log_index_length",
    "log_middle_length",
    "log_ring_length",
    "log_little_length",
    "log_palm_width",
)
SHAPE_SCALE, SHAPE_PALM_WIDTH = 0, 6

# Landmark index of pose joint k = 3 * finger + level (level 0: CMC/MCP, 1: MCP/PIP, 2: IP/DIP).
POSE_JOINTS: tuple[int, ...] = tuple(1 + 4 * f + level for f in range(5) for level in range(3))

# Mean segment lengths in mm from Buryanov A, Kotiuk V (2010), "Proportions of hand segments",
# Int. J. Morphol. 28(3):755-758, doi:10.4067/S0717-95022010000300015, Table I (thumb:
# metacarpal, proximal, distal phalanx; fingers: proximal, middle, distal phalanx; metacarpals
# below). Table I gives interarticular lengths (joint centre to joint centre, measured on
# radiographs of the right hands of 66 adults), so they serve directly as joint-centre distances.
_PHALANX_MM = np.array(
    [
        [46.22, 31.57, 21.67],  # thumb
        [39.78, 22.38, 15.82],  # index
        [44.63, 26.33, 17.40],  # middle
        [41.37, 25.65, 17.30],  # ring
        [32.74, 18.11, 15.96],  # little
    ]
)
_METACARPAL_MM = np.array([68.12, 64.60, 58.00, 53.69])  # index, middle, ring, little
# The fingertip keypoint sits on the skin at the end of the finger, beyond the distal phalanx;
# Table I of Buryanov & Kotiuk gives that soft tissue as 3.7-4.0 mm for the fingers (5.7 mm for
# the thumb), rounded here to one value.
_FINGERTIP_PAD_MM = 4.0
# The wrist keypoint is at the radiocarpal joint, proximal to the carpal bones.
_CARPUS_MM = 28.0

# (5, 3) template lengths of the articulated bones, metres: bone k of finger f goes from
# landmark 1 + 4f + k to 2 + 4f + k.
BONE_LENGTHS = _PHALANX_MM / 1000.0
BONE_LENGTHS[:, 2] += _FINGERTIP_PAD_MM / 1000.0

# Knuckle spacing across the palm (y, metres) and the dorsal arch (z): the middle and ring
# MCP heads sit slightly dorsal to the index and little ones.
_MCP_Y = np.array([-0.027, -0.008, 0.010, 0.027])
_MCP_Z = np.array([0.0, -0.003, -0.003, 0.0])
_mcp_reach = (_METACARPAL_MM + _CARPUS_MM) / 1000.0
_MCP_X = np.sqrt(_mcp_reach**2 - _MCP_Y**2 - _MCP_Z**2)

# (5, 3) wrist -> first joint of each finger (thumb CMC, finger MCPs) in the model frame.
PALM_OFFSETS = np.concatenate(
    [np.array([[0.028, -0.020, 0.010]]), np.stack([_MCP_X, _MCP_Y, _MCP_Z], axis=1)]
)


def _frame(x_dir: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
    """Rotation with columns x, y, z: x along x_dir, z the part of z_hint orthogonal to x."""
    x = x_dir / np.linalg.norm(x_dir)
    z = z_hint - np.dot(z_hint, x) * x
    z /= np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _finger_rest_frames() -> np.ndarray:
    """(5, 3, 3) rest-pose rotation of every finger's joints (straight fingers, one per finger)."""
    frames = []
    # Thumb near the palm plane, abducted about 40 degrees from the index and a little palmar.
    # Its pad faces the index (the thumb lies on its side when the hand is flat), so flexion
    # moves it across the palm, and its y axis points dorsally.
    thumb_x = np.array([np.cos(np.radians(40)), -np.sin(np.radians(40)), 0.27])
    towards_index = np.array([np.sin(np.radians(40)), np.cos(np.radians(40)), 0.0])
    palmar = np.array([0.0, 0.0, 1.0])
    pad = np.cos(np.radians(80)) * palmar + np.sin(np.radians(80)) * towards_index
    frames.append(_frame(thumb_x, pad))
    # Fingers slightly spread in the rest pose (degrees about the palm normal, + towards little).
    for splay in (-8.0, 0.0, 6.0, 14.0):
        a = np.radians(splay)
        frames.append(_frame(np.array([np.cos(a), np.sin(a), 0.0]), palmar))
    return np.stack(frames)


# (5, 3, 3): every joint of finger f has the rest rotation FINGER_REST_FRAMES[f] (model frame).
FINGER_REST_FRAMES = _finger_rest_frames()

# Active ranges of motion in degrees, (flex, abd, twist) x (low, high), per level of a finger.
# Flexion/extension of the finger and thumb MCP and IP joints rounded from the active ranges of
# Hume MC, Gellman H, McKellop H, Brumfield RH (1990), "Functional range of motion of the joints
# of the hand", J. Hand Surg. Am. 15(2):240-243, doi:10.1016/0363-5023(90)90102-w (it covers
# the MCP and IP joints only); abduction and the thumb CMC from the joint limits collected
# by Cobos S, Ferre M, Sanchez-Uran MA, Ortego J, Pena C (2008), "Efficient human hand
# kinematics for manipulation tasks", IEEE/RSJ IROS, pp. 2246-2251. Twist of the finger MCPs is
# the small passive axial play, a design value.
_FINGER_LIMITS_DEG = np.array(
    [
        [[-20, 90], [-15, 15], [-10, 10]],  # MCP
        [[0, 110], [0, 0], [0, 0]],  # PIP
        [[-10, 80], [0, 0], [0, 0]],  # DIP
    ],
    dtype=np.float64,
)
_THUMB_LIMITS_DEG = np.array(
    [
        [[-20, 50], [-50, 15], [-15, 60]],  # CMC: -abd is palmar abduction, +twist pronation
        [[-10, 60], [-10, 10], [0, 0]],  # MCP
        [[-15, 80], [0, 0], [0, 0]],  # IP
    ],
    dtype=np.float64,
)


def _limits() -> np.ndarray:
    lim = np.concatenate([_THUMB_LIMITS_DEG] + [_FINGER_LIMITS_DEG] * 4).copy()
    # The index deviates more radially and the little finger more ulnarly than the others.
    lim[3 * 1, 1] = [-20, 15]
    lim[3 * 4, 1] = [-15, 30]
    return np.radians(lim)


# (15, 3, 2) lower and upper limit of every pose angle, radians.
POSE_LIMITS = _limits()
# (15, 3) True where a degree of freedom can move at all.
FREE_DOFS = POSE_LIMITS[..., 1] > POSE_LIMITS[..., 0]


def clamp_pose(pose: np.ndarray) -> np.ndarray:
    """Pose (..., 15, 3) in radians clipped to the joint limits."""
    return np.clip(pose, POSE_LIMITS[..., 0], POSE_LIMITS[..., 1])


def rest_joints(shape: np.ndarray | None = None) -> np.ndarray:
    """(21, 3) joint positions of the rest pose in the model frame (metres) for a shape."""
    scale, finger, palm = shape_factors(np.zeros(NUM_SHAPE) if shape is None else shape)
    joints = np.zeros((21, 3))
    for f in range(5):
        base = 1 + 4 * f
        joints[base] = scale * palm * PALM_OFFSETS[f]
        for k in range(3):
            step = scale * finger[f] * BONE_LENGTHS[f, k] * FINGER_REST_FRAMES[f][:, 0]
            joints[base + k + 1] = joints[base + k] + step
    return joints


def shape_factors(shape: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Overall scale, (5,) finger length factors and (3,) palm x/y/z factors of one shape."""
    shape = np.asarray(shape, dtype=np.float64)
    if shape.shape != (NUM_SHAPE,):
        raise ValueError(f"shape must have {NUM_SHAPE} values, got shape {shape.shape}")
    palm = np.array([1.0, np.exp(shape[SHAPE_PALM_WIDTH]), 1.0])
    return float(np.exp(shape[SHAPE_SCALE])), np.exp(shape[1:6]), palm
