"""retarget_node in a real rclpy graph (loopback): hands in, safe joint commands out."""

import os
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("hand_pose_ros.msg")

import yaml  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from ros_graph import ros_context, spin_until  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from hand_pose_ros.hand.joints import Handedness  # noqa: E402
from hand_pose_ros.msg import Hand, HandArray  # noqa: E402
from hand_pose_ros.nodes.parameters import ParameterError  # noqa: E402
from hand_pose_ros.nodes.retarget_node import RetargetNode  # noqa: E402
from hand_pose_ros.retarget import synthetic  # noqa: E402
from hand_pose_ros.retarget.config import RetargetConfig  # noqa: E402

pytestmark = pytest.mark.ros
CONFIG = Path(__file__).resolve().parent.parent / "config" / "retarget.yaml"


@pytest.fixture(scope="module")
def context():
    # A domain of this module's own, on loopback, set before rclpy reads the environment.
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(102 + os.getpid() % 100)
    with ros_context() as ctx:
        yield ctx
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def node_parameters(**overrides) -> list[Parameter]:
    """config/retarget.yaml's parameters (ROS params-file format) with overrides."""
    values = yaml.safe_load(CONFIG.read_text())["retarget_node"]["ros__parameters"]
    values.update(overrides)
    return [Parameter(k, value=v) for k, v in values.items()]


def hand_msg(keypoints: np.ndarray, side: int) -> Hand:
    hand = Hand(side=side, handedness="right" if side == Hand.SIDE_RIGHT else "left")
    hand.keypoints = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in keypoints]
    return hand


def state_of(diagnostics: DiagnosticArray) -> str:
    """The retargeting state a /diagnostics message reports."""
    return {kv.key: kv.value for kv in diagnostics.status[0].values}["state"]


class Graph:
    """The node under test plus a test node publishing hands and recording commands."""

    def __init__(self, context, **overrides):
        self.node = RetargetNode(context=context, parameter_overrides=node_parameters(**overrides))
        self.probe = rclpy.create_node("retarget_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.pub = self.probe.create_publisher(HandArray, "hands", QoSProfile(depth=5))
        self.states: list[JointState] = []
        self.trajectories: list[JointTrajectory] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.probe.create_subscription(JointState, "retarget/joint_states",
                                       self.states.append, QoSProfile(depth=100))
        self.probe.create_subscription(JointTrajectory, "retarget/joint_trajectory",
                                       self.trajectories.append, QoSProfile(depth=100))
        self.probe.create_subscription(DiagnosticArray, "/diagnostics",
                                       self.diagnostics.append, QoSProfile(depth=10))
        spin_until(self.executor, lambda: self.pub.get_subscription_count() > 0
                   and self.probe.count_publishers("retarget/joint_states") > 0
                   and len(self.states) > 0, what="discovery and the first timer command")
        self.retargeter = self.node.retargeter

    def send(self, hands: list[Hand], stamp_sec: int) -> JointState:
        """Publish one HandArray; return the command that carries its stamp."""
        msg = HandArray(hands=hands, model="test")
        msg.header.stamp = Time(sec=stamp_sec, nanosec=0)
        msg.header.frame_id = "camera"
        self.pub.publish(msg)
        spin_until(self.executor, lambda: any(s.header.stamp.sec == stamp_sec
                                              for s in self.states), what="the command")
        return next(s for s in self.states if s.header.stamp.sec == stamp_sec)

    def state(self) -> str:
        return state_of(self.diagnostics[-1])

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


def assert_safe(graph: Graph, msg: JointState):
    positions = np.array(msg.position)
    assert list(msg.name) == list(graph.retargeter.joint_names)
    assert np.all(np.isfinite(positions))
    assert np.all(positions >= graph.retargeter.lower - 1e-9)
    assert np.all(positions <= graph.retargeter.upper + 1e-9)


def test_hands_in_joint_states_out_with_names_limits_and_source_stamps(context):
    graph = Graph(context, publish_trajectory=True, diagnostics_period_s=0.1)
    try:
        fist = synthetic.camera_keypoints(synthetic.FIST, Handedness.RIGHT)
        commands = [graph.send([hand_msg(fist, Hand.SIDE_RIGHT)], sec) for sec in range(1, 41)]
        for msg in commands:
            assert_safe(graph, msg)
        # The robot flexes towards the fist (rate limited from the open safe pose).
        start, end = np.array(commands[0].position), np.array(commands[-1].position)
        assert np.sum(end) > np.sum(start) + 1.0
        spin_until(graph.executor, lambda: any(t.header.stamp.sec == 40
                                               for t in graph.trajectories),
                   what="the trajectory")
        trajectory = next(t for t in graph.trajectories if t.header.stamp.sec == 40)
        assert list(trajectory.joint_names) == list(graph.retargeter.joint_names)
        np.testing.assert_allclose(trajectory.points[0].positions, end)
        # While hands keep coming, /diagnostics reports the tracking state. (Between hands the
        # timer reports "holding", so keep sending until a report falls inside the stream.)
        stamps = iter(range(41, 100_000))

        def tracking_reported() -> bool:
            graph.send([hand_msg(fist, Hand.SIDE_RIGHT)], next(stamps))
            return any(state_of(d) == "tracking" for d in graph.diagnostics)

        spin_until(graph.executor, tracking_reported, what="diagnostics saying tracking")
    finally:
        graph.close()


def test_tracking_loss_holds_then_moves_to_the_safe_pose(context):
    graph = Graph(context, hold_timeout_s=0.3, return_velocity=4.0, diagnostics_period_s=0.05)
    try:
        fist = synthetic.camera_keypoints(synthetic.FIST, Handedness.RIGHT)
        for sec in range(1, 31):
            last = graph.send([hand_msg(fist, Hand.SIDE_RIGHT)], sec)
        lost_at = graph.node.get_clock().now().nanoseconds * 1e-9
        count = len(graph.states)
        spin_until(graph.executor, lambda: len(graph.states) > count + 3, what="timer commands")
        # Timer commands carry the node clock's time: those well within the hold timeout.
        held = [s for s in graph.states[count:]
                if s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 - lost_at < 0.25]
        assert held, "no command was sent while holding"
        for msg in held:
            np.testing.assert_allclose(msg.position, last.position)
        safe = graph.retargeter.kin.to_full(graph.retargeter.gate.safe_pose)
        spin_until(graph.executor, lambda: np.allclose(graph.states[-1].position, safe),
                   timeout_s=10.0, what="the safe pose")
        for msg in graph.states[count:]:
            assert_safe(graph, msg)
        spin_until(graph.executor, lambda: graph.state() == "safe", what="state safe")
    finally:
        graph.close()


def test_garbage_hands_never_move_the_robot_unsafely(context):
    graph = Graph(context, diagnostics_period_s=0.05)
    try:
        opened = synthetic.camera_keypoints(synthetic.OPEN, Handedness.RIGHT)
        for sec in range(1, 11):
            good = graph.send([hand_msg(opened, Hand.SIDE_RIGHT)], sec)
        nan_hand = opened.copy()
        nan_hand[8] = np.nan
        stretched = opened.copy()
        stretched[12] = stretched[11] + 6.0 * (stretched[12] - stretched[11])
        bad_inputs = [
            [hand_msg(nan_hand, Hand.SIDE_RIGHT)],
            [hand_msg(stretched, Hand.SIDE_RIGHT)],
            [hand_msg(opened * [-1.0, 1.0, 1.0], Hand.SIDE_LEFT)],  # only the other hand
            [],
        ]
        for sec, hands in enumerate(bad_inputs, start=11):
            msg = graph.send(hands, sec)
            assert_safe(graph, msg)
            np.testing.assert_allclose(msg.position, good.position)  # held
        assert sum(graph.retargeter.skipped.values()) == 2
        spin_until(graph.executor, lambda: graph.diagnostics and {
            kv.key: kv.value for kv in graph.diagnostics[-1].status[0].values
        }.get("skipped") == "2", what="skipped hands in diagnostics")
    finally:
        graph.close()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"robot": "no_such_hand"}, "cannot retarget to robot"),
    ({"method": "magic"}, "not one of"),
    ({"safe_pose": [0.1, 0.2]}, "needs 16 finite values"),
    ({"hold_timeout_s": -1.0}, "out of range"),
])
def test_bad_parameters_fail_fast_with_a_clear_message(context, overrides, message):
    with pytest.raises(ParameterError, match=message):
        RetargetNode(context=context, parameter_overrides=node_parameters(**overrides))


def test_config_file_matches_the_core_defaults():
    values = yaml.safe_load(CONFIG.read_text())["retarget_node"]["ros__parameters"]
    core = RetargetConfig()
    assert values["regularization"] == core.regularization
    assert values["hold_timeout_s"] == core.hold_timeout
    assert values["filter_min_cutoff"] == core.filter_min_cutoff
