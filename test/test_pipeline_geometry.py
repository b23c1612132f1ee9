"""Palm post-processing and rotated ROIs: NMS, palm -> ROI, crops and their inverse."""

import math

import cv2
import numpy as np
import pytest

from hand_pose_ros.pipeline.palm import (
    PalmDetection,
    detect_palms,
    letterbox_roi,
    palm_anchors,
    palm_to_roi,
    weighted_nms,
)
from hand_pose_ros.pipeline.roi import (
    Roi,
    crop,
    crop_points_to_image,
    iou,
    normalize_radians,
    roi_from_landmarks,
)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_boxes():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    keypoints = np.zeros((3, 7, 2))
    keypoints[1] += 1.0
    scores = np.array([0.9, 0.6, 0.7])
    out = weighted_nms(boxes, keypoints, scores, iou_threshold=0.3)
    assert [d.score for d in out] == [0.9, 0.7]
    assert np.allclose(out[0].box, (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5)
    assert np.allclose(out[0].keypoints, 0.6 / 1.5)
    assert np.allclose(out[1].box, boxes[2])


def test_no_palm_above_threshold_gives_no_detection():
    raw_boxes = np.zeros((2016, 18), np.float32)
    assert detect_palms(raw_boxes, np.full(2016, -5.0, np.float32)) == []


def test_decoded_palm_sits_on_its_anchor():
    raw_boxes = np.zeros((2016, 18), np.float32)
    raw_boxes[100, 2:4] = 192 * 0.1  # 0.1 wide and high
    scores = np.full(2016, -10.0, np.float32)
    scores[100] = 5.0
    (palm,) = detect_palms(raw_boxes, scores)
    anchor = palm_anchors()[100]
    assert np.allclose(palm.box, [*(anchor - 0.05), *(anchor + 0.05)], atol=1e-6)
    assert palm.score == pytest.approx(1 / (1 + math.exp(-5.0)))


def test_upright_palm_gives_an_unrotated_roi_shifted_towards_the_fingers():
    # Square 640x640 image, palm box 0.2 wide at the centre, wrist below the middle MCP.
    keypoints = np.full((7, 2), 0.5)
    keypoints[0] = (0.5, 0.6)
    keypoints[2] = (0.5, 0.4)
    palm = PalmDetection(np.array([0.4, 0.4, 0.6, 0.6]), keypoints, 0.9)
    roi = palm_to_roi(palm, letterbox_roi(640, 640))
    assert roi.rotation == pytest.approx(0.0)
    assert roi.width == pytest.approx(128 * 2.6)
    assert (roi.cx, roi.cy) == pytest.approx((320, 320 - 0.5 * 128))


def test_palm_pointing_right_is_rotated_clockwise_by_90_degrees():
    keypoints = np.full((7, 2), 0.5)
    keypoints[0] = (0.4, 0.5)
    keypoints[2] = (0.6, 0.5)
    palm = PalmDetection(np.array([0.4, 0.4, 0.6, 0.6]), keypoints, 0.9)
    roi = palm_to_roi(palm, letterbox_roi(640, 480))
    assert roi.rotation == pytest.approx(math.pi / 2)
    assert roi.cx > 320, "shifted towards the fingers, i.e. right"


def test_crop_and_point_projection_agree_for_a_rotated_roi():
    image = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(image, (250, 120), 3, (255, 255, 255), -1)
    roi = Roi(220.0, 140.0, 120.0, 120.0, rotation=0.7)
    patch = crop(image, roi, 96)
    ys, xs = np.nonzero(patch[:, :, 0] > 128)
    centre_in_crop = np.array([[xs.mean(), ys.mean()]])
    assert np.allclose(crop_points_to_image(centre_in_crop, roi, 96), [[250, 120]], atol=1.0)


def test_landmark_roi_of_an_upright_hand_is_unrotated_and_encloses_it():
    rng = np.random.default_rng(0)
    landmarks = np.column_stack([rng.uniform(200, 260, 21), rng.uniform(150, 250, 21)])
    landmarks[0] = (230, 260)  # wrist below
    landmarks[[5, 9, 13]] = [(215, 170), (230, 165), (245, 170)]  # MCPs above it
    roi = roi_from_landmarks(landmarks)
    assert abs(roi.rotation) < 0.05
    x0, y0, x1, y1 = roi.bounds()
    assert x0 < landmarks[:, 0].min() and x1 > landmarks[:, 0].max()
    assert roi.width == pytest.approx(roi.height)


def test_iou_and_angle_wrapping():
    a = Roi(10, 10, 10, 10)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, Roi(100, 100, 10, 10)) == 0.0
    assert normalize_radians(3 * math.pi) == pytest.approx(-math.pi)
