"""The recorder node: topics into a rosbag2 MCAP recording that ros2 bag, rosbags and Foxglove read.

Subscribes to the named topics (or to every topic with a publisher, except /rosout and
/parameter_events, when ``topics`` is not set), looking for new ones once a second, and writes
each message's serialized bytes as received, logged at the receive time (the node's clock).
Each subscription's QoS follows the topic's publishers, as ``ros2 bag record`` does: best effort
if any publisher is best effort (a reliable subscription would not match it), transient local
if all publishers are (to get latched messages such as /tf_static), keep last 100.

The recording is closed (MCAP summary and metadata.yaml written) on SIGINT, SIGTERM, ROS
shutdown or after ``max_duration_s``; only a hard kill leaves it unreadable.

Run: ``python -m hand_pose_ros.nodes.recorder_node --ros-args -p output:=run1`` or
``hand-pose record --output run1 --topics /hands /tf``.
"""

import argparse
import importlib
import json
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from hand_pose_ros.io.recording import BagRecorder, RecordingError
from hand_pose_ros.nodes.parameters import ParameterError, ParameterSpec, declare_parameters

NODE_NAME = "recorder_node"
DISCOVERY_PERIOD_S = 1.0
DEPTH = 100  # deep enough not to drop bursts (a /tf message per hand per frame) while writing
NOT_RECORDED_BY_DEFAULT = ("/rosout", "/parameter_events")

PARAMETERS = [
    ParameterSpec("output", "", "recording folder to create (it must not exist); it will hold "
                  "metadata.yaml and <folder name>.mcap"),
    ParameterSpec("topics", Parameter.Type.STRING_ARRAY, "topics to record (unset = every topic "
                  "with a publisher except /rosout and /parameter_events)"),
    ParameterSpec("max_duration_s", 0.0, "stop and exit after this many seconds "
                  "(0 = until shutdown)", 0.0, 1e9),
]


def message_class(type_name: str) -> type:
    """The Python class of a ROS type named "pkg/msg/Type"."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def subscription_qos(publishers) -> QoSProfile:
    """A QoS that matches every publisher in ``publishers`` (TopicEndpointInfo list)."""
    best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                      for p in publishers)
    latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                  for p in publishers)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=DEPTH,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class RecorderNode(Node):
    """Records topics into a rosbag2 MCAP recording (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        params = declare_parameters(self, PARAMETERS)
        if not params["output"]:
            raise ParameterError("parameter 'output' is empty: set it to the recording folder "
                                 "to create")
        self.wanted = [self.resolve_topic_name(t) for t in params["topics"] or []]
        self.recorder = BagRecorder(params["output"])
        self.handled: set[str] = set()  # topics subscribed to, or refused once with an error
        self.stopped = False
        self.create_timer(DISCOVERY_PERIOD_S, self._discover)
        if params["max_duration_s"] > 0:
            self.create_timer(params["max_duration_s"], self.stop)
        self.get_logger().info(
            f"recording {', '.join(self.wanted) if self.wanted else 'all topics'} into "
            f"{self.recorder.mcap_path}"
        )
        self._discover()

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.handled or (
                topic not in self.wanted if self.wanted else topic in NOT_RECORDED_BY_DEFAULT
            ):
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:  # QoS and type hash come from the publishers: wait for one
                continue
            self.handled.add(topic)
            if len(types) > 1:
                self.get_logger().warning(f"{topic} has several types {types}: "
                                          f"recording {types[0]}")
            type_hashes = {str(p.topic_type_hash) for p in publishers if p.topic_type == types[0]}
            try:
                msg_class = message_class(types[0])
                self.recorder.add_topic(topic, types[0], type_hashes.pop() if type_hashes else None)
            except (RecordingError, ImportError, AttributeError, ValueError) as error:
                self.get_logger().error(f"not recording {topic}: {error}")
                continue
            qos = subscription_qos(publishers)
            self.create_subscription(
                msg_class, topic, lambda data, topic=topic: self._write(topic, data), qos,
                raw=True,
            )
            self.get_logger().info(
                f"recording {topic} ({types[0]}, {qos.reliability.name.lower()}, "
                f"{qos.durability.name.lower()})"
            )

    def _write(self, topic: str, data: bytes) -> None:
        self.recorder.write(topic, self.get_clock().now().nanoseconds, data)

    def stop(self) -> None:
        """Ask the spin loop of ``main`` to end (the recording is closed after that)."""
        self.stopped = True

    def close(self) -> None:
        """Stop receiving and close the recording, logging what it holds."""
        for subscription in list(self.subscriptions):
            self.destroy_subscription(subscription)
        self.recorder.close()
        counts = ", ".join(f"{t}: {n}" for t, n in self.recorder.counts.items()) or "nothing"
        self.get_logger().info(f"closed {self.recorder.output}: {counts}")


def write_pending(node: RecorderNode) -> None:
    """Write what ``node`` received but has not handled yet: spin without waiting until a spin
    writes nothing more (so a stop right after publishers saw their messages acknowledged
    still records them)."""
    while True:
        written = sum(node.recorder.counts.values())
        rclpy.spin_once(node, timeout_sec=0.0)
        if sum(node.recorder.counts.values()) == written:
            return


def main(args: list[str] | None = None) -> int:
    """Record until SIGINT/SIGTERM/shutdown (or max_duration_s), then close the recording.

    Returns 0, or 1 with one line on stderr when the recording cannot be created.
    """
    # Our own signal handlers only ask the loop below to stop: rclpy's would raise
    # KeyboardInterrupt anywhere, possibly in the middle of writing a message to the file.
    with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
        try:
            node = RecorderNode()
        except (RecordingError, ParameterError) as error:
            print(f"{NODE_NAME}: error: {error}", file=sys.stderr)
            return 1
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: node.stop())
        try:
            while rclpy.ok(context=node.context) and not node.stopped:
                # A short wait: signal handlers run only once control is back in Python.
                rclpy.spin_once(node, timeout_sec=0.1)
            write_pending(node)
        except ExternalShutdownException:
            pass
        finally:
            node.close()
            node.destroy_node()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="recording folder to create")
    parser.add_argument("--topics", nargs="+", default=[],
                        help="topics to record (default: all but /rosout and /parameter_events)")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[], dest="ros_args",
                        help="further ROS arguments")


def run(args: argparse.Namespace) -> int:
    # JSON-quoted: ROS parses parameter values as YAML, and a name like "1" must stay a string.
    params = [f"output:={json.dumps(args.output)}", f"max_duration_s:={args.max_duration!r}"]
    if args.topics:
        params.append(f"topics:={json.dumps(args.topics)}")
    ros_args = [arg for param in params for arg in ("-p", param)]
    return main([NODE_NAME, "--ros-args", *ros_args, *args.ros_args])


if __name__ == "__main__":
    sys.exit(main())
