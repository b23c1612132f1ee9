"""Retargeting objectives and their solver: bounded, warm-started Levenberg-Marquardt.

Every method is a weighted least-squares problem over robot point combinations:

    r_m(q) = w_m * (sum_k D[m, k] * p_k(q) - t_m),   m = 1..M,

where p_k are robot points (base frame, metres), D picks "to minus from" for a vector (+1, -1)
or one point for a position, and t_m is the target taken from the human hand. Methods differ
only in D, the targets and the weights:
- vector: wrist->fingertip and finger-segment vectors, human vectors times the robot's scale;
- dexpilot: vector terms plus all fingertip-pair vectors; a thumb-finger pair the human
  pinches is pulled together with a high weight (DexPilot, Handa et al. 2020, as adapted in
  dex-retargeting);
- position: point positions relative to the robot's wrist point (for offline data).

The solver minimises 1/2 |r|^2 + lambda/2 |q - q_prev|^2 subject to the joint limits, starting
at the previous solution: Gauss-Newton steps with Levenberg damping on the joints that are
free (a joint at a bound whose gradient points outwards is held there), steps projected onto
the bounds. Analytic Jacobians come from ``HandKinematics``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from hand_pose_ros.hand.joints import JOINT_NAMES
from hand_pose_ros.retarget.config import DexPilotConfig, RobotHandConfig
from hand_pose_ros.retarget.kinematics import HandKinematics

_HUMAN = {name: i for i, name in enumerate(JOINT_NAMES)}


@dataclass(frozen=True)
class SolveStats:
    """What one solve did: iterations, final cost (1/2 |r|^2, m^2), wall time (s)."""

    iterations: int
    cost: float


class Objective(ABC):
    """Rows of D (from/to robot points) and per-frame targets and weights from a human hand."""

    def __init__(self, kin: HandKinematics, rows: list[tuple[str | None, str]]):
        index = {n: i for i, n in enumerate(kin.point_names)}
        self.rows = rows
        self.select = np.zeros((len(rows), len(kin.point_names)))
        for m, (origin, task) in enumerate(rows):
            self.select[m, index[task]] += 1.0
            if origin is not None:
                self.select[m, index[origin]] -= 1.0
        self._human_task = np.array([_HUMAN[t] for _, t in rows])
        self._human_origin = np.array([_HUMAN[o] if o else 0 for o, _ in rows])

    def human_vectors(self, human: np.ndarray) -> np.ndarray:
        """(M, 3) human counterparts of the rows (positions are relative to the wrist)."""
        return human[self._human_task] - human[self._human_origin]

    @abstractmethod
    def update(self, human: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets (M, 3) in metres and weights (M,) for this frame.

        ``human``: (21, 3) human keypoints in the robot base frame's orientation, relative to
        the wrist, unscaled (metres).
        """

    def reset(self) -> None:  # noqa: B027 - optional hook: most objectives keep no state
        """Forget per-sequence state (DexPilot's pinch latches)."""


class VectorObjective(Objective):
    """Robot vectors follow scaled human vectors (``vector.pairs`` of the robot config)."""

    def __init__(self, kin: HandKinematics, robot: RobotHandConfig):
        super().__init__(kin, [(a, b) for a, b, _ in robot.vectors])
        self.scale = robot.scale
        self.weights = np.array([w for _, _, w in robot.vectors])

    def update(self, human):
        return self.scale * self.human_vectors(human), self.weights


class PositionObjective(Objective):
    """Robot points follow scaled human joint positions, placed at the robot's wrist point."""

    def __init__(self, kin: HandKinematics, robot: RobotHandConfig):
        super().__init__(kin, [(None, p) for p in robot.position_points])
        self.scale = robot.scale
        wrist = kin.point_positions(np.clip(np.zeros(kin.num_active), kin.lower, kin.upper))
        self.wrist = wrist[kin.point_names.index("wrist")]
        self.weights = np.ones(len(self.rows))

    def update(self, human):
        return self.wrist + self.scale * self.human_vectors(human), self.weights


class DexPilotObjective(Objective):
    """Fingertip-pair vectors + wrist->fingertip vectors with DexPilot's pinch projection."""

    def __init__(self, kin: HandKinematics, robot: RobotHandConfig):
        cfg: DexPilotConfig = robot.dexpilot
        tips = list(cfg.fingertips)
        n = len(tips)
        # Pairs as dex-retargeting orders them: thumb-finger pairs first, then finger-finger.
        pairs = [(tips[j], tips[i]) for i in range(n - 1) for j in range(i + 1, n)]
        rows = pairs + [("wrist", t) for t in tips]
        super().__init__(kin, rows)
        self.cfg = cfg
        self.scale = robot.scale
        self.num_pinch = n - 1
        self.num_pairs = len(pairs)
        # Finger-finger pair (a, b) may be held apart only when a and b both pinch the thumb.
        self._pair_fingers = np.array(
            [(i - 1, j - 1) for i in range(1, n - 1) for j in range(i + 1, n)], dtype=int
        ).reshape(-1, 2)
        self.latched = np.zeros(self.num_pinch, dtype=bool)
        # dex-retargeting weighs each wrist->tip vector like all pair vectors together.
        self.wrist_weight = float(self.num_pairs + n)

    def reset(self):
        self.latched[:] = False

    def update(self, human):
        vec = self.human_vectors(human)
        dist = np.linalg.norm(vec, axis=1)
        k, p = self.num_pinch, self.num_pairs
        self.latched[dist[:k] < self.cfg.project_dist] = True
        self.latched[dist[:k] > self.cfg.escape_dist] = False
        fingers = (
            self.latched[self._pair_fingers[:, 0]]
            & self.latched[self._pair_fingers[:, 1]]
            & (dist[k:p] <= self.cfg.finger_project_dist)
        )
        projected = np.concatenate([self.latched, fingers])
        direction = vec[:p] / (dist[:p, None] + 1e-9)
        eta = np.r_[np.full(k, self.cfg.eta1), np.full(p - k, self.cfg.eta2)]
        targets = self.scale * vec
        targets[:p][projected] = (direction * eta[:, None])[projected]
        high = np.r_[np.full(k, self.cfg.pinch_weight), np.full(p - k, self.cfg.finger_weight)]
        weights = np.r_[np.where(projected, high, 1.0), np.full(len(vec) - p, self.wrist_weight)]
        return targets, weights


OBJECTIVES = {"vector": VectorObjective, "dexpilot": DexPilotObjective,
              "position": PositionObjective}


class LevenbergMarquardt:
    """Bounded, damped Gauss-Newton solver of an ``Objective`` on a ``HandKinematics``."""

    def __init__(
        self,
        kin: HandKinematics,
        objective: Objective,
        regularization: float = 5e-4,
        max_iterations: int = 20,
        step_tolerance: float = 1e-3,
        cost_tolerance: float = 1e-3,
        restart_rms: float = 0.01,
    ):
        self.kin = kin
        self.objective = objective
        self.regularization = regularization
        self.max_iterations = max_iterations
        self.step_tolerance = step_tolerance
        self.cost_tolerance = cost_tolerance
        self.restart_rms = restart_rms
        # Second start for frames the warm start fits badly: the middle of the joint ranges.
        self.restart_pose = 0.5 * (kin.lower + kin.upper)
        n = kin.num_active
        self._eye = np.eye(n)
        # Evaluate only the points the objective uses.
        used = np.flatnonzero(np.any(objective.select != 0, axis=0))
        kin.use_points([kin.point_names[i] for i in used])
        self._select = objective.select[:, used]

    def _evaluate(self, q, targets, sqrt_w, q_prev):
        pos, jac = self.kin.points_and_jacobian(q)
        k, _, n = jac.shape
        vec = self._select @ pos
        jvec = (self._select @ jac.reshape(k, 3 * n)).reshape(-1, 3, n)
        r = ((vec - targets) * sqrt_w[:, None]).ravel()
        jr = (jvec * sqrt_w[:, None, None]).reshape(-1, n)
        dq = q - q_prev
        cost = 0.5 * (r @ r + self.regularization * (dq @ dq))
        return r, jr, cost

    def solve(self, human: np.ndarray, q_prev: np.ndarray) -> tuple[np.ndarray, SolveStats]:
        """Joint positions (active joints) for one frame, warm-started at ``q_prev``.

        Args:
            human: (21, 3) human keypoints, base-frame orientation, wrist at the origin (m).
            q_prev: previous solution (active joints); also the starting point.
        """
        targets, weights = self.objective.update(human)
        sqrt_w = np.sqrt(weights)
        q, cost, it = self._descend(q_prev, targets, sqrt_w, q_prev)
        # A warm start can sit in a local minimum (e.g. a finger folded the wrong way) that
        # later frames would inherit; when the fit is poor, also start from mid-range.
        if np.sqrt(2.0 * cost / weights.sum()) > self.restart_rms:
            q2, cost2, it2 = self._descend(self.restart_pose, targets, sqrt_w, q_prev)
            it += it2
            if cost2 < cost:
                q, cost = q2, cost2
        return q, SolveStats(iterations=it, cost=float(cost))

    def _descend(self, q_start, targets, sqrt_w, q_prev):
        """Levenberg-Marquardt from ``q_start``; returns (q, cost, iterations)."""
        lo, hi, lam = self.kin.lower, self.kin.upper, self.regularization
        q = np.clip(q_start, lo, hi)
        r, jr, cost = self._evaluate(q, targets, sqrt_w, q_prev)
        mu = 1e-4
        it = 0
        while it < self.max_iterations:
            it += 1
            grad = jr.T @ r + lam * (q - q_prev)
            hess = jr.T @ jr + lam * self._eye
            free = ~(((q <= lo) & (grad > 0)) | ((q >= hi) & (grad < 0)))
            hess.flat[:: len(q) + 1] *= 1.0 + mu  # Marquardt: damp each joint by its curvature
            if free.all():
                step = np.linalg.solve(hess, -grad)
            else:
                step = np.zeros_like(q)
                step[free] = np.linalg.solve(hess[np.ix_(free, free)], -grad[free])
            q_new = np.clip(q + step, lo, hi)
            r_new, jr_new, cost_new = self._evaluate(q_new, targets, sqrt_w, q_prev)
            if cost_new < cost:
                moved = np.max(np.abs(q_new - q))
                gain = cost - cost_new
                q, r, jr, cost = q_new, r_new, jr_new, cost_new
                mu = max(mu * 0.3, 1e-9)
                if moved < self.step_tolerance or gain < self.cost_tolerance * cost:
                    break
            else:
                mu *= 10.0
                if mu > 1e6:
                    break
        return q, cost, it
