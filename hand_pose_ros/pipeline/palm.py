"""Palm detection post-processing: SSD anchors, box decoding, weighted NMS, palm -> hand ROI.

Design: numpy transcriptions of MediaPipe's calculators with the options of its
``palm_detection_cpu`` graph (SsdAnchorsCalculator, TensorsToDetectionsCalculator,
NonMaxSuppressionCalculator with WEIGHTED, DetectionsToRectsCalculator, RectTransformation with
scale 2.6 and shift -0.5), so detections match the reference. Everything here works in the
detector's normalized input coordinates until ``palm_to_roi`` maps a palm to image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hand_pose_ros.pipeline.roi import Roi, rotation_towards

INPUT_SIZE = 192
NUM_KEYPOINTS = 7  # wrist, index MCP, middle MCP, ring MCP, little MCP, thumb CMC, thumb MCP


@dataclass(frozen=True)
class PalmDetection:
    """One palm in normalized image coordinates ([0, 1] over width and height).

    box: (xmin, ymin, xmax, ymax); keypoints: (7, 2) x, y; score: probability in [0, 1].
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float


@lru_cache(maxsize=4)
def palm_anchors(input_size: int = INPUT_SIZE,
                 strides: tuple[int, ...] = (8, 16, 16, 16)) -> np.ndarray:
    """Anchor centres (2016, 2) in [0, 1], as SsdAnchorsCalculator computes them.

    Each layer contributes two anchors per cell (aspect ratio 1 and the interpolated scale;
    with fixed_anchor_size only the centres matter). Layers with the same stride share one grid,
    cells row-major, anchors of a cell consecutive: 24x24x2 then 12x12x6 for 192 input.
    """
    anchors = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = 2 * (same - layer)
        grid = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        anchors.append(np.repeat(centres, per_cell, axis=0))
        layer = same
    result = np.concatenate(anchors).astype(np.float32)
    result.flags.writeable = False
    return result


def decode_boxes(raw_boxes: np.ndarray, anchors: np.ndarray,
                 input_size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Raw regressions (A, 18) -> boxes (A, 4) as (xmin, ymin, xmax, ymax) and keypoints
    (A, 7, 2), normalized to the detector input."""
    raw = raw_boxes.astype(np.float64) / input_size
    centre = raw[:, 0:2] + anchors
    half = 0.5 * raw[:, 2:4]
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return boxes, keypoints


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = 0.3) -> list[PalmDetection]:
    """MediaPipe's weighted non-maximum suppression.

    Highest score first: every remaining box overlapping it by IoU > ``iou_threshold`` joins its
    cluster; the cluster's box and keypoints are the score-weighted mean, its score the highest.
    Returns detections sorted by score, highest first.
    """
    order = np.argsort(-scores, kind="stable")
    detections = []
    while order.size:
        top = order[0]
        overlap = _box_iou(boxes[top], boxes[order]) > iou_threshold
        members = order[overlap]
        weights = scores[members][:, None]
        total = weights.sum()
        box = (boxes[members] * weights).sum(axis=0) / total
        kps = (keypoints[members] * weights[:, :, None]).sum(axis=0) / total
        detections.append(PalmDetection(box, kps, float(scores[top])))
        order = order[~overlap]
    return detections


def detect_palms(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float = 0.5,
                 iou_threshold: float = 0.3) -> list[PalmDetection]:
    """Decode the detector's raw outputs; returns palms in detector-input coordinates."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    keep = scores >= min_score
    if not keep.any():
        return []
    boxes, keypoints = decode_boxes(raw_boxes[keep], palm_anchors()[keep])
    return weighted_nms(boxes, keypoints, scores[keep], iou_threshold)


def letterbox_roi(width: int, height: int) -> Roi:
    """The square ROI around the whole image that the detector sees (centred, zero padded)."""
    side = float(max(width, height))
    return Roi(width / 2.0, height / 2.0, side, side, 0.0)


def palm_to_roi(palm: PalmDetection, letterbox: Roi, scale: float = 2.6,
                shift_y: float = -0.5) -> Roi:
    """Hand ROI in image pixels for a palm found in the letterboxed detector input.

    Centre and size come from the palm box, rotation makes wrist -> middle MCP point up, then
    the box is shifted towards the fingers, squared and enlarged to hold the whole hand.
    """
    m = letterbox.crop_to_image(1)  # normalized detector input -> image pixels
    box_corners = np.array([[palm.box[0], palm.box[1]], [palm.box[2], palm.box[3]]])
    (x0, y0), (x1, y1) = box_corners @ m[:, :2].T + m[:, 2]
    kps = palm.keypoints @ m[:, :2].T + m[:, 2]
    rotation = rotation_towards(kps[0], kps[2])
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, rotation).transformed(scale, shift_y)
