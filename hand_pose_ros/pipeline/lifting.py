"""Lift a hand to metric 3D in the camera optical frame (x right, y down, z forward; metres).

Design: the landmark network gives the hand's shape in metres up to a translation (root-relative
joints, axes aligned with the camera's) and the joints' pixels. For a pinhole camera, each joint
gives two equations linear in the unknown translation t:

    fx * (X_i + tx) = (u_i - cx) * (Z_i + tz)      fy * (Y_i + ty) = (v_i - cy) * (Z_i + tz)

``solve_translation`` solves all 42 by linear least squares. With an aligned depth image,
``depth_translation_z`` replaces tz by a robust estimate from the depth samples near the joints
(holes ignored; the nearest well-populated cluster of samples taken as the hand, so background
is ignored) and tx, ty are solved again with tz fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (focal lengths and principal point; OpenCV convention)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)
                   for v in values):
            raise ValueError(f"camera intrinsics must be finite numbers, got {values}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_matrix(cls, k) -> CameraIntrinsics:
        """From a 3x3 camera matrix (or the 9 numbers of sensor_msgs/CameraInfo.k)."""
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> CameraIntrinsics:
        """Square pixels and a centred principal point, from the horizontal field of view."""
        f = 0.5 * width / math.tan(math.radians(horizontal_fov_deg) / 2)
        return cls(f, f, width / 2.0, height / 2.0)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(K, 3) camera-frame points -> (K, 2) pixels."""
        return np.stack([self.fx * points[:, 0] / points[:, 2] + self.cx,
                         self.fy * points[:, 1] / points[:, 2] + self.cy], axis=1)


def solve_translation(joints_rel: np.ndarray, pixels: np.ndarray,
                      intrinsics: CameraIntrinsics) -> np.ndarray:
    """Translation t (3,) such that joints_rel + t projects onto ``pixels``, least squares.

    Args:
        joints_rel: (K, 3) metres, camera-aligned axes, any origin.
        pixels: (K, 2) image pixels of the same joints.
    """
    x, y, z = joints_rel.T
    du = pixels[:, 0] - intrinsics.cx
    dv = pixels[:, 1] - intrinsics.cy
    k = len(joints_rel)
    a = np.zeros((2 * k, 3))
    a[:k, 0] = intrinsics.fx
    a[:k, 2] = -du
    a[k:, 1] = intrinsics.fy
    a[k:, 2] = -dv
    b = np.concatenate([du * z - intrinsics.fx * x, dv * z - intrinsics.fy * y])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def translation_given_z(joints_rel: np.ndarray, pixels: np.ndarray,
                        intrinsics: CameraIntrinsics, tz: float) -> np.ndarray:
    """Least-squares tx, ty for a known tz (each axis decouples into a mean)."""
    depth = joints_rel[:, 2] + tz
    tx = np.mean((pixels[:, 0] - intrinsics.cx) * depth / intrinsics.fx - joints_rel[:, 0])
    ty = np.mean((pixels[:, 1] - intrinsics.cy) * depth / intrinsics.fy - joints_rel[:, 1])
    return np.array([tx, ty, tz])


def depth_to_metres(depth: np.ndarray) -> np.ndarray:
    """Depth image as float metres: uint16 is millimetres (0 = no data), floats are metres."""
    if depth.dtype == np.uint16:
        return depth.astype(np.float32) * 1e-3
    if np.issubdtype(depth.dtype, np.floating):
        return depth.astype(np.float32, copy=False)
    raise ValueError(f"depth must be float metres or uint16 millimetres, got {depth.dtype}")


def depth_translation_z(joints_rel: np.ndarray, pixels: np.ndarray, depth_m: np.ndarray,
                        radius: int = 2, gap: float = 0.03, min_fraction: float = 0.2,
                        min_samples: int = 5, surface_offset: float = 0.008) -> float | None:
    """Robust tz from depth samples in a (2 radius + 1)^2 window around every joint.

    Each valid sample (finite, > 0) near joint i estimates tz = depth + surface_offset - Z_i
    (the sensor sees the skin, joint centres lie about a finger radius behind it); on the hand these
    agree, on the background they are larger. The sorted estimates are split into clusters at
    gaps wider than ``gap`` metres; the nearest cluster holding at least ``min_fraction`` of the
    samples is the hand (this skips isolated flying pixels in front of it), and its median is
    returned. None when fewer than ``min_samples`` samples are valid.
    """
    h, w = depth_m.shape
    estimates = []
    for (u, v), z_rel in zip(np.rint(pixels).astype(int), joints_rel[:, 2], strict=True):
        if not (0 <= u < w and 0 <= v < h):
            continue
        window = depth_m[max(v - radius, 0):v + radius + 1, max(u - radius, 0):u + radius + 1]
        valid = window[np.isfinite(window) & (window > 0)]
        estimates.append(valid + surface_offset - z_rel)
    samples = np.sort(np.concatenate(estimates)) if estimates else np.empty(0)
    if samples.size < min_samples:
        return None
    clusters = np.split(samples, np.flatnonzero(np.diff(samples) > gap) + 1)
    for cluster in clusters:  # nearest first
        if cluster.size >= max(min_samples, min_fraction * samples.size):
            return float(np.median(cluster))
    return float(np.median(samples))


def lift_to_camera(joints_rel: np.ndarray, pixels: np.ndarray, intrinsics: CameraIntrinsics,
                   depth_m: np.ndarray | None = None) -> np.ndarray:
    """(21, 3) joints in metres in the camera optical frame.

    Args:
        joints_rel: (21, 3) metric joints relative to any origin, camera-aligned axes.
        pixels: (21, 2) the same joints in the image (pixels).
        depth_m: optional aligned depth image in metres (0/NaN = no data).
    """
    t = solve_translation(joints_rel, pixels, intrinsics)
    if depth_m is not None:
        tz = depth_translation_z(joints_rel, pixels, depth_m)
        if tz is not None:
            t = translation_given_z(joints_rel, pixels, intrinsics, tz)
    return joints_rel + t
