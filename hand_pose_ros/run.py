"""`hand-pose run --config FILE`: start our nodes as configured in FILE until Ctrl-C."""

import argparse
import time

from hand_pose_ros.graph import Graph, GraphError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="ROS 2 parameters file with one section per node to start "
                             "(e.g. config/teleop.yaml)")
    parser.add_argument("--only", nargs="+", metavar="NODE", help="start only these nodes")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[], dest="ros_args",
                        help="ROS arguments passed to every node, e.g. -p image_topic:=/cam/image "
                             "or -r hands:=/left_cam/hands")


def run(args: argparse.Namespace) -> int:
    try:
        graph = Graph(args.config, args.only, args.ros_args)
    except GraphError as error:
        print(f"error: {error}")
        return 2
    print(f"starting {', '.join(graph.names)} (Ctrl-C stops them)")
    with graph:
        try:
            while graph.running():
                if failed := graph.failed():
                    print(f"error: node(s) exited with an error: {failed}")
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0
