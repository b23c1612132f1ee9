"""retarget-bench: our speed and accuracy, and against dex-retargeting when it is installed."""

import argparse
import json

import numpy as np
import pytest

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.retarget import bench
from hand_pose_ros.retarget.config import RetargetConfig
from hand_pose_ros.retarget.synthetic import synthetic_sequence


def bench_args(tmp_path, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--robot", "allegro", "--json", str(tmp_path / "out.json")])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_bench_writes_the_json_report(tmp_path):
    args = bench_args(tmp_path, frames=40, no_peer=True, methods="vector,position")
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["robot"] == "allegro" and report["frames"] == 40
    for method in ("vector", "position"):
        res = report["methods"][method]
        assert res["ours_ms_p50"] > 0 and np.isfinite(res["ours_tip_error_mm"])
    assert report["ours_ms_p50"] == report["methods"]["vector"]["ours_ms_p50"]


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["allegro", "leap"])
def test_vector_solve_median_is_at_most_1ms(robot):
    retargeter = RetargetConfig(robot=robot, filter_min_cutoff=0).build()
    seq = synthetic_sequence(200, Handedness.RIGHT, noise_std=0.002)
    medians = []
    for _ in range(3):  # best of three medians: robust to a busy machine
        retargeter.reset()
        times = []
        for keypoints in seq:
            solve = bench.time.perf_counter()
            retargeter.solve(keypoints)
            times.append(bench.time.perf_counter() - solve)
        medians.append(np.median(times))
    assert min(medians) <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["allegro", "leap", "shadow"])
def test_twice_as_fast_as_dex_retargeting_and_as_accurate(tmp_path, robot):
    if bench.find_peer_python(None) is None:
        pytest.skip("dex-retargeting not installed: `hand-pose retarget-bench --setup-peers`")
    args = bench_args(tmp_path, robot=robot, frames=150)
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    for method, res in report["methods"].items():
        assert res["ratio"] >= 2.0, (method, res)
        # Same frames, same robot: our fingertip-vector error no worse (0.1 mm rounding).
        assert res["ours_tip_error_mm"] <= res["peer_tip_error_mm"] + 0.1, (method, res)
    dexpilot = report["methods"]["dexpilot"]
    assert dexpilot["ours_pinch_mm"] < 10.0
