"""Robot hand configs (one YAML per hand and side) and retargeting options, with ``build()``.

A robot hand config (config/robots/<name>_<side>.yaml) says which description file to use,
which robot points follow which human joints, how big the robot is relative to a human hand,
joint limits, couplings, the safe pose and velocity limits. Adding a hand needs a URDF or MJCF
file and one such YAML, no code. Points are named after the human joint they follow
(hand.joints.JOINT_NAMES, e.g. ``index_tip``).

``RetargetConfig`` holds the per-run options (robot, side, method, filter, safety timing) and
``build()`` returns a ready ``Retargeter``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hand_pose_ros.hand.joints import JOINT_NAMES, Handedness
from hand_pose_ros.paths import cache_dir

METHODS = ("vector", "dexpilot", "position")
SIDES = ("right", "left")

# Where bundled robot descriptions live (files whose licence allows shipping them).
BUNDLED_ASSETS = Path(__file__).resolve().parent / "assets"


def robot_config_dirs() -> list[Path]:
    """Folders searched for <robot>_<side>.yaml: the checkout's and the installed config/robots."""
    here = Path(__file__).resolve().parents[2] / "config" / "robots"
    installed = Path(sys.prefix) / "share" / "hand_pose_ros" / "config" / "robots"
    return [d for d in (here, installed) if d.is_dir()]


def robot_assets_cache() -> Path:
    """Where ``hand-pose fetch-robots`` puts descriptions that cannot be bundled."""
    return cache_dir() / "robots"


def robot_configs() -> list[tuple[str, str]]:
    """(robot, side) of every robot hand config found."""
    return sorted(
        {tuple(p.stem.rsplit("_", 1)) for d in robot_config_dirs() for p in d.glob("*_*.yaml")}
    )


def available_robots() -> list[str]:
    """Names of the robot hands that have a config (any side)."""
    return sorted({robot for robot, _ in robot_configs()})


@dataclass(frozen=True)
class PointConfig:
    """A point on a robot link: ``offset`` (m) in the link's frame."""

    link: str
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class DexPilotConfig:
    """DexPilot terms (defaults from dex-retargeting 0.5.0 / the DexPilot paper).

    A thumb-finger pair whose human distance drops below ``project_dist`` (m) is pulled to
    ``eta1`` (m) apart on the robot, and released above ``escape_dist``; two fingers that both
    pinch the thumb and are within ``finger_project_dist`` are held ``eta2`` apart.
    """

    fingertips: tuple[str, ...]
    project_dist: float = 0.03
    escape_dist: float = 0.05
    finger_project_dist: float = 0.03
    eta1: float = 1e-4
    eta2: float = 0.03
    pinch_weight: float = 200.0
    finger_weight: float = 400.0


@dataclass(frozen=True)
class RobotHandConfig:
    """Everything retargeting needs to know about one robot hand (one side)."""

    name: str
    side: str
    description: str
    base_link: str
    points: dict[str, PointConfig]
    scale: float
    vectors: tuple[tuple[str, str, float], ...]
    dexpilot: DexPilotConfig
    position_points: tuple[str, ...]
    palm_frame: tuple[str, str, str] = ("wrist", "index_mcp", "little_mcp")
    mirror: str | None = None
    fixed_joints: dict[str, float] = field(default_factory=dict)
    mimic: tuple[dict[str, Any], ...] = ()
    joint_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    safe_pose: dict[str, float] = field(default_factory=dict)
    velocity_limit: float = 3.0
    velocity_limits: dict[str, float] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RobotHandConfig:
        """Load and check a robot hand YAML file."""
        path = Path(path)
        with path.open() as f:
            raw = yaml.safe_load(f)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(raw, source=path)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: Path | None = None) -> RobotHandConfig:
        known = {f.name for f in fields(cls)} | {"vector", "position"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {sorted(known - {'source'})}")
        points = {
            name: PointConfig(p["link"], tuple(float(v) for v in p.get("offset", (0, 0, 0))))
            for name, p in raw["points"].items()
        }
        vectors = tuple(
            (str(v[0]), str(v[1]), float(v[2]) if len(v) > 2 else 1.0)
            for v in raw["vector"]["pairs"]
        )
        dp = dict(raw["dexpilot"])
        dp["fingertips"] = tuple(dp["fingertips"])
        cfg = cls(
            name=str(raw["name"]),
            side=str(raw["side"]),
            description=str(raw["description"]),
            base_link=str(raw["base_link"]),
            points=points,
            scale=float(raw["scale"]),
            vectors=vectors,
            dexpilot=DexPilotConfig(**dp),
            position_points=tuple(raw["position"]["points"]),
            palm_frame=tuple(raw.get("palm_frame", ("wrist", "index_mcp", "little_mcp"))),
            mirror=raw.get("mirror"),
            fixed_joints={k: float(v) for k, v in (raw.get("fixed_joints") or {}).items()},
            mimic=tuple(raw.get("mimic") or ()),
            joint_limits={
                k: (float(v[0]), float(v[1])) for k, v in (raw.get("joint_limits") or {}).items()
            },
            safe_pose={k: float(v) for k, v in (raw.get("safe_pose") or {}).items()},
            velocity_limit=float(raw.get("velocity_limit", 3.0)),
            velocity_limits={k: float(v) for k, v in (raw.get("velocity_limits") or {}).items()},
            source=source,
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ValueError naming the first inconsistency in this config."""
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        if self.mirror not in (None, "x", "y", "z"):
            raise ValueError(f"mirror must be x, y, z or absent, got {self.mirror!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {self.scale}")
        if not self.velocity_limit > 0:
            raise ValueError(f"velocity_limit must be > 0 rad/s, got {self.velocity_limit}")
        bad = sorted(set(self.points) - set(JOINT_NAMES))
        if bad:
            raise ValueError(f"points {bad} are not human joint names {list(JOINT_NAMES)}")
        used = (
            {n for v in self.vectors for n in v[:2]}
            | set(self.dexpilot.fingertips)
            | set(self.position_points)
            | set(self.palm_frame)
        )
        missing = sorted(used - set(self.points))
        if missing:
            raise ValueError(f"{missing} are used but not defined under 'points'")
        if len(self.dexpilot.fingertips) < 2 or self.dexpilot.fingertips[0] != "thumb_tip":
            raise ValueError("dexpilot.fingertips must start with thumb_tip and have 2-5 tips")

    def description_path(self) -> Path:
        """The description file: absolute, next to the YAML, bundled, or fetched into the cache.

        Raises:
            FileNotFoundError: naming the places searched and the command that fetches it.
        """
        rel = Path(self.description)
        candidates = [rel] if rel.is_absolute() else []
        if not rel.is_absolute():
            if self.source is not None:
                candidates.append(self.source.parent / rel)
            candidates += [BUNDLED_ASSETS / rel, robot_assets_cache() / rel]
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(
            f"robot description {self.description!r} for {self.name} not found (looked in "
            f"{[str(c) for c in candidates]}); run `hand-pose fetch-robots` to fetch it"
        )

    def build_kinematics(self):
        """The ``HandKinematics`` of this hand (description loaded, limits and couplings set)."""
        from hand_pose_ros.retarget.kinematics import (
            HandKinematics,
            JointSpec,
            Mimic,
            load_description,
            mirror_description,
        )

        frames = {n: (p.link, np.array(p.offset)) for n, p in self.points.items()}
        specs, points, mimics = load_description(
            self.description_path(), self.base_link, frames, self.fixed_joints
        )
        if self.mirror is not None:
            specs, points = mirror_description(specs, points, "xyz".index(self.mirror))
        names = [s.name for s in specs]
        for joint, (lo, hi) in self.joint_limits.items():
            if joint not in names:
                raise ValueError(f"joint_limits: {joint!r} is not a movable joint ({names})")
            s = specs[names.index(joint)]
            if not (s.lower - 1e-9 <= lo < hi <= s.upper + 1e-9):
                raise ValueError(
                    f"joint_limits: {joint} [{lo}, {hi}] must lie inside the description's "
                    f"[{s.lower}, {s.upper}]"
                )
            specs[names.index(joint)] = JointSpec(
                s.name, s.parent, s.placement, s.kind, s.axis, lo, hi
            )
        mimics = list(mimics) + [
            Mimic(m["joint"], m["source"], float(m.get("multiplier", 1.0)),
                  float(m.get("offset", 0.0)))
            for m in self.mimic
        ]
        return HandKinematics(specs, points, mimics)


def load_robot_config(robot: str | Path, side: str = "right") -> RobotHandConfig:
    """A robot hand config by name (``allegro``) and side, or from a YAML path."""
    path = Path(robot)
    if path.suffix in (".yaml", ".yml"):
        return RobotHandConfig.from_yaml(path)
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    for d in robot_config_dirs():
        candidate = d / f"{robot}_{side}.yaml"
        if candidate.is_file():
            return RobotHandConfig.from_yaml(candidate)
    raise FileNotFoundError(
        f"no robot config {robot}_{side}.yaml in {[str(d) for d in robot_config_dirs()]}; "
        f"known robots: {available_robots()}"
    )


@dataclass
class RetargetConfig:
    """Options of one retargeting run; ``build()`` makes the ``Retargeter``.

    Attributes:
        robot: robot name (config/robots/<robot>_<side>.yaml) or a YAML path.
        side: which human hand drives the robot, "right" or "left" (also the robot's side).
        method: "vector" (teleoperation), "dexpilot" (vector + pinch terms), "position"
            (offline data: fingertip positions).
        regularization: weight (m^2/rad^2) pulling each solution towards the previous one.
        max_iterations: Levenberg-Marquardt iterations per frame at most.
        filter_min_cutoff, filter_beta, filter_d_cutoff: One Euro filter on the joint
            commands (Hz, s/rad, Hz); filter_min_cutoff <= 0 turns the filter off.
        hold_timeout: seconds the last command is held after the hand is lost.
        return_velocity: rad/s (or m/s) when moving to the safe pose after the hold.
        max_step_dt: longest time step (s) a velocity limit is applied over, so a late call
            cannot turn into a large jump.
        bone_ratio_range: a hand is rejected when a bone length divided by the nominal adult
            bone length, relative to the hand's median ratio, falls outside this range.
        hand_scale_range: ... or when the hand's median ratio itself is outside this range.
    """

    robot: str = "allegro"
    side: str = "right"
    method: str = "vector"
    regularization: float = 5e-4
    max_iterations: int = 20
    filter_min_cutoff: float = 2.0
    filter_beta: float = 0.5
    filter_d_cutoff: float = 1.0
    hold_timeout: float = 0.5
    return_velocity: float = 0.5
    max_step_dt: float = 0.1
    bone_ratio_range: tuple[float, float] = (0.5, 2.0)
    hand_scale_range: tuple[float, float] = (0.5, 2.0)

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        for name in ("hold_timeout", "return_velocity", "max_step_dt", "regularization"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        for name in ("bone_ratio_range", "hand_scale_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo < 1 < hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo < 1 < hi, got {lo, hi}")

    def build(self):
        """A ``Retargeter`` for these options."""
        from hand_pose_ros.retarget.retargeter import Retargeter

        self.check()
        robot = load_robot_config(self.robot, self.side)
        if robot.side != self.side:
            raise ValueError(f"robot config {robot.source} is a {robot.side} hand, not {self.side}")
        return Retargeter(robot, self)

    @property
    def handedness(self) -> Handedness:
        return Handedness.RIGHT if self.side == "right" else Handedness.LEFT
