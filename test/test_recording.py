"""The recorder node writes what other processes publish into a valid rosbag2 MCAP recording,
as received, and closes it cleanly when stopped with SIGINT."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from mcap.reader import make_reader
from publish_hands_process import build_messages
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from ros_graph import ros_context, spin_until
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from hand_pose_ros.io.images import from_bgr8
from hand_pose_ros.io.recording import BagRecorder, RecordingError
from hand_pose_ros.msg import HandArray
from hand_pose_ros.nodes.recorder_node import RecorderNode

pytestmark = pytest.mark.ros
REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30.0
ACK_TIMEOUT = Duration(seconds=10)


def image_message(value: int) -> Image:
    raw = from_bgr8(np.full((6, 8, 3), value, np.uint8))
    image = Image(height=raw.height, width=raw.width, encoding=raw.encoding, step=raw.step,
                  data=raw.data)
    image.header.frame_id = "camera_optical_frame"
    image.header.stamp.sec = value
    return image


def messages_by_topic(bag: Path) -> dict[str, list[tuple[int, bytes, object]]]:
    """{topic: [(log time ns, CDR bytes, rosbags-decoded message)]} of a recording."""
    found: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for connection, log_time, raw in reader.messages():
            decoded = reader.deserialize(raw, connection.msgtype)
            found.setdefault(connection.topic, []).append((log_time, bytes(raw), decoded))
    return found


def test_topics_of_another_process_are_recorded_intact_and_closed_on_sigint(tmp_path):
    bag = tmp_path / "run"
    hand_array, tf_message = build_messages()
    images = [image_message(10), image_message(20)]
    with ros_context() as context:
        node = rclpy.create_node("publisher", context=context)
        publishers = {
            "/hands": node.create_publisher(HandArray, "/hands", 10),
            "/tf": node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100)),
            # Best effort, as cameras publish: the recorder must subscribe best effort too.
            "/camera/image_raw": node.create_publisher(Image, "/camera/image_raw",
                                                       qos_profile_sensor_data),
        }
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        recorder = subprocess.Popen(
            [sys.executable, "-m", "hand_pose_ros.nodes.recorder_node", "--ros-args",
             "-p", f"output:={bag}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        try:
            spin_until(executor, lambda: all(p.get_subscription_count() for p in
                                              publishers.values()) or recorder.poll() is not None,
                       TIMEOUT_S, "the recorder to subscribe to every topic")
            assert recorder.poll() is None, recorder.stderr.read()
            start_ns = time.time_ns()
            publishers["/hands"].publish(hand_array)
            publishers["/tf"].publish(tf_message)
            for image in images:
                publishers["/camera/image_raw"].publish(image)
            publishers["/hands"].publish(hand_array)
            assert publishers["/hands"].wait_for_all_acked(ACK_TIMEOUT)
            assert publishers["/tf"].wait_for_all_acked(ACK_TIMEOUT)
            end_ns = time.time_ns()
            recorder.send_signal(signal.SIGINT)
            assert recorder.wait(timeout=TIMEOUT_S) == 0, recorder.stderr.read()
        finally:
            recorder.kill()
            node.destroy_node()

    recorded = messages_by_topic(bag)
    assert set(recorded) == {"/hands", "/tf", "/camera/image_raw"}
    # The stored bytes decode (with rclpy and with rosbags) to what was sent; the sent message
    # as it is after serialisation (float32 fields). Bytes may differ from a local
    # serialize_message in alignment padding only.
    sent_hands = deserialize_message(serialize_message(hand_array), HandArray)
    assert [deserialize_message(raw, HandArray) for _, raw, _ in recorded["/hands"]] == [
        sent_hands, sent_hands]
    assert deserialize_message(recorded["/tf"][0][1], TFMessage) == tf_message
    assert recorded["/hands"][0][2].hands[0].handedness == "right"
    assert len(recorded["/tf"][0][2].transforms) == len(tf_message.transforms)
    # Best effort on loopback: expect the images, but only require that what came is intact.
    assert 1 <= len(recorded["/camera/image_raw"]) <= len(images)
    for _, raw, _ in recorded["/camera/image_raw"]:
        assert deserialize_message(raw, Image) in images
    # Log time = receive time.
    for entries in recorded.values():
        assert all(start_ns <= log_time <= end_ns + 10**9 for log_time, _, _ in entries)

    # The .mcap itself (what Foxglove opens): a schema and a CDR channel per topic.
    with (bag / "run.mcap").open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        channels = {c.topic: c for c in summary.channels.values()}
        counts = {channels_id: n for channels_id, n in
                  summary.statistics.channel_message_counts.items()}
        schemas = {channel.topic: summary.schemas[channel.schema_id]
                   for channel in summary.channels.values()}
    assert {topic: schema.name for topic, schema in schemas.items()} == {
        "/hands": "hand_pose_ros/msg/HandArray",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/camera/image_raw": "sensor_msgs/msg/Image",
    }
    assert all(schema.encoding == "ros2msg" and schema.data for schema in schemas.values())
    assert b"Hand[] hands" in schemas["/hands"].data  # the full definition, nested types too
    assert all(c.message_encoding == "cdr" for c in channels.values())
    assert counts[channels["/hands"].id] == 2 and counts[channels["/tf"].id] == 1


def test_named_topics_only_with_latched_messages_and_a_matching_qos(tmp_path):
    latched_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    with ros_context() as context:
        node = rclpy.create_node("publisher", context=context)
        latched = node.create_publisher(String, "/static_info", latched_qos)
        latched.publish(String(data="published before the recorder started"))
        other = node.create_publisher(String, "/not_recorded", 10)
        recorder = RecorderNode(context=context, parameter_overrides=[
            Parameter("output", value=str(tmp_path / "named")),
            Parameter("topics", value=["static_info", "/not_there_yet"]),
        ])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(recorder)
        try:
            spin_until(executor, lambda: recorder.recorder.counts.get("/static_info") == 1,
                       TIMEOUT_S, "the latched message")
            other.publish(String(data="not wanted"))
            late = node.create_publisher(String, "/not_there_yet", 10)
            spin_until(executor, lambda: late.get_subscription_count() > 0, TIMEOUT_S,
                       "the recorder to find a topic that appeared later")
            late.publish(String(data="late"))
            spin_until(executor, lambda: recorder.recorder.counts.get("/not_there_yet") == 1,
                       TIMEOUT_S, "the late topic's message")
        finally:
            recorder.close()
            recorder.destroy_node()
            node.destroy_node()
    recorded = messages_by_topic(tmp_path / "named")
    assert set(recorded) == {"/static_info", "/not_there_yet"}
    assert recorded["/static_info"][0][2].data == "published before the recorder started"
    assert recorded["/not_there_yet"][0][2].data == "late"


def test_recording_refuses_an_existing_folder_and_an_unknown_type(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(RecordingError, match="exists already"):
        BagRecorder(tmp_path / "taken")
    with BagRecorder(tmp_path / "new") as recorder:
        with pytest.raises(RecordingError, match="my_pkg/msg/Thing"):
            recorder.add_topic("/thing", "my_pkg/msg/Thing")
        with pytest.raises(RecordingError, match="hash"):
            recorder.add_topic("/hands", "hand_pose_ros/msg/HandArray", "RIHS01_" + "0" * 64)
