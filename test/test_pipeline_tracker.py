"""The public HandTracker: real-video tracking, two hands, colour orders, and bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_hand_video.mp4"
SIZE = (640, 360)
K = CameraIntrinsics.from_fov(*SIZE, 60.0)
# The lite networks keep the suite fast; the full ones are checked by compare-reference.
FAST = {"model": "mediapipe_lite", "detector": "lite"}
needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"test video {VIDEO} absent "
                                 "(it is not shipped to users)")


pytestmark = pytest.mark.usefixtures("mediapipe_weights")


@pytest.fixture(scope="module")
def frames():
    if not VIDEO.is_file():
        return []
    capture = cv2.VideoCapture(str(VIDEO))
    out = [cv2.resize(capture.read()[1], SIZE, interpolation=cv2.INTER_AREA) for _ in range(30)]
    capture.release()
    return out


@pytest.fixture(scope="module")
def tracker():
    with HandTracker(HandTrackerOptions(color_order="bgr", max_hands=1, **FAST)) as t:
        yield t


@needs_video
def test_real_hand_is_tracked_with_one_detection_and_a_stable_identity(frames):
    options = HandTrackerOptions(color_order="bgr", max_hands=1, smoothing=False, **FAST)
    with HandTracker(options) as tracker:
        results = [tracker.process(f, K, i / 30) for i, f in enumerate(frames)]
    assert [r.detector_ran for r in results] == [True] + [False] * (len(frames) - 1)
    assert all(len(r.hands) == 1 for r in results)
    assert {r.hands[0].tracking_id for r in results} == {results[0].hands[0].tracking_id}
    for r in results:
        hand = r.hands[0]
        assert hand.side == Handedness.RIGHT  # the video shows a right hand, unmirrored
        assert 0.5 < hand.handedness_score <= 1 and 0.5 < hand.detection_score <= 1
        assert hand.keypoints_camera.shape == (21, 3) and hand.keypoints_image.shape == (21, 2)
        assert np.all(np.isfinite(hand.keypoints_camera))
        assert np.all(hand.keypoints_camera[:, 2] > 0)
        assert np.allclose(hand.wrist_position, hand.keypoints_camera[0])
        assert np.linalg.norm(hand.wrist_quaternion_xyzw) == pytest.approx(1.0)
        # The metric 3D hand projects back onto its 2D landmarks (same camera).
        reprojection = np.linalg.norm(K.project(hand.keypoints_camera) - hand.keypoints_image,
                                      axis=1)
        assert reprojection.mean() < 10.0
        assert {"preprocess", "landmarks", "lifting", "total"} <= set(r.timings_ms)


@needs_video
def test_a_hand_and_its_mirror_image_are_a_right_and_a_left_hand(frames):
    part = cv2.resize(frames[0], (1280, 720))[:, 520:1160]
    canvas = cv2.resize(np.concatenate([part, part[:, ::-1]], axis=1), SIZE)
    with HandTracker(HandTrackerOptions(color_order="bgr", max_hands=2, **FAST)) as tracker:
        hands = tracker.process(canvas, K, 0.0).hands
    assert [h.side for h in hands] == [Handedness.RIGHT, Handedness.LEFT]  # right first
    assert hands[0].keypoints_image[0, 0] < SIZE[0] / 2 < hands[1].keypoints_image[0, 0]
    assert hands[0].tracking_id != hands[1].tracking_id


@needs_video
def test_rgb_and_bgr_inputs_give_the_same_hands_when_declared(frames):
    bgr = frames[0]
    results = []
    for order, image in (("bgr", bgr), ("rgb", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)),
                         ("bgr", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))):
        with HandTracker(HandTrackerOptions(color_order=order, **FAST)) as tracker:
            results.append(tracker.process(image, K, 0.0).hands[0].keypoints_image)
    assert np.allclose(results[0], results[1]) and np.allclose(results[0], results[2])


@needs_video
def test_non_contiguous_and_grey_images_work(tracker, frames):
    big = cv2.resize(frames[0], (SIZE[0] * 2, SIZE[1] * 2), interpolation=cv2.INTER_NEAREST)
    strided = big[::2, ::2]
    assert not strided.flags["C_CONTIGUOUS"]
    tracker.reset()
    a = tracker.process(strided, K, 0.0).hands
    tracker.reset()
    b = tracker.process(np.ascontiguousarray(strided), K, 0.0).hands
    assert len(a) == len(b) == 1 and np.allclose(a[0].keypoints_image, b[0].keypoints_image)
    tracker.reset()
    grey = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    for image in (grey, grey[:, :, None]):
        hands = tracker.process(image, K, 1.0).hands
        assert isinstance(hands, list)
        assert all(np.all(np.isfinite(h.keypoints_camera)) for h in hands)


@needs_video
def test_a_lost_hand_ends_its_track_and_a_returning_hand_gets_a_new_id(tracker, frames):
    tracker.reset()
    first = tracker.process(frames[0], K, 0.0).hands[0].tracking_id
    blank = np.full_like(frames[0], 128)
    assert tracker.process(blank, K, 0.033).hands == []
    result = tracker.process(frames[1], K, 0.066)
    assert result.detector_ran and result.hands[0].tracking_id != first


def test_frames_without_hands_give_an_empty_list(tracker):
    rng = np.random.default_rng(0)
    tracker.reset()
    result = tracker.process(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), K, 0.0)
    assert result.hands == [] and result.detector_ran and result.stamp == 0.0


def test_huge_valid_image_gives_a_defined_result(tracker):
    tracker.reset()
    result = tracker.process(np.zeros((3000, 4000, 3), np.uint8), K, 0.0)
    assert result.hands == []


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((8, 8, 3), np.uint8), "outside"),
    (np.zeros((16, 16385, 3), np.uint8), "outside"),
    (np.zeros((64, 64, 3), np.uint16), "8-bit"),
    (np.zeros((64, 64, 3), np.float32), "8-bit"),
    (np.zeros((64, 64, 2), np.uint8), "shape"),
    (np.zeros((4, 64, 64, 3), np.uint8), "shape"),
    ([[0, 0], [0, 0]], "numpy array"),
])
def test_bad_images_raise_a_clear_value_error(tracker, image, message):
    with pytest.raises(ValueError, match=message):
        tracker.process(image, K, 0.0)


def test_bad_intrinsics_stamp_and_depth_raise_value_errors(tracker):
    image = np.zeros((360, 640, 3), np.uint8)
    with pytest.raises(ValueError, match="intrinsics must be finite"):
        CameraIntrinsics(float("nan"), 500.0, 320.0, 180.0)
    with pytest.raises(ValueError, match="CameraIntrinsics"):
        tracker.process(image, (500.0, 500.0, 320.0, 180.0), 0.0)
    with pytest.raises(ValueError, match="stamp"):
        tracker.process(image, K, float("nan"))
    with pytest.raises(ValueError, match="aligned"):
        tracker.process(image, K, 0.0, depth=np.zeros((100, 100), np.float32))
    with pytest.raises(ValueError, match="uint16 millimetres"):
        tracker.process(image, K, 0.0, depth=np.zeros((360, 640), np.int32))


@pytest.mark.parametrize("kwargs, error", [
    ({"color_order": "yuv"}, ValueError), ({"color_order": "rgb", "max_hands": 0}, ValueError),
    ({"color_order": "rgb", "min_tracking_confidence": 1.5}, ValueError),
    ({"color_order": "rgb", "detection_interval": 0}, ValueError),
    ({"color_order": "rgb", "filter_min_cutoff": 0.0}, ValueError),
    ({"color_order": "rgb", "detector": "huge"}, ValueError),
    ({}, TypeError),  # the colour order must be stated
])
def test_bad_options_fail_at_construction(kwargs, error):
    with pytest.raises(error):
        HandTrackerOptions(**kwargs)


def test_closed_tracker_refuses_to_run():
    tracker = HandTracker(HandTrackerOptions(color_order="rgb", **FAST))
    tracker.close()
    with pytest.raises(RuntimeError, match="close"):
        tracker.process(np.zeros((64, 64, 3), np.uint8), K, 0.0)


@needs_video
def test_aligned_depth_sets_the_hand_distance(tracker, frames):
    # A flat "hand" depth of 0.45 m around the tracked hand, background at 2 m, holes of both
    # kinds: the wrist lands at ~0.45 m (+ the skin-to-joint offset), whatever RGB alone says.
    tracker.reset()
    hand = tracker.process(frames[0], K, 0.0).hands[0]
    x0, y0 = hand.keypoints_image.min(axis=0).astype(int) - 5
    x1, y1 = hand.keypoints_image.max(axis=0).astype(int) + 5
    depth_mm = np.full(frames[0].shape[:2], 2000, np.uint16)
    depth_mm[max(y0, 0):y1, max(x0, 0):x1] = 450
    depth_mm[::3, ::3] = 0
    for depth in (depth_mm, depth_mm.astype(np.float32) / 1000):
        tracker.reset()
        wrist = tracker.process(frames[0], K, 0.0, depth=depth).hands[0].wrist_position
        assert wrist[2] == pytest.approx(0.458, abs=0.03)
