"""``hand-pose compare-reference``: the agreement and speed numbers, and the reference worker."""

from pathlib import Path

import numpy as np
import pytest

from hand_pose_ros.compare_reference import ReferenceWorker, compare
from hand_pose_ros.paths import cache_dir

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_hand_video.mp4"


def test_compare_counts_agreement_and_pixel_error():
    lm = np.random.default_rng(0).uniform(0, 500, (4, 1, 21, 2))
    ours = {"landmarks": lm + [1.0, 0.0], "right": np.full((4, 1), 0.9),
            "seconds": np.full(4, 0.010)}
    ours["landmarks"][3] = np.nan  # we miss the last frame
    ref = {"landmarks": lm.copy(), "left_label_score": np.array([[0.8], [0.8], [0.3], [0.8]]),
           "seconds": np.full(4, 0.020)}
    report = compare(ours, ref)
    assert report["frames_with_hand_ours"] == 3 and report["frames_with_hand_reference"] == 4
    assert report["detection_agreement"] == pytest.approx(0.75)
    assert report["landmark_px_mean"] == pytest.approx(1.0)
    assert report["handedness_agreement"] == pytest.approx(2 / 3)
    assert report["speed_ratio"] == pytest.approx(2.0)
    assert report["speed_ratio_paired_median"] == pytest.approx(2.0)


@pytest.mark.skipif(not (cache_dir() / "venv-reference" / "bin" / "python").is_file()
                    or not VIDEO.is_file(),
                    reason="reference venv (created by `hand-pose compare-reference`) or test "
                           "video absent")
def test_reference_worker_answers_frame_by_frame():
    import cv2

    frame = cv2.VideoCapture(str(VIDEO)).read()[1]
    h, w = frame.shape[:2]
    worker = ReferenceWorker(cache_dir() / "venv-reference" / "bin" / "python", w, h, 1)
    try:
        answer = worker.process(frame)
    finally:
        worker.close()
    assert worker.version.startswith("0.10")
    assert len(answer["hands"]) == 1 and len(answer["hands"][0]["landmarks"]) == 21
