"""``hand-pose bench``: a readable table and a JSON report with the hardware named."""

import json

import pytest

from hand_pose_ros.bench import load_frames, summarize
from hand_pose_ros.cli import main

pytestmark = pytest.mark.usefixtures("mediapipe_weights")


def test_summary_gives_percentiles_per_stage_and_fps():
    timings = [{"total": float(t), "landmarks": t / 2} for t in range(1, 101)]
    stats = summarize(timings)
    assert stats["total"]["latency_ms_p50"] == pytest.approx(50.5)
    assert stats["total"]["latency_ms_p99"] == pytest.approx(99.01)
    assert stats["fps"] == pytest.approx(1e3 / 50.5)
    assert "detection" not in stats


def test_generated_frames_have_the_requested_size():
    frames, source = load_frames(None, 3, 320, 240)
    assert len(frames) == 3 and frames[0].shape == (240, 320, 3)
    assert "generated" in source


def test_bench_cli_writes_json_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "mediapipe_lite", "--backend", "onnxruntime",
                 "--frames", "6", "--width", "320", "--height", "240", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["hardware"]["cpu"] and report["hardware"]["cores_available"] >= 1
    assert "onnxruntime" in report["hardware"]["estimator_runtime"]
    detection = report["modes"]["detection"]
    assert detection["frames"] == 6 and detection["fps"] > 0
    assert {"latency_ms_p50", "latency_ms_p99"} <= set(detection["total"])
    assert "p50 ms" in capsys.readouterr().out
