"""Fit the open hand model to 21 joints, so that estimators that predict only joints get a mesh.

Two stages, both in numpy (float64):
1. Analytic: the shape from the targets' bone lengths and palm width, the hand's rotation and
   translation from the palm (Kabsch), then, finger by finger from the palm outwards, each
   joint's angles from the direction of the target bone it moves; the twist of joints that
   have one comes from the plane of the next two bones. Angles are clamped to the limits.
2. A few damped Gauss-Newton (Levenberg-Marquardt) steps on every free parameter at once with
   the analytic Jacobian of revolute chains, clamping to the limits after each step.
A previous frame's fit can seed stage 2 (warm start) when it explains the targets better.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.model import (
    MIRROR,
    OpenHandModel,
    axis_angle_to_matrix,
    joint_rotation,
    skeleton_forward,
)
from hand_pose_ros.hand.skeleton import (
    BONE_LENGTHS,
    FINGER_REST_FRAMES,
    FREE_DOFS,
    NUM_SHAPE,
    PALM_OFFSETS,
    POSE_LIMITS,
    SHAPE_PALM_WIDTH,
    SHAPE_SCALE,
)

# Landmarks of the palm (wrist, thumb CMC, finger MCPs) and their template positions.
_PALM_IDS = np.array([0, 1, 5, 9, 13, 17])
_PALM_TEMPLATE = np.concatenate([np.zeros((1, 3)), PALM_OFFSETS])
# Landmark of the joint, child and grandchild at each (finger, level).
_JOINT_IDS = 1 + 4 * np.arange(5)[:, None] + np.arange(3)[None, :]
# Descendant landmarks of every pose joint (15, 21), for the Jacobian.
_DESCENDANTS = np.zeros((15, 21), dtype=bool)
for _f in range(5):
    for _level in range(3):
        _DESCENDANTS[3 * _f + _level, 2 + 4 * _f + _level : 5 + 4 * _f] = True
_FINGER_MASK = np.zeros((5, 21), dtype=bool)  # landmarks of each finger
_FINGER_MASK[np.arange(5)[:, None], _JOINT_IDS[:, :1] + np.arange(4)] = True
# Landmarks a finger's length moves: all of the finger's but its first joint (5, 21, 1).
_FINGER_LENGTH_MASK = (_FINGER_MASK & ~np.isin(np.arange(21), _JOINT_IDS[:, 0]))[..., None]
_ROTATION_AXES = np.eye(3)[:, None, :]  # (3, 1, 3)
_TRANSLATION_COLUMNS = np.broadcast_to(np.eye(3)[:, None, :], (3, 21, 3))
_NUM_FREE = int(FREE_DOFS.sum())
# A finger's bending plane is trusted for the twist only when it bends by more than this.
_MIN_BEND_SIN = np.sin(np.radians(5.0))
_LOW, _HIGH = POSE_LIMITS[..., 0], POSE_LIMITS[..., 1]
# Mean joint error (metres) below which refining further is not worth the time.
_GOOD_ENOUGH = 1e-5


@dataclass
class HandFit:
    """Model parameters that reproduce a set of joints, in the targets' frame.

    global_orient: (3,) axis-angle, radians; transl: (3,) wrist position, metres;
    pose: (15, 3) radians; shape: (7,) log shape; joints: (21, 3) the fitted model's joints,
    metres; mean_error: mean distance between fitted and target joints, metres.
    """

    global_orient: np.ndarray
    transl: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    joints: np.ndarray
    mean_error: float


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis with broadcasting (faster than np.cross on small arrays)."""
    return np.stack(
        [
            a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
            a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
            a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
        ],
        -1,
    )


def _kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t minimising |R source + t - target| (no reflection)."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((target - mu_t).T @ (source - mu_s))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return rotation, mu_t - rotation @ mu_s


class HandFitter:
    """Fits ``OpenHandModel`` parameters to 21 target joints of one hand (right or left).

    Args:
        side: the hand the targets belong to; a left hand is fitted as the mirrored right hand.
        iterations: Levenberg-Marquardt steps after the analytic initialisation.
        shape: a fixed (7,) shape to use instead of estimating it from every frame.
    """

    def __init__(
        self,
        side: Handedness | int = Handedness.RIGHT,
        iterations: int = 4,
        shape: np.ndarray | None = None,
    ) -> None:
        self.side = Handedness(side)
        self.model = OpenHandModel(self.side)
        self.iterations = int(iterations)
        self.fixed_shape = None if shape is None else np.asarray(shape, np.float64).copy()
        if self.fixed_shape is not None and self.fixed_shape.shape != (NUM_SHAPE,):
            raise ValueError(f"shape must have {NUM_SHAPE} values, got {self.fixed_shape.shape}")

    def fit(self, joints: np.ndarray, init: HandFit | None = None) -> HandFit:
        """Fit the model to (21, 3) joints in metres, in any frame.

        Args:
            joints: target joints of this fitter's side, canonical order.
            init: the previous frame's fit of the same hand, used as a warm start.

        Raises:
            ValueError: when the joints are not a finite (21, 3) array or the palm is degenerate.
        """
        target = np.asarray(joints, dtype=np.float64)
        if target.shape != (21, 3) or not np.all(np.isfinite(target)):
            raise ValueError(f"fit needs finite (21, 3) joints in metres, got {target.shape}")
        mirrored = self.side == Handedness.LEFT
        if mirrored:
            target = target @ MIRROR
        if np.linalg.matrix_rank(target[_PALM_IDS] - target[0], tol=1e-6) < 2:
            raise ValueError("fit: degenerate palm (wrist, CMC and MCP joints are collinear)")
        best = self._evaluate(self._analytic(target), target)
        if init is not None and best.error > _GOOD_ENOUGH:
            warm = self._evaluate(self._from_fit(init), target)
            if warm.error < best.error:
                best = warm
        damping = 1e-3
        for _ in range(self.iterations):
            previous = best.error
            best, damping = self._step(best, target, damping)
            if best.error < _GOOD_ENOUGH or 0 < previous - best.error < 0.01 * _GOOD_ENOUGH:
                break
        if not np.isfinite(best.error):
            raise ValueError("fit: these joints do not describe a hand (no finite fit)")
        return self._to_fit(best, mirrored)

    def vertices(self, fit: HandFit) -> np.ndarray:
        """(V, 3) mesh of a fit, in the targets' frame (metres); faces: ``self.model.faces``."""
        return self.model.forward(
            fit.pose[None], fit.shape[None], fit.global_orient[None], fit.transl[None]
        ).vertices[0]

    # --- parameter state: (rotation (3, 3), translation (3,), pose (15, 3), shape (7,)) ---

    def _analytic(self, target: np.ndarray):
        """Closed-form initial parameters (right-hand targets)."""
        palm = target[_PALM_IDS]
        # Size first, so that the palm rotation compares like with like.
        size = np.linalg.norm(palm - palm[0], axis=1).sum() / np.linalg.norm(
            _PALM_TEMPLATE, axis=1
        ).sum()
        stretch = np.array([size, size, size])
        for _ in range(2):
            rotation, translation = _kabsch(_PALM_TEMPLATE * stretch, palm)
            local = (palm - translation) @ rotation  # targets in the palm's frame
            q = _PALM_TEMPLATE
            # Least-squares scale along the palm (x, z) and across it (y); bounded so that
            # implausible targets still give finite parameters.
            scale = np.sum(local[:, [0, 2]] * q[:, [0, 2]]) / np.sum(q[:, [0, 2]] ** 2)
            scale = max(scale, 0.2 * size)
            width = max(np.sum(local[:, 1] * q[:, 1]) / np.sum(q[:, 1] ** 2), 0.2 * scale)
            stretch = np.array([scale, width, scale])
        if self.fixed_shape is not None:
            shape = self.fixed_shape.copy()
        else:
            bones = np.linalg.norm(
                target[_JOINT_IDS + 1] - target[_JOINT_IDS], axis=2
            ).sum(axis=1) / BONE_LENGTHS.sum(axis=1)
            shape = np.empty(NUM_SHAPE)
            shape[SHAPE_SCALE] = np.log(scale)
            shape[1:6] = np.log(np.maximum(bones, 0.05) / scale)
            shape[SHAPE_PALM_WIDTH] = np.log(width / scale)
        rotation, translation = _kabsch(
            _PALM_TEMPLATE * np.exp([shape[0], shape[0] + shape[SHAPE_PALM_WIDTH], shape[0]]),
            palm,
        )
        return rotation, translation, self._chains(target, rotation, translation, shape), shape

    def _chains(self, target, rotation, translation, shape) -> np.ndarray:
        """Per-joint angles from the target bone directions, all fingers at once."""
        scale = np.exp(shape[SHAPE_SCALE])
        palm = np.array([1.0, np.exp(shape[SHAPE_PALM_WIDTH]), 1.0])
        lengths = scale * np.exp(shape[1:6])[:, None] * BONE_LENGTHS
        position = translation + (scale * palm * PALM_OFFSETS) @ rotation.T  # (5, 3)
        frame = rotation @ FINGER_REST_FRAMES  # (5, 3, 3) parent frame of level 0
        pose = np.zeros((5, 3, 3))
        for level in range(3):
            child = target[_JOINT_IDS[:, level] + 1]
            direction = (np.swapaxes(frame, -1, -2) @ (child - position)[..., None])[..., 0]
            direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
            # direction = (cos f cos a, cos f sin a, sin f): take |a| < 90 degrees (joints
            # abduct far less), which leaves flexion free to pass 90 degrees (PIP joints do).
            angles = np.zeros((5, 3))
            forward = np.where(direction[:, 0] < 0, -1.0, 1.0)
            angles[:, 1] = np.arctan2(forward * direction[:, 1], forward * direction[:, 0])
            x, y, z = direction.T
            angles[:, 0] = np.arctan2(z, x * np.cos(angles[:, 1]) + y * np.sin(angles[:, 1]))
            if level < 2:
                # Twist: the rest of the finger bends in one plane (its hinges are parallel);
                # turn this frame so that the plane is its x-z plane.
                untwisted = frame @ joint_rotation(np, angles)
                rest = target[_JOINT_IDS[:, 0] + 3] - child  # this joint's child to the tip
                nxt = (np.swapaxes(untwisted, -1, -2) @ rest[..., None])[..., 0]
                nxt /= np.linalg.norm(nxt, axis=1, keepdims=True) + 1e-12
                bent = np.hypot(nxt[:, 1], nxt[:, 2]) > _MIN_BEND_SIN
                angles[:, 2] = np.where(bent, np.arctan2(-nxt[:, 1], nxt[:, 2]), 0.0)
            angles = np.clip(angles, _LOW[level::3], _HIGH[level::3])
            frame = frame @ joint_rotation(np, angles)
            position = position + frame[:, :, 0] * lengths[:, level, None]
            pose[:, level] = angles
        return pose.reshape(15, 3)

    def _from_fit(self, fit: HandFit):
        rotation = Rotation.from_rotvec(fit.global_orient).as_matrix()
        translation = np.asarray(fit.transl, np.float64)
        if self.side == Handedness.LEFT:  # stored for the left hand: undo the mirroring
            rotation, translation = MIRROR @ rotation @ MIRROR, MIRROR @ translation
        shape = self.fixed_shape if self.fixed_shape is not None else fit.shape
        return rotation, translation, np.array(fit.pose, np.float64), np.array(shape, np.float64)

    @staticmethod
    def _evaluate(params, target) -> "_Evaluated":
        rotation, translation, pose, shape = params
        local, frame_rot, _ = skeleton_forward(pose[None], shape[None])
        world = local[0] @ rotation.T + translation
        residual = world - target
        error = float(np.sqrt((residual * residual).sum(axis=1)).mean())
        return _Evaluated(params, world, frame_rot[0], residual.reshape(-1), error)

    def _jacobian(self, current: "_Evaluated") -> np.ndarray:
        """d(joints)/d(rotation increment, translation, free pose angles, shape): (63, N)."""
        rotation, translation, pose, shape = current.params
        world = current.world
        rel = world - translation
        columns = [_cross(_ROTATION_AXES, rel[None]), _TRANSLATION_COLUMNS]
        # World axes of the three rotations of every pose joint: E = Rz(abd) Ry(-flex) Rx(twist)
        # composed onto the parent frame.
        joint_rot = rotation @ current.frame_rot[1:]  # (15, 3, 3) posed frame of every joint
        parent = joint_rot @ np.swapaxes(joint_rotation(np, pose), -1, -2)
        abd = pose[:, 1]
        flex_axis_local = np.stack([np.sin(abd), -np.cos(abd), np.zeros(15)], axis=1)
        axes = np.stack(
            [(parent @ flex_axis_local[..., None])[..., 0], parent[:, :, 2], joint_rot[:, :, 0]],
            axis=1,
        )  # (15, 3 dofs, 3)
        centers = world[_JOINT_IDS.reshape(-1)]  # (15, 3)
        dpose = _cross(axes[:, :, None, :], (world[None] - centers[:, None])[:, None])
        columns.append((dpose * _DESCENDANTS[:, None, :, None])[FREE_DOFS])
        if self.fixed_shape is None:
            finger = (world[None] - world[_JOINT_IDS[:, 0]][:, None]) * _FINGER_LENGTH_MASK
            width = rotation[:, 1] * np.exp(shape[SHAPE_SCALE] + shape[SHAPE_PALM_WIDTH])
            palm_width = (_FINGER_MASK[..., None] * (PALM_OFFSETS[:, 1, None, None] * width)).sum(0)
            columns += [rel[None], finger, palm_width[None]]
        return np.concatenate(columns).reshape(-1, 63).T

    def _step(self, current: "_Evaluated", target, damping: float):
        """One Levenberg-Marquardt step; returns the better evaluation and the next damping."""
        jac = self._jacobian(current)
        normal = jac.T @ jac
        diagonal = np.diag_indices_from(normal)
        normal[diagonal] = normal[diagonal] * (1.0 + damping) + 1e-9
        delta = -np.linalg.solve(normal, jac.T @ current.residual)
        rotation, translation, pose, shape = current.params
        rotation = axis_angle_to_matrix(delta[:3]) @ rotation
        pose = pose.copy()
        pose[FREE_DOFS] += delta[6 : 6 + _NUM_FREE]
        if self.fixed_shape is None:
            shape = shape + delta[6 + _NUM_FREE :]
        params = (rotation, translation + delta[3:6], np.clip(pose, _LOW, _HIGH), shape)
        candidate = self._evaluate(params, target)
        if candidate.error >= current.error:  # rejected: damp harder, keep the current state
            return current, damping * 10.0
        return candidate, damping / 3.0

    def _to_fit(self, best: "_Evaluated", mirrored: bool) -> HandFit:
        rotation, translation, pose, shape = best.params
        world = best.world
        if mirrored:
            # Left hand = mirror of the right: R_left = M R M, t_left = M t, joints mirrored.
            rotation = MIRROR @ rotation @ MIRROR
            translation, world = MIRROR @ translation, world @ MIRROR
        return HandFit(
            Rotation.from_matrix(rotation).as_rotvec(), translation, pose, shape, world,
            best.error,
        )


@dataclass
class _Evaluated:
    """Parameters (rotation, translation, pose, shape) with their joints and residual."""

    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    world: np.ndarray  # (21, 3)
    frame_rot: np.ndarray  # (16, 3, 3) skinning frames in the model frame
    residual: np.ndarray  # (63,)
    error: float
