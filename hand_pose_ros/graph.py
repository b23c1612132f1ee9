"""Start a graph of our nodes from one YAML file, as `ros2 launch` would (ROS-free code).

`ros2 launch` is not installable with ROS 2 from PyPI, so `hand-pose run --config FILE` starts
the graph itself: FILE is a standard ROS 2 parameters file whose top-level keys are node names
(``hand_pose_node: {ros__parameters: {...}}``); each key that names one of our nodes becomes
one process, `python -m <module> --ros-args --params-file FILE`, and picks its own section.
The launch files in launch/ read the same file and start the same nodes, so the two cannot
drift.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hand_pose_ros.paths import source_checkout_root

# node name (= executable name installed in lib/hand_pose_ros) -> module with main()
NODES: dict[str, str] = {
    "source_node": "hand_pose_ros.nodes.source_node",
    "hand_pose_node": "hand_pose_ros.nodes.hand_pose_node",
    "retarget_node": "hand_pose_ros.nodes.retarget_node",
    "recorder_node": "hand_pose_ros.nodes.recorder_node",
}


FASTDDS_PROFILE = Path(__file__).resolve().parent / "nodes" / "fastdds_large_messages.xml"


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for our ROS processes: ``base`` (default os.environ) plus, unless the user
    chose one, the Fast DDS profile that lets camera images cross processes without loss (see
    nodes/fastdds_large_messages.xml), and this checkout on PYTHONPATH when run from one."""
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
    root = source_checkout_root()
    if root is not None:  # child processes import this checkout's modules, as we do
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


class GraphError(RuntimeError):
    """A graph file that cannot be started, or a node that failed."""


def nodes_in_config(config: Path) -> list[str]:
    """Names of our nodes configured in ``config``, in file order.

    Raises:
        GraphError: unreadable file, or a top-level key that is not one of our nodes.
    """
    try:
        data = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise GraphError(f"cannot read graph config {config}: {error}") from error
    if not isinstance(data, dict) or not data:
        raise GraphError(f"{config}: expected node sections like 'hand_pose_node: "
                         "{ros__parameters: ...}'")
    unknown = [name for name in data if name not in NODES]
    if unknown:
        raise GraphError(f"{config}: unknown node(s) {unknown}; known: {sorted(NODES)}")
    return list(data)


class Graph:
    """The processes of one graph. Use as a context manager: leaving it stops every node."""

    def __init__(self, config: str | Path, nodes: list[str] | None = None,
                 ros_args: list[str] | None = None):
        self.config = Path(config).resolve()
        configured = nodes_in_config(self.config)
        self.names = [n for n in configured if nodes is None or n in nodes]
        self.ros_args = ros_args or []
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        env = ros_environment()
        for name in self.names:
            command = [sys.executable, "-m", NODES[name], "--ros-args",
                       "--params-file", str(self.config), *self.ros_args]
            self.processes[name] = subprocess.Popen(command, env=env)

    def wait(self, name: str, timeout_s: float | None = None) -> int:
        """Wait for node ``name`` to exit; return its exit code."""
        return self.processes[name].wait(timeout=timeout_s)

    def failed(self) -> dict[str, int]:
        """Nodes that exited with a non-zero code."""
        return {n: p.returncode for n, p in self.processes.items()
                if p.poll() is not None and p.returncode != 0}

    def running(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is None]

    def stop(self, names: list[str] | None = None, timeout_s: float = 10.0) -> None:
        """Stop nodes with SIGINT (as Ctrl-C would; they close files cleanly), then SIGKILL."""
        targets = [self.processes[n] for n in (names or list(self.processes))]
        for process in targets:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for process in targets:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> "Graph":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()



def launch_description(default_config: str, topic_arguments: dict[str, str]):
    """The LaunchDescription of launch/*.launch.py: the nodes of a config file.

    Declares the launch argument ``config`` (default: ``default_config`` in the package's
    share/config folder) and one argument per entry of ``topic_arguments`` ({hand_pose_node
    parameter: default}), which override those parameters of hand_pose_node. Each node of
    the file becomes a launch_ros Node with the file as its parameters - the same nodes and
    parameters `hand-pose run --config` starts.
    """
    # Imported here: ROS 2 launch exists only in a ROS 2 installation, not with PyPI wheels.
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = Path(get_package_share_directory("hand_pose_ros"))

    def nodes(context):
        config = LaunchConfiguration("config").perform(context)
        topics = {name: LaunchConfiguration(name).perform(context) for name in topic_arguments}
        return [
            Node(package="hand_pose_ros", executable=name, name=name, output="screen",
                 parameters=[config, topics if name == "hand_pose_node" else {}])
            for name in nodes_in_config(Path(config))
        ]

    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(share / "config" / default_config),
                              description="parameters file: one section per node to start"),
        *(DeclareLaunchArgument(name, default_value=default,
                                description=f"hand_pose_node parameter {name}")
          for name, default in topic_arguments.items()),
        OpaqueFunction(function=nodes),
    ])
