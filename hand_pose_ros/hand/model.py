"""Hand models behind one interface: pose (+ shape) -> 21 joints and a skinned mesh.

``OpenHandModel`` is the project's own articulated hand (``skeleton`` + ``mesh``), with linear
blend skinning; it is redistributable and is what the renderer, the fitter and the estimators'
mesh output use. ``hand_pose_ros.hand.mano.ManoModel`` wraps a user-supplied MANO file behind
the same interface.

Forward kinematics runs on torch tensors (batched, differentiable, for training) and on numpy
arrays (for inference, where it is faster for one hand): pass either, get the same type back.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.mesh import PART_FINGER, PART_NAMES, hand_template
from hand_pose_ros.hand.skeleton import (
    BONE_LENGTHS,
    FINGER_REST_FRAMES,
    NUM_FRAMES,
    NUM_POSE_JOINTS,
    NUM_SHAPE,
    PALM_OFFSETS,
    POSE_JOINTS,
    SHAPE_PALM_WIDTH,
    SHAPE_SCALE,
    rest_joints,
)

Array = Any  # np.ndarray or torch.Tensor; functions below return the type they are given

# Finger of every articulated joint's frame (frames 1..15).
_FINGER_OF_FRAME = [f for f in range(5) for _ in range(3)]

# Reflection that turns the right-hand model frame into the left hand's (y flips sides).
MIRROR = np.diag([1.0, -1.0, 1.0])


@dataclass
class HandOutput:
    """Result of a hand model's forward pass, in the frame given by global_orient and transl.

    joints: (B, 21, 3) in the canonical joint order, metres.
    vertices: (B, V, 3) mesh vertices, metres (faces: the model's ``faces``); None when the
        caller asked for joints only.
    """

    joints: Array
    vertices: Array | None


class HandModel(ABC):
    """A parametric hand: pose and shape parameters -> joints (canonical order) and mesh.

    The meaning of pose and shape parameters is the model's own (see ``num_pose_params``,
    ``num_shape``); joints always come out in the project's canonical 21-joint order.
    """

    side: Handedness
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    num_shape: int
    pose_shape: tuple[int, ...]  # shape of one hand's pose parameters

    @property
    def num_vertices(self) -> int:
        return int(self.faces.max()) + 1

    @abstractmethod
    def forward(
        self,
        pose: Array,
        shape: Array | None = None,
        global_orient: Array | None = None,
        transl: Array | None = None,
    ) -> HandOutput:
        """Batched forward kinematics and skinning.

        Args:
            pose: (B, *pose_shape) pose parameters, radians.
            shape: (B, num_shape), zeros (the template hand) when None.
            global_orient: (B, 3) axis-angle rotation of the hand (model frame -> output frame).
            transl: (B, 3) translation applied last, metres.
        """


def array_module(array: Array):
    """numpy or torch, whichever the array belongs to."""
    return torch if isinstance(array, torch.Tensor) else np


def joint_rotation(xp, angles: Array) -> Array:
    """(..., 3) (flex, abd, twist) -> (..., 3, 3) rotation Rz(abd) @ Ry(-flex) @ Rx(twist)."""
    cf, ca, ct = xp.cos(angles[..., 0]), xp.cos(angles[..., 1]), xp.cos(angles[..., 2])
    sf, sa, st = xp.sin(angles[..., 0]), xp.sin(angles[..., 1]), xp.sin(angles[..., 2])
    sf_st, sf_ct = sf * st, sf * ct
    entries = [
        ca * cf, -sa * ct - ca * sf_st, sa * st - ca * sf_ct,
        sa * cf, ca * ct - sa * sf_st, -ca * st - sa * sf_ct,
        sf, cf * st, cf * ct,
    ]  # row-major
    return xp.stack(entries, -1).reshape(*angles.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: Array) -> Array:
    """(..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices (Rodrigues)."""
    xp = array_module(aa)
    # The epsilon keeps the gradient finite at zero rotation.
    theta = xp.sqrt((aa * aa).sum(-1) + 1e-16)[..., None, None]
    k = aa[..., None] / theta
    zero = aa[..., 0] * 0
    skew = xp.stack(
        [
            xp.stack([zero, -aa[..., 2], aa[..., 1]], -1),
            xp.stack([aa[..., 2], zero, -aa[..., 0]], -1),
            xp.stack([-aa[..., 1], aa[..., 0], zero], -1),
        ],
        -2,
    ) / theta
    outer = k @ k.swapaxes(-1, -2)
    eye = outer * 0 + (xp.eye(3) if xp is np else torch.eye(3, dtype=aa.dtype, device=aa.device))
    return xp.cos(theta) * eye + xp.sin(theta) * skew + (1 - xp.cos(theta)) * outer


@dataclass(frozen=True)
class _Constants:
    """Model constants as arrays of one type (numpy float64, or torch of one dtype/device)."""

    rest_frames: Array  # (5, 3, 3) rest rotation of each finger's joints
    palm_offsets: Array  # (5, 3)
    bone_lengths: Array  # (5, 3)
    vertices_homogeneous: Array  # (V, 4, 1) template vertices with a trailing 1
    weights: Array  # (V, 16)
    frame_rest_rot: Array  # (16, 3, 3) rest rotation of every skinning frame
    frame_rest_origin: Array  # (16, 3)
    mirror: Array  # (3, 3)


@cache
def _numpy_constants() -> _Constants:
    template = hand_template()
    joints = rest_joints()
    rest_rot = np.concatenate([np.eye(3)[None], np.repeat(FINGER_REST_FRAMES, 3, axis=0)])
    rest_origin = np.concatenate([np.zeros((1, 3)), joints[list(POSE_JOINTS)]])
    return _Constants(
        FINGER_REST_FRAMES, PALM_OFFSETS, BONE_LENGTHS,
        np.concatenate([template.vertices, np.ones((len(template.vertices), 1))], 1)[..., None],
        template.weights,
        rest_rot, rest_origin, MIRROR,
    )


@cache
def _torch_constants(dtype: torch.dtype, device: torch.device) -> _Constants:
    c = _numpy_constants()
    return _Constants(
        *(torch.as_tensor(getattr(c, f), dtype=dtype, device=device)
          for f in c.__dataclass_fields__)
    )


def _constants_like(array: Array) -> _Constants:
    if isinstance(array, torch.Tensor):
        return _torch_constants(array.dtype, array.device)
    return _numpy_constants()


def skeleton_forward(pose: Array, shape: Array) -> tuple[Array, Array, Array]:
    """Forward kinematics of the right hand in its model frame (wrist at the origin).

    Args:
        pose: (B, 15, 3) (flex, abd, twist) radians, joints in ``skeleton.POSE_JOINTS`` order.
        shape: (B, 7) log shape parameters (``skeleton.SHAPE_NAMES``).

    Returns:
        joints (B, 21, 3) metres, and the skinning frames: rotations (B, 16, 3, 3) and
        origins (B, 16, 3) (frame 0 the palm, frame 1 + k the k-th pose joint).
    """
    xp = array_module(pose)
    c = _constants_like(pose)
    batch = pose.shape[0]
    scale = xp.exp(shape[:, SHAPE_SCALE])[:, None, None]  # (B, 1, 1)
    finger_scale = xp.exp(shape[:, 1:6])[:, :, None]  # (B, 5, 1)
    one = shape[:, SHAPE_SCALE] * 0 + 1
    palm_scale = xp.stack([one, xp.exp(shape[:, SHAPE_PALM_WIDTH]), one], -1)[:, None, :]
    local = joint_rotation(xp, pose.reshape(batch, 5, 3, 3))  # (B, finger, level, 3, 3)
    bone_vectors = scale * finger_scale * c.bone_lengths  # (B, 5, 3)
    position = scale * palm_scale * c.palm_offsets  # (B, 5, 3) first joint of each finger
    rotation = c.rest_frames
    rotations, positions, origins = [], [position], []
    for level in range(3):
        rotation = rotation @ local[:, :, level]
        origins.append(position)
        position = position + rotation[..., 0] * bone_vectors[:, :, level, None]
        rotations.append(rotation)
        positions.append(position)
    wrist = xp.zeros_like(position[:, :1])
    joints = xp.concatenate([wrist, xp.stack(positions, 2).reshape(batch, 20, 3)], 1)
    palm_rot = xp.zeros_like(rotations[0][:, :1]) + c.frame_rest_rot[:1]
    frame_rot = xp.concatenate([palm_rot, xp.stack(rotations, 2).reshape(batch, 15, 3, 3)], 1)
    frame_origin = xp.concatenate([wrist, xp.stack(origins, 2).reshape(batch, 15, 3)], 1)
    return joints, frame_rot, frame_origin


def skin(frame_rot: Array, frame_origin: Array, shape: Array) -> Array:
    """Linear blend skinning of the template; (B, V, 3) vertices in the model frame.

    Each frame maps the template: into its rest frame, stretched along its bone by the bone's
    length factor and across it by the overall scale (the palm: by the palm factors), then to
    its posed frame. Weights blend those maps per vertex.
    """
    xp = array_module(frame_rot)
    c = _constants_like(frame_rot)
    scale = xp.exp(shape[:, SHAPE_SCALE])
    finger_scale = xp.exp(shape[:, 1:6])
    one = scale * 0 + 1
    palm_stretch = xp.stack([one, xp.exp(shape[:, SHAPE_PALM_WIDTH]), one], -1)
    across = finger_scale * 0 + 1
    finger_stretch = xp.stack([finger_scale, across, across], -1)  # along the bone, across
    stretch = xp.concatenate([palm_stretch[:, None], finger_stretch[:, _FINGER_OF_FRAME]], 1)
    stretch = stretch * scale[:, None, None]  # (B, 16, 3)
    # A_k = R_k diag(stretch_k) R0_k^T, b_k = origin_k - A_k origin0_k
    affine = (frame_rot * stretch[:, :, None, :]) @ c.frame_rest_rot.swapaxes(-1, -2)
    offset = frame_origin - (affine @ c.frame_rest_origin[..., None])[..., 0]
    batch = affine.shape[0]
    # Per frame a 3 x 4 map [A | b]; one (V, 16) x (16, B * 12) product blends them per vertex,
    # then each vertex's blended map multiplies its homogeneous template position.
    maps = xp.concatenate([affine, offset[..., None]], -1)  # (B, 16, 3, 4)
    flat = maps.reshape(batch, NUM_FRAMES, 12).swapaxes(0, 1).reshape(NUM_FRAMES, batch * 12)
    blended = (c.weights @ flat).reshape(-1, batch * 3, 4)
    vertices = (blended @ c.vertices_homogeneous).reshape(-1, batch, 3)
    return vertices.swapaxes(0, 1)


class OpenHandModel(HandModel):
    """The project's own hand model (right, or left by mirroring), with 15 x 3 pose angles."""

    num_shape = NUM_SHAPE
    pose_shape = (NUM_POSE_JOINTS, 3)

    def __init__(self, side: Handedness | int = Handedness.RIGHT) -> None:
        self.side = Handedness(side)
        template = hand_template()
        # Mirroring flips the orientation of triangles: reverse them to keep them outward.
        self.faces = template.faces if self.side == Handedness.RIGHT else template.faces[:, ::-1]
        self.weights = template.weights
        self.parts = template.parts
        self.part_names = PART_NAMES
        self.part_finger = PART_FINGER

    @property
    def num_vertices(self) -> int:
        return len(self.weights)

    def forward(self, pose, shape=None, global_orient=None, transl=None, *,
                with_vertices: bool = True) -> HandOutput:
        """See ``HandModel.forward``; pose is (B, 15, 3) (flex, abd, twist) in radians.

        numpy in, numpy out (float64); torch in, torch out (the input's dtype and device).
        ``with_vertices=False`` skips skinning (vertices is then None).
        """
        if pose.ndim != 3 or tuple(pose.shape[1:]) != self.pose_shape:
            raise ValueError(f"pose must be (B, 15, 3) radians, got {tuple(pose.shape)}")
        # The numpy (inference) path checks its inputs; torch (training) skips the check, which
        # would synchronise a GPU on every call.
        given = [a for a in (pose, shape, global_orient, transl) if a is not None]
        if array_module(pose) is np and not all(np.all(np.isfinite(a)) for a in given):
            raise ValueError("hand model inputs must be finite (pose, shape, orient, transl)")
        batch = pose.shape[0]
        if shape is None:
            shape = pose[:, :NUM_SHAPE, 0] * 0
        joints, frame_rot, frame_origin = skeleton_forward(pose, shape)
        vertices = skin(frame_rot, frame_origin, shape) if with_vertices else None
        c = _constants_like(pose)
        rotation = c.mirror if self.side == Handedness.LEFT else None
        if global_orient is not None:
            orient = axis_angle_to_matrix(global_orient.reshape(batch, 3))
            rotation = orient if rotation is None else orient @ rotation
        points = [joints] if vertices is None else [joints, vertices]
        if rotation is not None:
            points = [p @ rotation.swapaxes(-1, -2) for p in points]
        if transl is not None:
            points = [p + transl.reshape(batch, 1, 3) for p in points]
        return HandOutput(points[0], points[1] if vertices is not None else None)
