"""``hand-pose bench --matrix``: every model x backend x device x batch measured or listed as
unavailable with its reason; the README table generator reads its JSON."""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from hand_pose_ros.bench_matrix import (
    TimedBackend,
    backend_options,
    bench_rois,
    compare_with_reference,
    format_comparisons,
)
from hand_pose_ros.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_table.py"
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def results_table_module():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_get_the_runtime_options_of_their_device():
    assert backend_options("onnxruntime", "cpu", "fp16", True, 4) == {"device": "cpu"}
    assert backend_options("torch", "cuda", "fp16", True, 4) == {
        "device": "cuda", "precision": "fp16", "cuda_graphs": True}
    assert backend_options("tensorrt", "cuda", "fp16", True, 4) == {
        "device": "cuda", "precision": "fp16", "max_batch": 4}


def test_timed_backend_adds_up_network_time_and_passes_attributes_through():
    class Slow:
        device = "cpu"

        def __call__(self, x):
            time.sleep(0.01)
            return (x,)

    timed = TimedBackend(Slow(), lambda: None)
    timed(np.zeros(1))
    timed(np.zeros(1))
    assert timed.seconds >= 0.02 and timed.device == "cpu"


def test_batch_rois_are_distinct_and_inside_the_frame():
    rois = bench_rois(4, 640, 480)
    assert len({(r.cx, r.width, r.rotation) for r in rois}) == 4
    assert all(0 < r.cx < 640 and 0 < r.cy < 480 for r in rois)


@pytest.mark.usefixtures("mediapipe_weights")
def test_matrix_cli_measures_what_runs_and_lists_the_rest_with_reasons(tmp_path, capsys):
    out = tmp_path / "matrix.json"
    code = main(["bench", "--matrix", "--models", "mediapipe_lite",
                 "--backends", "onnxruntime,tensorrt", "--devices", "cpu,cuda",
                 "--batch", "1,2", "--iterations", "3", "--frames", "3", "--width", "320",
                 "--height", "240", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["hardware"]["cpu"] and report["date"]
    measured = {(r["backend"], r["device"], r["batch"]) for r in report["results"]}
    assert {("onnxruntime", "cpu", 1), ("onnxruntime", "cpu", 2)} <= measured
    for r in report["results"]:
        assert r["latency_ms_p99"] >= r["latency_ms_p50"] > 0
        assert r["hands_per_s"] == pytest.approx(r["batch"] * 1e3 / r["latency_ms_mean"])
        assert r["network_ms_p50"] > 0 and r["preprocess_ms_p50"] > 0
        assert r["parameters"] > 1e6 and "onnxruntime" in r["runtime"]
        assert r["peak_memory_mb"] >= 0  # freed memory may be reused: growth can be 0
    reasons = {(u["backend"], u["device"]): u["reason"] for u in report["unavailable"]}
    if not HAS_TENSORRT:
        assert "TensorRT" in reasons[("tensorrt", "cpu")]
    assert all("\n" not in reason for reason in reasons.values())
    printed = capsys.readouterr().out
    assert "hands/s" in printed and printed.count("unavailable:") == len(reasons)

    table = results_table_module()
    assert table.main([str(out)]) == 0
    markdown = capsys.readouterr().out
    assert report["date"][:10] in markdown and report["hardware"]["cpu"] in markdown
    assert markdown.count("| mediapipe_lite |") == len(report["results"])


def test_unknown_model_ends_with_one_line(capsys):
    assert main(["bench", "--matrix", "--models", "nope"]) == 2
    assert "unknown model(s) nope" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
@pytest.mark.usefixtures("mediapipe_weights")
def test_tracker_bench_on_tensorrt_without_it_ends_with_one_clear_line(capsys):
    assert main(["bench", "--backend", "tensorrt", "--device", "cuda", "--frames", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "TensorRT" in err


def test_comparisons_skip_with_a_reason_when_peers_are_absent(tmp_path):
    ref = compare_with_reference(Path("video.mp4"), 5, tmp_path / "no-venv")
    assert "not installed" in ref["skipped"]
    text = format_comparisons({"reference": ref, "retarget": {
        "robot": "allegro", "frames": 30, "peer_skipped": "dex-retargeting not installed",
        "methods": {"vector": {"ours_ms_p50": 1.0, "ours_tip_error_mm": 2.0}}}})
    assert "skipped" in text and "allegro vector" in text
    table = results_table_module()
    lines = table.comparison_lines({"reference": ref})
    assert lines == [f"- Reference MediaPipe: not run ({ref['skipped']})."]


def test_results_table_rejects_other_json(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"model": "x"}))
    assert results_table_module().main([str(path)]) == 2
    assert "not a `hand-pose bench --matrix --json` report" in capsys.readouterr().err
