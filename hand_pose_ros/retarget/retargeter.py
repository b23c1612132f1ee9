"""Per-frame retargeting: human keypoints in, safe robot joint commands out.

One ``Retargeter`` drives one robot hand from one human hand:

1. reject implausible keypoints (counted by reason, logged at debug level);
2. express them in the human wrist frame (hand_pose_ros.hand.frames.wrist_frame: x from the
   wrist to the knuckles, z out of the palm), then in the robot's base frame through the
   robot's own wrist frame, built the same way from its wrist and knuckle points
   (``palm_frame`` of the robot config), so that "forwards" and "out of the palm" agree;
3. solve the chosen objective warm-started at the previous solution (optimizers.py);
4. smooth with a One Euro filter (hand_pose_ros.pipeline.filters);
5. pass through ``CommandGate`` (joint and velocity limits, hold, safe pose).

All joint vectors returned are for ``joint_names`` (every movable joint, mimic followers
included) in radians (metres for prismatic joints).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import HandLandmark
from hand_pose_ros.pipeline.filters import OneEuroFilter
from hand_pose_ros.retarget.config import RetargetConfig, RobotHandConfig
from hand_pose_ros.retarget.optimizers import OBJECTIVES, LevenbergMarquardt
from hand_pose_ros.retarget.safety import CommandGate, TrackingState, hand_rejection_reason

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetargetResult:
    """One command: ``positions`` for ``Retargeter.joint_names``; finite, inside the limits.

    ``skip_reason`` is empty when this call's keypoints were used, else why they were not
    ("no hand" when none was given). ``solve_time`` is the solver's wall time in seconds
    (0 when nothing was solved).
    """

    positions: np.ndarray
    state: TrackingState
    solve_time: float
    iterations: int
    skip_reason: str


def robot_wrist_rotation(points: dict[str, np.ndarray], palm_frame, side) -> np.ndarray:
    """(3, 3) robot wrist frame in the base frame: columns x, y, z, from three robot points.

    Uses hand.frames.wrist_frame on the robot's wrist / index-knuckle / little-knuckle points
    (``palm_frame`` names them), so the robot frame follows the same convention as the human's.
    """
    kp = np.zeros((21, 3))
    landmarks = (HandLandmark.WRIST, HandLandmark.INDEX_MCP, HandLandmark.LITTLE_MCP)
    for landmark, name in zip(landmarks, palm_frame, strict=True):
        kp[landmark] = points[name]
    return wrist_frame(kp, side)


class Retargeter:
    """Stateful retargeting of one human hand to one robot hand (see module docstring)."""

    def __init__(self, robot: RobotHandConfig, options: RetargetConfig):
        self.robot = robot
        self.options = options
        self.kin = robot.build_kinematics()
        kin = self.kin
        self.joint_names = kin.joint_names
        self.side = options.handedness

        open_pose = np.clip(np.zeros(kin.num_active), kin.lower, kin.upper)
        points = dict(zip(kin.point_names, kin.point_positions(open_pose), strict=True))
        self.wrist_rotation = robot_wrist_rotation(points, robot.palm_frame, self.side)

        self.objective = OBJECTIVES[options.method](kin, robot)
        self.solver = LevenbergMarquardt(
            kin, self.objective, options.regularization, options.max_iterations
        )
        safe = open_pose.copy()
        velocity = np.full(kin.num_active, robot.velocity_limit)
        for table, target, what in ((robot.safe_pose, safe, "safe_pose"),
                                    (robot.velocity_limits, velocity, "velocity_limits")):
            for joint, value in table.items():
                if joint not in kin.active_joint_names:
                    raise ValueError(
                        f"{robot.source}: {what} names {joint!r}, which is not an independent "
                        f"joint of {robot.name} ({list(kin.active_joint_names)})"
                    )
                target[kin.active_joint_names.index(joint)] = value
        self.gate = CommandGate(
            kin.lower, kin.upper, safe, velocity, options.hold_timeout,
            options.return_velocity, options.max_step_dt,
        )
        self.filter = (
            OneEuroFilter(options.filter_min_cutoff, options.filter_beta, options.filter_d_cutoff)
            if options.filter_min_cutoff > 0
            else None
        )
        self.skipped: Counter[str] = Counter()
        self.reset()

    @property
    def lower(self) -> np.ndarray:
        """Lower joint limits for ``joint_names``."""
        return self.kin.full_lower

    @property
    def upper(self) -> np.ndarray:
        return self.kin.full_upper

    def reset(self) -> None:
        """Start over: solver warm start at the safe pose, filter and latches cleared."""
        self._q = self.gate.safe_pose.copy()
        self.gate.reset()
        self.objective.reset()
        if self.filter is not None:
            self.filter.reset()

    def human_in_base(self, keypoints: np.ndarray) -> np.ndarray:
        """(21, 3) keypoints re-expressed in the robot base frame's orientation, wrist at 0.

        Raises ValueError for a degenerate palm (see wrist_frame).
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        in_wrist = (kp - kp[HandLandmark.WRIST]) @ wrist_frame(kp, self.side)
        return in_wrist @ self.wrist_rotation.T

    def solve(self, keypoints: np.ndarray) -> tuple[np.ndarray, int]:
        """Active-joint solution for camera-frame keypoints (no filter, no gate), iterations.

        Updates the warm start. Keypoints must already have passed ``hand_rejection_reason``.
        """
        q, stats = self.solver.solve(self.human_in_base(keypoints), self._q)
        if np.all(np.isfinite(q)):
            self._q = q
        return q, stats.iterations

    def step(self, keypoints: np.ndarray | None, t: float) -> RetargetResult:
        """Command for time ``t`` (s, monotonic) from one human hand's keypoints, or None.

        ``keypoints``: (21, 3) metres in any right-handed frame (e.g. the camera frame) of the
        side this retargeter was built for. Never raises for bad keypoints: they are counted in
        ``skipped`` and treated like a lost hand.
        """
        reason = "no hand"
        solve_time, iterations = 0.0, 0
        target = None
        if keypoints is not None:
            reason = hand_rejection_reason(
                keypoints, self.options.bone_ratio_range, self.options.hand_scale_range
            ) or ""
            if not reason:
                tic = time.perf_counter()
                try:
                    q, iterations = self.solve(keypoints)
                except (ValueError, np.linalg.LinAlgError) as exc:
                    q, reason = None, f"solver failed: {exc}"
                solve_time = time.perf_counter() - tic
                if q is not None and not np.all(np.isfinite(q)):
                    q, reason = None, "non-finite solution"
                if q is not None:
                    target = self.filter(q, t) if self.filter is not None else q
            if reason:
                self.skipped[reason.split(":")[0]] += 1
                logger.debug("retargeting skipped a hand: %s", reason)
        command = self.gate.update(target, t)
        return RetargetResult(
            positions=self.kin.to_full(command),
            state=self.gate.state,
            solve_time=solve_time,
            iterations=iterations,
            skip_reason=reason,
        )
