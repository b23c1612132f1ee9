"""What every node of ours does the same way: start and spin, report on /diagnostics."""

import sys
from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """The ros2/examples ``main`` shape: init, build the node, spin until Ctrl-C/shutdown.

    A node that cannot start (bad parameter, missing weights or robot file, unavailable
    runtime: our errors derive from ValueError, RuntimeError or OSError) ends the process with
    one line on stderr and exit code 1 instead of a traceback.
    """
    try:
        with rclpy.init(args=args):
            try:
                node = make_node()
            except (ValueError, RuntimeError, OSError) as error:
                print(f"{name}: error: {error}", file=sys.stderr)
                return 1
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


def publish_status(node: Node, publisher, topic: str, level: bytes, message: str,
                   hardware_id: str, values: dict[str, object]) -> None:
    """Publish one DiagnosticStatus named "<node name>: <topic>" on ``publisher``.

    Floats are written with 3 decimals, everything else with str().
    """
    status = DiagnosticStatus(
        level=level, name=f"{node.get_name()}: {topic}", message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))
                for k, v in values.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(array)
