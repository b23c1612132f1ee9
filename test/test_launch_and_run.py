"""Starting the graph: `hand-pose run --config` for real, launch files where ROS 2 launch exists."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from ros_graph import ros_context, spin_until

from hand_pose_ros.graph import GraphError, nodes_in_config
from hand_pose_ros.msg import HandArray

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO_ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_names_only_our_nodes(config):
    assert nodes_in_config(config)


def test_unknown_node_in_a_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("camera_driver:\n  ros__parameters: {fps: 30}\n")
    with pytest.raises(GraphError, match="unknown node.*camera_driver"):
        nodes_in_config(config)


def test_rviz_config_shows_the_topics_the_node_publishes():
    rviz = yaml.safe_load((REPO_ROOT / "config" / "hand_pose.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"]
              if "Topic" in d}
    assert {"/hand_markers", "/hand_debug_image", "/hand_poses"} <= topics
    classes = {d["Class"] for d in rviz["Visualization Manager"]["Displays"]}
    assert "rviz_default_plugins/TF" in classes


@pytest.mark.ros
@pytest.mark.slow
def test_hand_pose_run_starts_the_configured_graph_and_stops_on_ctrl_c(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(REPO_ROOT / "demo" / "emoji_hands.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 20)
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:03d}.png"), capture.read()[1])
    config = tmp_path / "graph.yaml"
    config.write_text(yaml.safe_dump({
        "source_node": {"ros__parameters": {"source": str(frames), "rate_hz": 10.0,
                                            "loop": True, "wait_for_subscribers": 1}},
        "hand_pose_node": {"ros__parameters": {"image_topic": "image_raw",
                                               "camera_info_topic": "camera_info"}},
    }, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # ROS arguments after --ros-args reach every node: here the hands go to a remapped topic.
    run = subprocess.Popen([sys.executable, "-m", "hand_pose_ros.cli", "run", "--config",
                            str(config), "--ros-args", "-r", "hands:=/run_test/hands"],
                           env=env, stdout=subprocess.PIPE, text=True)
    received = []
    try:
        with ros_context() as context:
            node = rclpy.create_node("run_test", context=context)
            node.create_subscription(HandArray, "/run_test/hands", received.append, 10)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            spin_until(executor, lambda: any(a.hands for a in received) or run.poll() is not None,
                       60.0, "hands from the started graph")
            node.destroy_node()
        assert run.poll() is None, "hand-pose run exited early"
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
    assert "starting source_node, hand_pose_node" in run.stdout.read()


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="ROS 2 launch (launch_ros) is not installable from PyPI; "
                           "the launch files are exercised where ROS 2 is installed")
@pytest.mark.parametrize("launch_file", ["hand_pose.launch.py", "teleop.launch.py"])
def test_launch_files_describe_the_nodes_of_their_config(launch_file):
    spec = importlib.util.spec_from_file_location("launch_file", REPO_ROOT / "launch" / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = [a.name for a in description.entities if hasattr(a, "name")]
    assert "config" in names and "image_topic" in names
