"""The tracker's two-hand path (models with hands_per_crop == 2): the crop around both hands,
lifting both hands with the predicted root offset, and the tracker on real video frames."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hand_pose_ros.data.synth import SynthConfig, render_sample
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.models import handformer2t, seed
from hand_pose_ros.models.twohand import TwoHandEstimate
from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions
from hand_pose_ros.pipeline.roi import Roi
from hand_pose_ros.pipeline.tracker import (
    PAIR_CROP_SCALE,
    ROI_PER_JOINT_BOX,
    crop_rgb,
    hand_box,
    lift_pair,
    pair_crop,
)

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_hand_video.mp4"
SIZE = (640, 360)
K = CameraIntrinsics.from_fov(*SIZE, 60.0)
needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"test video {VIDEO} absent "
                                 "(it is not shipped to users)")


# -- geometry -----------------------------------------------------------------------------------

def test_pair_crop_is_the_square_around_the_union_of_both_hands():
    # Union (100, 100)-(300, 260): centre (200, 180), longer side 200 -> side 1.6 x 200.
    roi = pair_crop([(100, 100, 200, 200), (250, 150, 300, 260)])
    assert PAIR_CROP_SCALE == 1.6
    assert (roi.cx, roi.cy, roi.width, roi.height, roi.rotation) == (200, 180, 320, 320, 0)


def test_pair_crop_of_one_visible_hand_is_the_crop_around_it():
    roi = pair_crop([(10, 20, 50, 100)])
    assert (roi.cx, roi.cy, roi.width, roi.height) == (30, 60, 128, 128)
    with pytest.raises(ValueError, match="at least one"):
        pair_crop([])
    with pytest.raises(ValueError, match="finite"):
        pair_crop([(0, 0, math.nan, 1)])


def test_hand_box_is_the_landmark_bounds_or_the_shrunk_detector_roi():
    landmarks = np.array([[5.0, 7.0], [9.0, 2.0], [6.0, 11.0]])
    assert hand_box(landmarks, Roi(0, 0, 1, 1)) == (5.0, 2.0, 9.0, 11.0)
    half = 70 / ROI_PER_JOINT_BOX
    assert hand_box(None, Roi(100, 50, 140, 140, 0.3)) == pytest.approx(
        (100 - half, 50 - half, 100 + half, 50 + half))


def _ground_truth_estimate(sample, roi: Roi, size: int) -> TwoHandEstimate:
    """What a perfect two-hand model returns for ``roi`` of a rendered two-hand sample."""
    m = roi.crop_to_image(size)
    to_crop = np.linalg.inv(m[:, :2])
    joints_2d = (sample.joints_2d - m[:, 2]) @ to_crop.T
    joints_rel = sample.joints_3d - sample.joints_3d[:, :1]
    offset = sample.joints_3d[1, 0] - sample.joints_3d[0, 0]
    return TwoHandEstimate(joints_rel, joints_2d, np.ones(2), np.array([1.0, 0.0]),
                           np.ones((2, 21)), root_offset=offset[None], roots_3d=None)


def test_lift_pair_places_both_hands_of_a_rendered_scene_exactly():
    sample = render_sample(3, 0, SynthConfig(size=256), two_hands=True)
    k = CameraIntrinsics.from_matrix(sample.intrinsics)
    roi = pair_crop([hand_box(sample.joints_2d[h], Roi(0, 0, 1, 1)) for h in range(2)])
    estimate = _ground_truth_estimate(sample, roi, 128)
    both = lift_pair(estimate, roi, 128, [True, True], k)
    for h in range(2):
        camera, pixels = both[h]
        np.testing.assert_allclose(camera, sample.joints_3d[h], atol=1e-6)
        np.testing.assert_allclose(pixels, sample.joints_2d[h], atol=1e-6)
    # The left hand sits at the right wrist plus the predicted offset (not lifted on its own):
    # a wrong offset moves it rigidly.
    estimate.root_offset = estimate.root_offset + 0.05
    moved = lift_pair(estimate, roi, 128, [True, True], k)
    np.testing.assert_allclose(moved[1][0] - both[1][0], 0.05, atol=1e-9)
    # A hand seen alone is lifted on its own.
    alone = lift_pair(estimate, roi, 128, [False, True], k)
    assert alone[0] is None
    np.testing.assert_allclose(alone[1][0], sample.joints_3d[1], atol=1e-6)


# -- the tracker with a Handformer2T (untrained weights: only the geometry is checked) ----------

@pytest.fixture(scope="module")
def frames():
    capture = cv2.VideoCapture(str(VIDEO))
    out = [cv2.resize(capture.read()[1], SIZE, interpolation=cv2.INTER_AREA) for _ in range(2)]
    capture.release()
    return out


@pytest.fixture
def untrained_handformer2t(tmp_path, monkeypatch):
    """``handformer2t`` resolves to a checkpoint of untrained weights for this test."""
    torch.manual_seed(0)
    net = handformer2t.build_net("realtime")
    seed.save_checkpoint(tmp_path / "handformer2t-realtime.pt", net, "handformer2t",
                         "realtime", handformer2t.CONFIGS["realtime"], {"note": "test"})
    monkeypatch.setattr(seed, "CHECKPOINT_DIR", tmp_path)


def _options(**kw) -> HandTrackerOptions:
    # Threshold 0: both slots count as seen whatever the untrained presence scores say.
    return HandTrackerOptions(color_order="bgr", model="handformer2t", detector="lite",
                              backend="torch", num_threads=1, min_tracking_confidence=0.0,
                              smoothing=False, **kw)


@needs_video
@pytest.mark.usefixtures("mediapipe_weights", "untrained_handformer2t")
def test_two_hands_come_from_one_crop_right_first_placed_by_the_root_offset(frames):
    part = cv2.resize(frames[0], (1280, 720))[:, 520:1160]
    canvas = cv2.resize(np.concatenate([part, part[:, ::-1]], axis=1), SIZE)
    with HandTracker(_options()) as tracker:
        first = tracker.process(canvas, K, 0.0)
        assert first.detector_ran
        hands = first.hands
        assert [h.side for h in hands] == [Handedness.RIGHT, Handedness.LEFT]
        assert hands[0].tracking_id != hands[1].tracking_id
        roi = hands[0].roi
        assert roi == hands[1].roi and roi.rotation == 0 and roi.width == roi.height
        # The crop spans both hands of the canvas (one in each half).
        assert roi.cx - roi.width / 2 < SIZE[0] / 4 and roi.cx + roi.width / 2 > 3 * SIZE[0] / 4
        for hand in hands:
            assert np.all(np.isfinite(hand.keypoints_camera))
            assert hand.mesh_vertices is not None and np.all(np.isfinite(hand.mesh_vertices))
        # The left wrist = the right wrist + the model's root offset for this crop.
        crop = crop_rgb(canvas, True, roi, tracker.estimator.input_size)
        offset = tracker.estimator.estimate(crop[None]).root_offset[0]
        np.testing.assert_allclose(hands[1].wrist_position - hands[0].wrist_position, offset,
                                   atol=1e-4)
        # Both hands tracked: the next frame is cropped from their landmarks, no detection;
        # the tracks keep their ids.
        second = tracker.process(canvas, K, 1 / 30)
        assert not second.detector_ran
        assert [h.tracking_id for h in second.hands] == [h.tracking_id for h in hands]


@needs_video
@pytest.mark.usefixtures("mediapipe_weights", "untrained_handformer2t")
def test_a_single_visible_hand_gets_the_crop_around_it(frames):
    with HandTracker(HandTrackerOptions(color_order="bgr", model="mediapipe_lite",
                                        detector="lite", max_hands=1)) as reference:
        truth = reference.process(frames[0], K, 0.0).hands[0].keypoints_image
    with HandTracker(_options(max_hands=1)) as tracker:
        hands = tracker.process(frames[0], K, 0.0).hands
    assert len(hands) == 1  # max_hands 1: the surer slot only
    roi = hands[0].roi
    low, high = truth.min(axis=0), truth.max(axis=0)
    # The crop holds the hand and is of its size (not of the image).
    assert np.all(low > [roi.cx - roi.width / 2, roi.cy - roi.height / 2])
    assert np.all(high < [roi.cx + roi.width / 2, roi.cy + roi.height / 2])
    assert roi.width < 3 * max(high - low)


# -- the node ---------------------------------------------------------------------------------

@needs_video
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.usefixtures("mediapipe_weights")
@pytest.mark.skipif(not seed.checkpoint_path("handformer2t", "realtime").is_file(),
                    reason="no shipped handformer2t-realtime checkpoint")
def test_node_with_handformer2t_publishes_both_hands_right_first_with_tf_and_meshes(frames):
    from builtin_interfaces.msg import Time
    from ros_graph import ros_context
    from test_hand_pose_node import NodeUnderTest
    from visualization_msgs.msg import Marker

    part = cv2.resize(frames[0], (1280, 720))[:, 520:1160]
    canvas = cv2.resize(np.concatenate([part, part[:, ::-1]], axis=1), SIZE)
    # Threshold 0: both slots are published whatever this short-trained checkpoint's scores.
    with ros_context() as context:
        t = NodeUnderTest(context, ["-p", "model:=handformer2t", "-p", "backend:=torch",
                                    "-p", "min_tracking_confidence:=0.0"])
        try:
            array = t.send_and_wait(canvas, Time(sec=7))
            assert array.model == "handformer2t"
            assert [h.handedness for h in array.hands] == ["right", "left"]
            for hand in array.hands:
                assert len(hand.mesh.vertices) > 500 and len(hand.mesh.triangles) > 1000
            t.wait(lambda: any(m.transforms[0].header.stamp == array.header.stamp
                               for m in t.received["tf"]), 10.0, "TF of the frame")
            tf = next(m for m in t.received["tf"]
                      if m.transforms[0].header.stamp == array.header.stamp)
            children = [x.child_frame_id for x in tf.transforms]
            assert len(children) == 42
            assert {"hand_right_wrist", "hand_left_wrist"} <= set(children)
            t.wait(lambda: any(m.markers[0].header.stamp == array.header.stamp
                               for m in t.received["markers"]), 10.0, "markers")
            markers = next(m for m in t.received["markers"]
                           if m.markers[0].header.stamp == array.header.stamp)
            assert [m.type for m in markers.markers].count(Marker.TRIANGLE_LIST) == 2
        finally:
            t.close()
