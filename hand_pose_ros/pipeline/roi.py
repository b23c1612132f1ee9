"""Rotated regions of interest: the crop a landmark network sees, and how to get the next one.

Design: a ``Roi`` is a rotated rectangle in source-image pixels. Coordinates follow MediaPipe's
arithmetic (pixel = normalized coordinate x image size), so crops and landmarks match the
reference implementation to sub-pixel level. One affine map (crop pixels -> image pixels) is used
both to warp the crop (``cv2.warpAffine`` with WARP_INVERSE_MAP) and to project landmarks back,
so the two can never disagree. Rotation: radians, positive = clockwise on screen (y down), as in
MediaPipe's NormalizedRect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Subset of the 21 joints that moves least (no finger tips), used to place the next crop:
# wrist, thumb CMC/MCP/IP, and the MCP and PIP of every finger (MediaPipe's choice).
STABLE_JOINTS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
WRIST, INDEX_MCP, MIDDLE_MCP, RING_MCP = 0, 5, 9, 13


def normalize_radians(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return angle - 2.0 * math.pi * math.floor((angle + math.pi) / (2.0 * math.pi))


@dataclass(frozen=True)
class Roi:
    """Rotated rectangle in image pixels: centre, size, rotation (radians, clockwise)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    def crop_to_image(self, crop_size: int) -> np.ndarray:
        """(2, 3) affine map from crop pixels (0..crop_size) to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        sx, sy = self.width / crop_size, self.height / crop_size
        linear = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
        offset = np.array([self.cx, self.cy]) - linear @ np.array([crop_size / 2, crop_size / 2])
        return np.hstack([linear, offset[:, None]])

    def bounds(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box (xmin, ymin, xmax, ymax) of the rotated rectangle."""
        c, s = abs(math.cos(self.rotation)), abs(math.sin(self.rotation))
        half_w = 0.5 * (self.width * c + self.height * s)
        half_h = 0.5 * (self.width * s + self.height * c)
        return self.cx - half_w, self.cy - half_h, self.cx + half_w, self.cy + half_h

    def transformed(self, scale: float, shift_y: float, shift_x: float = 0.0) -> Roi:
        """Shift (in units of the rectangle's own size, along its rotated axes), make square on
        the long side, then scale: MediaPipe's RectTransformationCalculator with square_long."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        dx = self.width * shift_x * c - self.height * shift_y * s
        dy = self.width * shift_x * s + self.height * shift_y * c
        side = max(self.width, self.height) * scale
        return Roi(self.cx + dx, self.cy + dy, side, side, self.rotation)


def iou(a: Roi, b: Roi) -> float:
    """Intersection over union of the axis-aligned bounds of two ROIs."""
    ax0, ay0, ax1, ay1 = a.bounds()
    bx0, by0, bx1, by1 = b.bounds()
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def crop(image: np.ndarray, roi: Roi, size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """The ROI warped to a (size, size, C) image, bilinear; outside pixels per ``border``."""
    return cv2.warpAffine(image, roi.crop_to_image(size), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border,
                          borderValue=0)


def crop_points_to_image(points: np.ndarray, roi: Roi, crop_size: int) -> np.ndarray:
    """(K, 2) crop pixels -> (K, 2) image pixels."""
    m = roi.crop_to_image(crop_size)
    return points @ m[:, :2].T + m[:, 2]


def rotation_towards(start: np.ndarray, end: np.ndarray) -> float:
    """ROI rotation that makes the direction start -> end (image pixels) point up in the crop."""
    return normalize_radians(math.pi / 2 - math.atan2(-(end[1] - start[1]), end[0] - start[0]))


def roi_from_landmarks(landmarks: np.ndarray, scale: float = 2.0, shift_y: float = -0.1) -> Roi:
    """Next-frame ROI from 21 image landmarks (pixels), as MediaPipe's hand tracking does.

    The rotation points the wrist towards the middle of the index/middle/ring MCPs; the box is
    the tightest one around the stable joints in that rotated frame, then shifted and scaled.
    """
    pts = landmarks[list(STABLE_JOINTS), :2].astype(np.float64)
    knuckles = 0.5 * (0.5 * (landmarks[INDEX_MCP, :2] + landmarks[RING_MCP, :2])
                      + landmarks[MIDDLE_MCP, :2])
    rotation = rotation_towards(landmarks[WRIST, :2], knuckles)
    center = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    c, s = math.cos(-rotation), math.sin(-rotation)
    unrotate = np.array([[c, -s], [s, c]])
    projected = (pts - center) @ unrotate.T
    lo, hi = projected.min(axis=0), projected.max(axis=0)
    mid = 0.5 * (lo + hi)
    # Back to the image: rotate the box centre by +rotation.
    new_center = center + np.array([[c, s], [-s, c]]) @ mid
    size = hi - lo
    return Roi(float(new_center[0]), float(new_center[1]), float(size[0]), float(size[1]),
               rotation).transformed(scale, shift_y)
