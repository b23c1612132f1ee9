"""`hand-pose eval`: crops, back-projection, joint groups, metrics of a perfect predictor, the CLI
with the real MediaPipe model (JSON and plots)."""

import json

import cv2
import numpy as np
import pytest

from hand_pose_ros.cli import main
from hand_pose_ros.data.datasets import open_dataset
from hand_pose_ros.eval.evaluate import (
    JOINT_GROUPS,
    CropBox,
    compute_metrics,
    crop_plan,
    evaluate,
)
from hand_pose_ros.hand.joints import NUM_JOINTS, HandLandmark
from hand_pose_ros.models.base import HandEstimate, HandEstimator

# Metric keys the report must hold as finite numbers on the synthetic two-hand split.
NUMERIC_KEYS = ("mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "auc_0_50", "auc_20_50",
                "pa_auc_0_50", "pck2d", "epe2d_px", "mpjpe_single_mm", "mpjpe_interacting_mm",
                "mrrpe_lifted_mm", "missed_fraction", "handedness_accuracy", "wall_time_s",
                "time_per_sample_ms", "model_ms_per_hand")


class GroundTruthEstimator(HandEstimator):
    """Test double of a model: returns the ground truth of the crops ``evaluate`` will make
    from ``samples``, in the same order (one or two hands per crop)."""

    name = "ground_truth"
    input_size = 64

    def __init__(self, samples, hands_per_crop=1, score=0.9, mesh=True):
        self.hands_per_crop, self.score = hands_per_crop, score
        self.queue = []
        for sample in samples:
            for box, hands in crop_plan(sample, hands_per_crop):
                # Two-hand models return (right, left) per crop, whichever hands are there:
                # a missing side repeats the present hand (evaluation must not read it).
                slots = hands if hands_per_crop == 1 else [
                    list(sample.handedness).index(side) if side in sample.handedness
                    else hands[0] for side in (0, 1)]
                for h in slots:
                    joints = sample.joints_3d[h]
                    self.queue.append({
                        "joints_3d": joints - joints[0],
                        "joints_2d": box.to_crop(sample.joints_2d[h], self.input_size),
                        "vertices": (sample.vertices[h] - joints[0]) if mesh else None,
                        "root": joints[0], "right": 1.0 - float(sample.handedness[h])})

    def estimate(self, crops):
        assert crops.shape[1:] == (self.input_size, self.input_size, 3)
        n = len(crops) * self.hands_per_crop
        items, self.queue = self.queue[:n], self.queue[n:]
        mesh = items[0]["vertices"] is not None
        estimate = HandEstimate(
            joints_3d=np.stack([i["joints_3d"] for i in items]),
            joints_2d=np.stack([i["joints_2d"] for i in items]),
            scores=np.full(n, self.score), right_hand=np.array([i["right"] for i in items]),
            joint_confidence=np.ones((n, NUM_JOINTS)),
            vertices=np.stack([i["vertices"] for i in items]) if mesh else None)
        estimate.roots_3d = np.stack([i["root"] for i in items])  # camera-frame wrists
        return estimate


def _samples(spec="synthetic:test-twohand", limit=4):
    return list(open_dataset(spec, limit=limit))


def test_crop_and_back_projection_round_trip_on_a_hand_worked_case():
    box = CropBox(center=(50.0, 40.0), side=20.0)  # 20 image px -> 10 crop px: 2 px per crop px
    image_points = np.array([[50.0, 40.0], [40.0, 30.0], [60.0, 50.0], [41.0, 31.0]])
    # u' = (u - c) * 10 / 20 + 4.5
    expected = np.array([[4.5, 4.5], [-0.5, -0.5], [9.5, 9.5], [0.0, 0.0]])
    np.testing.assert_array_equal(box.to_crop(image_points, 10), expected)
    np.testing.assert_array_equal(box.to_image(expected, 10), image_points)
    # Pixel (i, j) of the crop samples image pixel (2 i + 41, 2 j + 31): with a linear ramp
    # image (value = x in channel 0, y in channel 1) bilinear sampling is exact.
    ys, xs = np.mgrid[0:100, 0:100]
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    crop = box.cut(image, 10)
    i = np.arange(10)
    np.testing.assert_array_equal(crop[0, :, 0], 2 * i + 41)
    np.testing.assert_array_equal(crop[:, 0, 1], 2 * i + 31)
    # The crop's intrinsics project a 3D point where to_crop puts its image pixel.
    k = np.array([[500.0, 0.0, 48.0], [0.0, 510.0, 37.0], [0.0, 0.0, 1.0]])
    point = np.array([0.01, -0.02, 0.5])
    pixel = (k @ point)[:2] / point[2]
    crop_pixel = (box.intrinsics(k, 10) @ point)[:2] / point[2]
    np.testing.assert_allclose(crop_pixel, box.to_crop(pixel, 10), atol=1e-12)


def test_joint_groups_cover_all_21_joints_once_with_the_thumb_mapped_as_in_ehpe():
    joints = sorted(j for group in JOINT_GROUPS.values() for j in group)
    assert joints == list(range(NUM_JOINTS))
    assert list(JOINT_GROUPS) == ["wrist", "mcp", "pip", "dip", "tip"]
    assert HandLandmark.THUMB_CMC in JOINT_GROUPS["mcp"]
    assert HandLandmark.THUMB_MCP in JOINT_GROUPS["pip"]
    assert HandLandmark.THUMB_IP in JOINT_GROUPS["dip"]
    assert {HandLandmark[f"{f}_TIP"] for f in ("THUMB", "INDEX", "MIDDLE", "RING", "LITTLE")} \
        == set(JOINT_GROUPS["tip"])


@pytest.mark.parametrize("hands_per_crop", [1, 2])
def test_a_perfect_predictor_scores_zero_error_and_full_f_scores(hands_per_crop):
    samples = _samples()
    assert {s.num_hands for s in samples} == {1, 2}  # the mixed split: single and interacting
    model = GroundTruthEstimator(samples, hands_per_crop, score=0.2)
    result = evaluate(model, samples, batch_size=3)
    report = compute_metrics(result)
    assert result.hands == sum(s.num_hands for s in samples)
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "epe2d_px", "mpjpe_single_mm",
                "mpjpe_interacting_mm", "mrrpe_mm"):
        assert report[key] == pytest.approx(0.0, abs=1e-6), key
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in report["group_mm"].values())
    assert report["f5"] == report["f15"] == report["pck2d"] == report["auc_0_50"] == 1.0
    assert report["mesh_source"] == "model" and report["handedness_accuracy"] == 1.0
    # Low presence scores count as missed, and those hands are still scored.
    assert report["missed"] == result.hands


def test_vertex_metrics_are_null_with_a_reason_for_another_topology():
    samples = _samples("synthetic:test", limit=2)
    model = GroundTruthEstimator(samples, mesh=False)
    for sample in samples:
        sample.mesh = "mano"
    report = compute_metrics(evaluate(model, samples))
    assert report["mesh_source"] == "fit"
    assert report["pa_mpvpe_mm"] is None and report["f5"] is None
    assert "mano" in report["vertex_reason"]
    assert "mrrpe_mm" not in report  # single-hand data: no two-hand keys
    assert report["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)


def test_crops_are_whole_precropped_images_or_squares_around_the_joints():
    sample = _samples("synthetic:test", limit=1)[0]
    (box, hands), = crop_plan(sample)
    assert hands == (0,) and box == CropBox((127.5, 127.5), 256.0)  # the rendered 256 px crop
    sample.source = "rhd"  # a full-image source: a square of 1.6 x the 2D joint box
    (box, _), = crop_plan(sample)
    low, high = sample.joints_2d[0].min(0), sample.joints_2d[0].max(0)
    np.testing.assert_allclose(box.center, (low + high) / 2)
    assert box.side == pytest.approx(1.6 * (high - low).max())
    two = _samples(limit=2)[1]
    assert [hands for _, hands in crop_plan(two)] == [(0,), (1,)]
    assert [hands for _, hands in crop_plan(two, hands_per_crop=2)] == [(0, 1)]


def test_hands_without_an_annotated_wrist_are_left_out_of_3d_metrics():
    samples = _samples(limit=2)  # one single-hand and one two-hand sample
    samples[1].joint_valid[1, HandLandmark.WRIST] = False
    report = compute_metrics(evaluate(GroundTruthEstimator(samples), samples))
    assert report["hands_without_wrist"] == 1
    assert report["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
    assert report["mrrpe_mm"] is None and "wrists" in report["mrrpe_reason"]


def test_a_model_returning_non_finite_joints_is_a_clear_error():
    samples = _samples("synthetic:test", limit=1)
    model = GroundTruthEstimator(samples)
    model.queue[0]["joints_3d"] = np.full((21, 3), np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(model, samples)


def test_eval_cli_with_mediapipe_writes_finite_json_and_plots(tmp_path, mediapipe_weights,
                                                              capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", "mediapipe", "--data", "synthetic:test-twohand",
                 "--limit", "4", "--threads", "1", "--json", str(out),
                 "--plot", str(tmp_path / "plots")])
    assert code == 0
    assert "PA-MPJPE" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["model"] == "mediapipe" and report["data"] == "synthetic:test-twohand"
    assert report["count"] == 4 and report["hands"] == 6 and report["interacting_samples"] == 2
    for key in NUMERIC_KEYS:
        assert np.isfinite(report[key]), key
    assert all(np.isfinite(v) for v in report["group_mm"].values())
    assert report["mesh_source"] == "fit"
    assert report["mrrpe_mm"] is None and "roots_3d" in report["mrrpe_reason"]
    assert {"date", "hardware", "backend"} <= report.keys()
    for name in ("samples.png", "joint_groups.png", "pck.png"):
        image = cv2.imread(str(tmp_path / "plots" / name))
        assert image is not None and min(image.shape[:2]) >= 300, name
