"""Safety of the joint commands: plausible hands only, limits, velocity limits, tracking loss.

``hand_rejection_reason`` refuses keypoints that cannot be a human hand (non-finite, bone
lengths far from a human's). ``CommandGate`` turns solutions, or their absence, into commands:

- TRACKING: a new solution arrived; the command moves towards it at most at the joint velocity
  limits and stays inside the joint limits.
- HOLDING: no usable hand for at most ``hold_timeout`` seconds; the last command is repeated.
- RETURNING: after that, the command moves to the safe pose at ``return_velocity``.
- SAFE: the safe pose is reached (also the state before the first hand).

Commands are always finite and inside the limits; the first command is the safe pose, and
from there every change is rate limited.
"""

from __future__ import annotations

import enum

import numpy as np

from hand_pose_ros.hand.joints import BONES
from hand_pose_ros.retarget.synthetic import NOMINAL_BONE_LENGTHS


class TrackingState(enum.Enum):
    SAFE = "safe"
    TRACKING = "tracking"
    HOLDING = "holding"
    RETURNING = "returning"


def hand_rejection_reason(
    keypoints: np.ndarray,
    bone_ratio_range: tuple[float, float] = (0.5, 2.0),
    hand_scale_range: tuple[float, float] = (0.5, 2.0),
) -> str | None:
    """Why ``keypoints`` (21, 3, metres) cannot be retargeted, or None if they can.

    The hand's size is its median bone length ratio to a nominal adult hand
    (``hand_scale_range`` bounds it); each bone divided by that size must lie in
    ``bone_ratio_range``, so a child's or a large hand passes but a broken skeleton does not.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (21, 3):
        return f"wrong shape: {kp.shape}, expected (21, 3)"
    if not np.all(np.isfinite(kp)):
        return "non-finite keypoints"
    lengths = np.linalg.norm(kp[[c for _, c in BONES]] - kp[[p for p, _ in BONES]], axis=1)
    ratios = lengths / NOMINAL_BONE_LENGTHS
    size = float(np.median(ratios))
    if not hand_scale_range[0] <= size <= hand_scale_range[1]:
        return (f"implausible hand size: {size:.2f}x a nominal adult hand, "
                f"outside {hand_scale_range}")
    relative = ratios / size
    worst = int(np.argmax(np.abs(np.log(relative))))
    if not bone_ratio_range[0] <= relative[worst] <= bone_ratio_range[1]:
        return (f"implausible bone length: bone {BONES[worst]} is {relative[worst]:.2f}x "
                "its expected length")
    return None


class CommandGate:
    """Rate-limited, limit-respecting joint commands with hold-then-safe-pose on tracking loss.

    Works on the active joints (radians or metres); times are seconds on any monotonic clock.
    """

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        safe_pose: np.ndarray,
        velocity_limits: np.ndarray,
        hold_timeout: float,
        return_velocity: float,
        max_step_dt: float,
    ):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.safe_pose = np.clip(np.asarray(safe_pose, dtype=np.float64), self.lower, self.upper)
        self.velocity_limits = np.asarray(velocity_limits, dtype=np.float64)
        if not np.all(np.isfinite(self.safe_pose)) or np.any(self.velocity_limits <= 0):
            raise ValueError("safe pose must be finite and velocity limits positive")
        self.hold_timeout = hold_timeout
        self.return_velocity = return_velocity
        self.max_step_dt = max_step_dt
        self.reset()

    def reset(self) -> None:
        """Back to the safe pose, as before the first hand."""
        self.command = self.safe_pose.copy()
        self.state = TrackingState.SAFE
        self._last_time: float | None = None
        self._last_seen: float | None = None

    def _step_dt(self, t: float) -> float:
        dt = 0.0 if self._last_time is None else t - self._last_time
        self._last_time = t if self._last_time is None else max(t, self._last_time)
        # Time going backwards or a long gap must not allow a large jump.
        return float(np.clip(dt, 0.0, self.max_step_dt))

    def _move_towards(self, target: np.ndarray, max_delta: np.ndarray) -> None:
        delta = np.clip(target - self.command, -max_delta, max_delta)
        self.command = np.clip(self.command + delta, self.lower, self.upper)

    def update(self, target: np.ndarray | None, t: float) -> np.ndarray:
        """The command at time ``t`` given a new solution ``target`` (None: no usable hand)."""
        dt = self._step_dt(t)
        if target is not None and np.all(np.isfinite(target)):
            self._last_seen = t
            self.state = TrackingState.TRACKING
            self._move_towards(np.clip(target, self.lower, self.upper), self.velocity_limits * dt)
        elif self._last_seen is not None and t - self._last_seen <= self.hold_timeout:
            self.state = TrackingState.HOLDING
        elif self.state is not TrackingState.SAFE:
            self.state = TrackingState.RETURNING
            self._move_towards(self.safe_pose, np.minimum(self.velocity_limits,
                                                          self.return_velocity) * dt)
            if np.allclose(self.command, self.safe_pose, atol=1e-9):
                self.state = TrackingState.SAFE
        return self.command.copy()
