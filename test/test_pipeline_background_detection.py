"""While a hand is tracked, new hands are found by a background palm search, and the frames
that start such a search do not wait for the detector."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions

pytestmark = pytest.mark.usefixtures("mediapipe_weights")
DEMO_VIDEO = Path(__file__).resolve().parent.parent / "demo" / "emoji_hands.mp4"


def demo_frame(index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    assert ok
    return frame


@pytest.mark.parametrize("background", [True, False])
def test_second_hand_is_found_while_the_first_is_tracked(background):
    # Frame 11 of the demo has its (right) hand in the right half of the image; that half
    # next to its mirror image shows a right and a left hand.
    only_first = demo_frame(11)
    both = np.hstack([only_first[:, 320:][:, ::-1], only_first[:, 320:]])
    intrinsics = CameraIntrinsics.from_fov(both.shape[1], both.shape[0], 60.0)
    options = HandTrackerOptions(color_order="bgr", max_hands=2, detection_interval=3,
                                 background_detection=background, mesh=False)
    with HandTracker(options) as tracker:
        assert len(tracker.process(only_first, intrinsics, 0.0).hands) == 1
        counts, inline_detections = [], 0
        for i in range(1, 12):
            result = tracker.process(both, intrinsics, i / 30)
            counts.append(len(result.hands))
            inline_detections += result.detector_ran
    assert counts[-1] == 2, counts
    # In the background mode no frame ran the detector itself once a hand was tracked.
    assert (inline_detections == 0) == background
