"""Our messages and /tf cross a process boundary over loopback with every field intact."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
from publish_hands_process import FRAME, STAMP, build_messages
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from ros_graph import ros_context, spin_until
from tf2_msgs.msg import TFMessage

from hand_pose_ros.msg import Hand, HandArray
from hand_pose_ros.nodes.convert import keypoints_from_msg

pytestmark = pytest.mark.ros
REPO_ROOT = Path(__file__).resolve().parent.parent


def test_hand_array_and_tf_published_in_another_process_arrive_intact():
    received: dict[str, object] = {}
    with ros_context() as context:
        node = rclpy.create_node("receiver", context=context)
        node.create_subscription(HandArray, "/hands", lambda m: received.setdefault("hands", m), 10)
        node.create_subscription(
            TFMessage, "/tf", lambda m: received.setdefault("tf", m), QoSProfile(depth=100)
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        publisher = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("publish_hands_process.py"))],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        try:
            spin_until(
                executor,
                lambda: len(received) == 2 or publisher.poll() is not None,
                30.0,
                "/hands and /tf messages",
            )
            assert publisher.wait(timeout=20) == 0, publisher.stderr.read()
        finally:
            publisher.kill()
            node.destroy_node()

    # Compare with the expected messages as they look after serialisation (float32 fields).
    expected_hands, expected_tf = (
        deserialize_message(serialize_message(m), type(m)) for m in build_messages()
    )
    hands = received["hands"]
    assert hands.header.stamp == STAMP and hands.header.frame_id == FRAME
    assert hands.model == "test"
    assert [h.side for h in hands.hands] == [Hand.SIDE_RIGHT, Hand.SIDE_LEFT]
    assert [h.handedness for h in hands.hands] == ["right", "left"]
    for got, want in zip(hands.hands, expected_hands.hands, strict=True):
        assert got == want
        np.testing.assert_allclose(keypoints_from_msg(got), keypoints_from_msg(want))
    assert len(hands.hands[0].mesh.triangles) == 2 and len(hands.hands[1].mesh.vertices) == 0

    tf = received["tf"]
    assert tf == expected_tf
    assert len(tf.transforms) == 2 * 21
    assert tf.transforms[0].header.frame_id == FRAME
    assert tf.transforms[0].child_frame_id == "hand_right_wrist"
    assert tf.transforms[8].header.frame_id == "hand_right_wrist"
    assert tf.transforms[8].child_frame_id == "hand_right_index_tip"
    assert all(t.header.stamp == STAMP for t in tf.transforms)
