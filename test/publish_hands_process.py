"""A separate process that publishes one HandArray on /hands and its TF on /tf, then exits.

Run by test_ros_messages_cross_process.py; ``build_messages()`` is also what that test
expects to receive, field by field.
"""

import sys

import numpy as np
from builtin_interfaces.msg import Time
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.nodes.convert import hand_array_msg, hand_to_msg, hand_transforms

STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)
FRAME = "camera_color_optical_frame"
TF_PREFIX = "hand_"


def build_messages():
    """The HandArray (left and right hand, one with a mesh) and the TFMessage we publish."""
    from tf2_msgs.msg import TFMessage

    rng = np.random.default_rng(7)
    header = Header(stamp=STAMP, frame_id=FRAME)
    hands = []
    # Given left first on purpose: the array must come out right hand first.
    for side in (Handedness.LEFT, Handedness.RIGHT):
        keypoints = rng.normal(0.0, 0.03, (21, 3)) + [0.1 * side, 0.0, 0.5]
        rotation = wrist_frame(keypoints, side)
        with_mesh = side == Handedness.RIGHT
        hands.append(
            hand_to_msg(
                side=side,
                handedness_score=0.9,
                detection_score=0.8,
                tracking_id=10 + int(side),
                keypoints=keypoints,
                keypoints_image=rng.uniform(0, 640, (21, 2)),
                keypoint_confidence=rng.uniform(0, 1, 21),
                wrist_quaternion_xyzw=Rotation.from_matrix(rotation).as_quat(),
                mesh_vertices=keypoints if with_mesh else None,
                mesh_faces=np.array([[0, 1, 2], [2, 3, 4]]) if with_mesh else None,
            )
        )
    hand_array = hand_array_msg(header, "test", hands)
    transforms = [t for hand in hand_array.hands for t in hand_transforms(header, hand, TF_PREFIX)]
    return hand_array, TFMessage(transforms=transforms)


def main() -> int:
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile
    from tf2_msgs.msg import TFMessage

    from hand_pose_ros.msg import HandArray

    hand_array, tf_message = build_messages()
    rclpy.init()
    node = rclpy.create_node("publish_hands_process")
    hands_pub = node.create_publisher(HandArray, "/hands", 10)
    tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
    deadline = node.get_clock().now().nanoseconds + 30 * 10**9
    while hands_pub.get_subscription_count() == 0 or tf_pub.get_subscription_count() == 0:
        if node.get_clock().now().nanoseconds > deadline:
            print("no subscriber appeared within 30 s", file=sys.stderr)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    hands_pub.publish(hand_array)
    tf_pub.publish(tf_message)
    # Reliable delivery: leave only once both subscribers acknowledged the messages.
    ack_timeout = Duration(seconds=10)
    ok = hands_pub.wait_for_all_acked(ack_timeout) and tf_pub.wait_for_all_acked(ack_timeout)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
