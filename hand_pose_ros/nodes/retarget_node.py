"""retarget_node: human hands (hand_pose_ros/HandArray) in, robot hand joint commands out.

The node is thin: HandArray -> the keypoints of the configured side -> ``Retargeter.step``
(the ROS-free core: plausibility checks, solver, One Euro filter, joint and velocity limits,
hold-then-safe-pose) -> sensor_msgs/JointState (+ optionally trajectory_msgs/JointTrajectory)
with every joint of the robot, in the robot description's joint order.

Stamps: a command computed from a HandArray carries that message's stamp (the source image
stamp). When no HandArray arrives for a timer period, the timer steps the core without a hand
(hold, then move to the safe pose at a limited speed) and stamps with the node clock.
Safety timing (velocity limits, hold timeout) runs on the monotonic receipt clock, so replayed
or jumping image stamps cannot make a command move faster than its limits.

Diagnostics on /diagnostics: state (safe, tracking, holding, returning), solve time, hands
received and skipped per reason.
"""

import sys
import time

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from hand_pose_ros.msg import Hand, HandArray
from hand_pose_ros.nodes.common import publish_status, spin_node
from hand_pose_ros.nodes.convert import keypoints_from_msg
from hand_pose_ros.nodes.parameters import ParameterError, ParameterSpec, declare_parameters
from hand_pose_ros.retarget.config import METHODS, RetargetConfig
from hand_pose_ros.retarget.safety import TrackingState

NODE_NAME = "retarget_node"

PARAMETERS = [
    ParameterSpec("robot", "allegro",
                  "robot hand: config/robots/<robot>_<side>.yaml, or a path to such a YAML"),
    ParameterSpec("side", "right", "which human hand drives the robot (and the robot's side)",
                  choices=("right", "left")),
    ParameterSpec("method", "vector", "retargeting objective", choices=METHODS),
    ParameterSpec("regularization", 5e-4, "pull towards the previous solution, m^2/rad^2",
                  min_value=0.0, max_value=1.0),
    ParameterSpec("max_iterations", 20, "solver iterations per frame at most",
                  min_value=1, max_value=1000),
    ParameterSpec("filter_min_cutoff", 2.0, "One Euro cutoff at rest, Hz; 0 turns it off",
                  min_value=0.0, max_value=100.0),
    ParameterSpec("filter_beta", 0.5, "One Euro speed coefficient, s/rad",
                  min_value=0.0, max_value=1e4),
    ParameterSpec("filter_d_cutoff", 1.0, "One Euro cutoff of the speed estimate, Hz",
                  min_value=1e-3, max_value=100.0),
    ParameterSpec("hold_timeout_s", 0.5, "hold the last command this long after losing the hand",
                  min_value=0.0, max_value=60.0),
    ParameterSpec("return_velocity", 0.5, "speed towards the safe pose after the hold, rad/s",
                  min_value=1e-3, max_value=100.0),
    ParameterSpec("max_step_dt_s", 0.1, "longest step a velocity limit is applied over, s",
                  min_value=1e-3, max_value=10.0),
    ParameterSpec("safe_pose", [0.0],
                  "safe pose, one value per independent joint (rad); [0.0] alone: the robot "
                  "config's safe_pose"),
    ParameterSpec("input_topic", "hands", "hand_pose_ros/HandArray input"),
    ParameterSpec("joint_states_topic", "retarget/joint_states", "sensor_msgs/JointState output"),
    ParameterSpec("publish_trajectory", False, "also publish trajectory_msgs/JointTrajectory"),
    ParameterSpec("trajectory_topic", "retarget/joint_trajectory", "JointTrajectory output"),
    ParameterSpec("trajectory_time_from_start_s", 0.05, "time_from_start of the single point, s",
                  min_value=0.0, max_value=10.0),
    ParameterSpec("timer_rate_hz", 50.0, "rate of commands while no HandArray arrives, Hz",
                  min_value=1.0, max_value=1000.0),
    ParameterSpec("diagnostics_period_s", 1.0, "period of /diagnostics, s",
                  min_value=0.05, max_value=60.0),
]

OUTPUT_QOS = QoSProfile(depth=5)  # reliable, keep last 5: the command stream is not dropped


class RetargetNode(Node):
    """See the module docstring. Raises ParameterError at construction for bad parameters."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.p = p = declare_parameters(self, PARAMETERS)
        options = RetargetConfig(
            robot=p["robot"], side=p["side"], method=p["method"],
            regularization=p["regularization"], max_iterations=p["max_iterations"],
            filter_min_cutoff=p["filter_min_cutoff"], filter_beta=p["filter_beta"],
            filter_d_cutoff=p["filter_d_cutoff"], hold_timeout=p["hold_timeout_s"],
            return_velocity=p["return_velocity"], max_step_dt=p["max_step_dt_s"],
        )
        try:
            self.retargeter = options.build()
        except (ValueError, FileNotFoundError) as error:
            raise ParameterError(f"cannot retarget to robot '{p['robot']}': {error}") from error
        self._set_safe_pose(p["safe_pose"])
        self.side = Hand.SIDE_RIGHT if p["side"] == "right" else Hand.SIDE_LEFT
        self.joint_names = list(self.retargeter.joint_names)

        self._last_step = time.monotonic()
        self._received = 0
        self._solve_ms: list[float] = []
        self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], OUTPUT_QOS)
        self.trajectory_pub = (
            self.create_publisher(JointTrajectory, p["trajectory_topic"], OUTPUT_QOS)
            if p["publish_trajectory"] else None
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self.create_subscription(HandArray, p["input_topic"], self._on_hands, QoSProfile(depth=5))
        self._period = 1.0 / p["timer_rate_hz"]
        self.create_timer(self._period, self._on_timer)
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.get_logger().info(
            f"{p['method']} retargeting of the {p['side']} hand to "
            f"{self.retargeter.robot.name} ({len(self.joint_names)} joints), hands from "
            f"{self.resolve_topic_name(p['input_topic'])}"
        )

    def _set_safe_pose(self, values: list[float]) -> None:
        if list(values) == [0.0]:
            return
        gate, names = self.retargeter.gate, self.retargeter.kin.active_joint_names
        pose = np.asarray(values, dtype=np.float64)
        if pose.shape != (len(names),) or not np.all(np.isfinite(pose)):
            raise ParameterError(
                f"parameter 'safe_pose' needs {len(names)} finite values, for {list(names)}; "
                f"got {list(values)}"
            )
        if np.any(pose < gate.lower) or np.any(pose > gate.upper):
            raise ParameterError(
                f"parameter 'safe_pose' = {list(values)} is outside the joint limits "
                f"{gate.lower.tolist()} .. {gate.upper.tolist()}"
            )
        gate.safe_pose = pose
        self.retargeter.reset()

    def _on_hands(self, msg: HandArray) -> None:
        self._received += 1
        hand = next((h for h in msg.hands if h.side == self.side), None)
        keypoints = None if hand is None else keypoints_from_msg(hand)
        self._step(keypoints, msg.header.stamp)

    def _on_timer(self) -> None:
        if time.monotonic() - self._last_step >= self._period:
            self._step(None, self.get_clock().now().to_msg())

    def _step(self, keypoints: np.ndarray | None, stamp) -> None:
        self._last_step = time.monotonic()
        result = self.retargeter.step(keypoints, self._last_step)
        if result.skip_reason and keypoints is not None:
            self.get_logger().warning(f"hand skipped: {result.skip_reason}",
                                   throttle_duration_sec=2.0)
        if result.solve_time > 0:
            self._solve_ms.append(1e3 * result.solve_time)
        positions = result.positions
        if not np.all(np.isfinite(positions)):  # the core guarantees this; never trust blindly
            self.get_logger().error("non-finite command withheld", throttle_duration_sec=2.0)
            return
        joint_state = JointState(name=self.joint_names, position=positions.tolist())
        joint_state.header.stamp = stamp
        self.joint_pub.publish(joint_state)
        if self.trajectory_pub is not None:
            t = self.p["trajectory_time_from_start_s"]
            point = JointTrajectoryPoint(
                positions=positions.tolist(),
                time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1.0) * 1e9))),
            )
            trajectory = JointTrajectory(joint_names=self.joint_names, points=[point])
            trajectory.header.stamp = stamp
            self.trajectory_pub.publish(trajectory)

    def _publish_diagnostics(self) -> None:
        state = self.retargeter.gate.state
        solve = np.array(self._solve_ms[-500:]) if self._solve_ms else np.zeros(1)
        self._solve_ms = self._solve_ms[-500:]
        skipped = self.retargeter.skipped
        values = {
            "state": state.value,
            "robot": self.retargeter.robot.name,
            "hands_received": self._received,
            "solve_ms_p50": f"{np.median(solve):.3f}",
            "solve_ms_max": f"{np.max(solve):.3f}",
            "skipped": sum(skipped.values()),
            **{f"skipped_{k.replace(' ', '_')}": v for k, v in skipped.items()},
        }
        level, message = DiagnosticStatus.OK, state.value
        if state in (TrackingState.HOLDING, TrackingState.RETURNING):
            level, message = DiagnosticStatus.WARN, f"hand lost: {state.value}"
        publish_status(self, self.diag_pub, "retargeting", level, message,
                       self.retargeter.robot.name, values)


def main(args: list[str] | None = None) -> int:
    return spin_node(RetargetNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
