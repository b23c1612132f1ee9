"""The source node publishes every frame of a video, an image folder or a recording as a bgr8
Image with a CameraInfo of the same header, and ends (or fails) the way launch files expect.

The node runs in its own process (as in a launch file), this test's process subscribes.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from media_fixtures import (
    BAG_K,
    BAG_PERIOD_NS,
    BAG_STAMP_NS,
    HEIGHT,
    WIDTH,
    frame,
    write_bag,
    write_image_folder,
    write_video,
)
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from ros_graph import ros_context, spin_until
from sensor_msgs.msg import CameraInfo, Image

from hand_pose_ros.io.camera_info import (
    CalibrationError,
    CameraCalibration,
    save_calibration_yaml,
)
from hand_pose_ros.nodes.parameters import ParameterError
from hand_pose_ros.nodes.source_node import SourceNode
from hand_pose_ros.pipeline.lifting import CameraIntrinsics

pytestmark = pytest.mark.ros
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
TIMEOUT_S = 30.0  # generous: a loaded 2-core machine can take seconds to start a node
RELIABLE = QoSProfile(depth=50)


class Receiver:
    """Subscribes to <namespace>/image_raw, camera_info and /diagnostics; keeps what arrives."""

    def __init__(self, context, namespace: str, qos: QoSProfile = RELIABLE):
        self.node = rclpy.create_node("receiver", context=context)
        self.images: list[Image] = []
        self.infos: list[CameraInfo] = []
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(Image, f"{namespace}/image_raw", self.images.append, qos)
        self.node.create_subscription(CameraInfo, f"{namespace}/camera_info", self.infos.append,
                                      qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "source_node: frames":
                self.diagnostics.append({v.key: v.value for v in status.values})

    def spin_until_exit(self, process: subprocess.Popen) -> tuple[int, str]:
        """Spin until ``process`` ended; its exit code and log."""
        spin_until(self.executor, lambda: process.poll() is not None, TIMEOUT_S, "the node to exit")
        return process.returncode, process.stderr.read()

    def spin_until_finished(self) -> dict[str, str]:
        """Spin until a source node's diagnostics say it finished; their values."""
        spin_until(self.executor, lambda: any(d["finished"] == "true" for d in self.diagnostics),
                   TIMEOUT_S, "diagnostics saying the source finished")
        return self.diagnostics[-1]

    def check_headers(self, frame_id: str) -> None:
        """Each image is bgr8 WIDTHxHEIGHT with a CameraInfo of the same header and size."""
        infos = {(i.header.stamp.sec, i.header.stamp.nanosec): i for i in self.infos}
        assert len(infos) == len(self.infos), "two CameraInfos with one stamp"
        for image in self.images:
            assert (image.encoding, image.width, image.height) == ("bgr8", WIDTH, HEIGHT)
            assert image.step == WIDTH * 3 and image.header.frame_id == frame_id
            info = infos.get((image.header.stamp.sec, image.header.stamp.nanosec))
            if info is not None:  # the first CameraInfo may go out before discovery ended
                assert info.header == image.header
                assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert len(infos) >= len(self.images) - 1

    def destroy(self) -> None:
        self.node.destroy_node()


def start_source(*params: str, namespace: str) -> subprocess.Popen:
    """The node in its own process, with ``name:=value`` parameters, under ``namespace``."""
    command = [sys.executable, "-m", "hand_pose_ros.nodes.source_node", "--ros-args",
               "-r", f"__ns:={namespace}"]
    for param in params:
        command += ["-p", param]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def pixels(image: Image) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3)


def test_video_frames_arrive_with_calibration_from_yaml_then_node_exits_0(tmp_path):
    video = write_video(tmp_path / "clip.avi", 4)
    calibration = CameraCalibration(WIDTH, HEIGHT, CameraIntrinsics(50.0, 51.0, 15.5, 11.5),
                                    distortion=(0.1, -0.01, 0.0, 0.0, 0.0))
    save_calibration_yaml(calibration, tmp_path / "camera.yaml")
    with ros_context() as context:
        receiver = Receiver(context, "/video")
        process = start_source(
            f"source:={video}", f"camera_info_url:=file://{tmp_path / 'camera.yaml'}",
            "frame_id:=test_optical_frame", "rate_hz:=20.0", "shutdown_when_done:=true",
            "wait_for_subscribers:=1", namespace="/video")
        try:
            returncode, stderr = receiver.spin_until_exit(process)
        finally:
            process.kill()
            receiver.destroy()
    assert returncode == 0, stderr
    assert "the calibration file" in stderr and "published 4 frames, skipped 0" in stderr
    assert len(receiver.images) == 4
    receiver.check_headers("test_optical_frame")
    for index, image in enumerate(receiver.images):  # in order; MJPEG is lossy
        np.testing.assert_allclose(pixels(image).mean(axis=(0, 1)), frame(index)[0, 0], atol=6)
    info = receiver.infos[-1]
    np.testing.assert_allclose(info.k, calibration.k.ravel())
    np.testing.assert_allclose(info.d, calibration.distortion)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], calibration.k)
    assert info.distortion_model == "plumb_bob"


def test_image_folder_through_the_cli_uses_default_intrinsics_and_skips_bad_images(tmp_path):
    folder = write_image_folder(tmp_path / "images", 3)
    (folder / "frame_000b.png").write_bytes(b"broken")
    with ros_context() as context:
        # A best-effort (sensor-data) subscriber must be served by the reliable publisher.
        receiver = Receiver(context, "/folder", qos_profile_sensor_data)
        process = subprocess.Popen(
            [sys.executable, "-m", "hand_pose_ros.cli", "source", str(folder), "--rate", "20",
             "--ros-args", "-r", "__ns:=/folder", "-p", "shutdown_when_done:=true",
             "-p", "wait_for_subscribers:=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            returncode, stderr = receiver.spin_until_exit(process)
        finally:
            process.kill()
            receiver.destroy()
    assert returncode == 0, stderr
    assert "60 deg horizontal field of view" in stderr and "frame_000b.png" in stderr
    assert "published 3 frames, skipped 1 bad frames" in stderr
    assert receiver.images, "no image arrived"
    receiver.check_headers("camera_optical_frame")
    expected = CameraCalibration.default_for(WIDTH, HEIGHT).k.ravel()
    np.testing.assert_allclose(receiver.infos[-1].k, expected)


def test_recording_replays_with_recorded_stamps_and_intrinsics(tmp_path):
    bag = write_bag(tmp_path / "bag", 3)
    with ros_context() as context:
        receiver = Receiver(context, "/bag")
        node = SourceNode(context=context, namespace="/bag", parameter_overrides=[
            Parameter("source", value=str(bag / "bag.mcap")),
            Parameter("bag_image_topic", value="/cam/image_raw"),
            Parameter("use_recorded_stamps", value=True), Parameter("rate_hz", value=50.0),
            Parameter("wait_for_subscribers", value=1),
        ])
        receiver.executor.add_node(node)
        try:
            spin_until(receiver.executor, lambda: len(receiver.images) == 3, TIMEOUT_S,
                       "the 3 recorded frames")
            # Without shutdown_when_done the node stays up and keeps reporting its counts.
            counts = receiver.spin_until_finished()
        finally:
            node.destroy_node()
            receiver.destroy()
    assert counts["frames_published"] == "3" and counts["frames_skipped"] == "0"
    assert node.calibration is not None  # taken from the recording's /cam/camera_info
    receiver.check_headers("camera_optical_frame")
    for index, image in enumerate(receiver.images):
        stamp_ns = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
        assert stamp_ns == BAG_STAMP_NS + index * BAG_PERIOD_NS
        np.testing.assert_array_equal(pixels(image), frame(index))
    np.testing.assert_allclose(receiver.infos[-1].k, BAG_K)


def test_looping_source_starts_again_after_its_last_frame(tmp_path):
    folder = write_image_folder(tmp_path / "images", 2)
    with ros_context() as context:
        receiver = Receiver(context, "/loop")
        node = SourceNode(context=context, namespace="/loop", parameter_overrides=[
            Parameter("source", value=str(folder)), Parameter("loop", value=True),
            Parameter("rate_hz", value=100.0), Parameter("wait_for_subscribers", value=1),
        ])
        receiver.executor.add_node(node)
        try:
            spin_until(receiver.executor, lambda: len(receiver.images) >= 5, TIMEOUT_S,
                       "5 frames of a 2-frame looping source")
        finally:
            node.destroy_node()
            receiver.destroy()
    firsts = [pixels(image)[0, 0, 0] for image in receiver.images[:5]]
    assert firsts == [frame(i % 2)[0, 0, 0] for i in range(5)]


def test_missing_source_exits_non_zero_with_one_clear_line():
    process = start_source("source:=/no/such/clip.mp4", namespace="/bad")
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 1
    assert stderr.strip() == "source_node: error: no such file or folder: /no/such/clip.mp4"


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({}, ParameterError, "parameter 'source' is empty"),
        ({"camera_info_url": "/no/such.yaml"}, CalibrationError, "/no/such.yaml"),
        ({"camera_info_url": "package://cam/x.yaml"}, CalibrationError, "file:// URLs"),
        ({"rate_hz": -1.0}, ParameterError, "parameter 'rate_hz'"),
    ],
    ids=["no-source", "missing-calibration", "package-url", "negative-rate"],
)
def test_unusable_parameters_fail_at_start_naming_the_problem(tmp_path, params, error, message):
    if params:
        params = {"source": str(write_image_folder(tmp_path / "images", 1)), **params}
    with ros_context() as context, pytest.raises(error, match=message):
        SourceNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in params.items()
        ])
