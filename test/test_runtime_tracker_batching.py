"""The tracker runs all tracked hands in one batched network call, on CPU and (GPU path) with
crops made on the GPU and the network in fp16 with CUDA graphs."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_hand_video.mp4"
SIZE = (640, 360)
K = CameraIntrinsics.from_fov(*SIZE, 60.0)
FAST = {"model": "mediapipe_lite", "detector": "lite", "background_detection": False}

pytestmark = [pytest.mark.usefixtures("mediapipe_weights"),
              pytest.mark.skipif(not VIDEO.is_file(), reason=f"test video {VIDEO} absent")]


@pytest.fixture(scope="module")
def two_hand_frames():
    """Frames holding the video's right hand and its mirror image (a left hand)."""
    capture = cv2.VideoCapture(str(VIDEO))
    out = []
    for _ in range(5):
        part = cv2.resize(capture.read()[1], (1280, 720))[:, 520:1160]
        out.append(cv2.resize(np.concatenate([part, part[:, ::-1]], axis=1), SIZE))
    capture.release()
    return out


def track(options: HandTrackerOptions, frames) -> tuple[list, list[int]]:
    """Hands of every frame, and the batch size of every estimator call."""
    batches = []
    with HandTracker(options) as tracker:
        estimate = tracker.estimator.estimate

        def recording(crops):
            batches.append(len(crops))
            return estimate(crops)

        tracker.estimator.estimate = recording
        hands = [tracker.process(f, K, i / 30) for i, f in enumerate(frames)]
    return hands, batches


def test_two_hands_go_through_the_network_in_one_call_per_frame(two_hand_frames):
    options = HandTrackerOptions(color_order="bgr", max_hands=2, **FAST)
    results, batches = track(options, two_hand_frames)
    assert all(len(r.hands) == 2 for r in results)
    assert batches == [2] * len(two_hand_frames)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_crops_fp16_and_cuda_graphs_track_the_same_hands_as_the_cpu(two_hand_frames):
    cpu = HandTrackerOptions(color_order="bgr", max_hands=2, smoothing=False, **FAST)
    gpu = HandTrackerOptions(color_order="bgr", max_hands=2, smoothing=False, backend="torch",
                             backend_options={"device": "cuda", "precision": "fp16",
                                              "cuda_graphs": True}, **FAST)
    expected, _ = track(cpu, two_hand_frames)
    with HandTracker(gpu) as tracker:
        assert tracker._device_crops, "crops are made on the GPU when the network runs there"
    results, batches = track(gpu, two_hand_frames)
    assert batches == [2] * len(two_hand_frames)
    for a, b in zip(expected, results, strict=True):
        assert [h.side for h in a.hands] == [h.side for h in b.hands]
        for ha, hb in zip(a.hands, b.hands, strict=True):
            pixels = np.linalg.norm(ha.keypoints_image - hb.keypoints_image, axis=1)
            assert pixels.mean() < 2.0
