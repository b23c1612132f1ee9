"""The one ``hand-pose`` command.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``--help``
stays fast and needs neither torch nor rclpy.
"""

import argparse
import importlib
import sys

# name -> (module that implements it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("hand_pose_ros.info", "show versions, the ROS middleware and the message types"),
    "run": ("hand_pose_ros.run", "start the nodes configured in a YAML file, as launch would"),
    "demo": ("hand_pose_ros.demo", "run the full graph on the bundled input; write out/"),
    "hand-model": (
        "hand_pose_ros.hand.export_mesh",
        "write the open hand model's mesh (template or a gesture) as .obj/.ply for inspection",
    ),
    "hand-bench": (
        "hand_pose_ros.hand.bench",
        "measure the hand model's fit (error, time per hand) and forward kinematics speed",
    ),
    "fetch-robots": (
        "hand_pose_ros.retarget.fetch",
        "fetch robot hand descriptions that cannot be bundled (Inspire, Ability) into the cache",
    ),
    "retarget-bench": (
        "hand_pose_ros.retarget.bench",
        "time and score our retargeting against dex-retargeting on the same keypoints",
    ),
    "fetch-weights": ("hand_pose_ros.models.weights",
                      "download and verify the MediaPipe hand model weights (run once at setup)"),
    "bench": ("hand_pose_ros.bench", "measure per-stage and end-to-end latency of the tracker"),
    "export": ("hand_pose_ros.export",
               "export a model's network as ONNX (checked for TensorRT) or a TensorRT engine"),
    "compare-reference": ("hand_pose_ros.compare_reference",
                          "compare the tracker with the reference MediaPipe solution on a video"),
    "source": ("hand_pose_ros.nodes.source_node",
               "publish a video, image folder, recording or camera as image_raw + camera_info"),
    "record": ("hand_pose_ros.nodes.recorder_node",
               "record topics into a rosbag2 MCAP recording (ros2 bag, rosbags, Foxglove)"),
    "train": ("hand_pose_ros.train.cli",
              "train a seed model (rejshand, ehpe, cliphand, handformer2t, dfl) on synthetic "
              "data or a dataset"),
    "synth": ("hand_pose_ros.data.cli",
              "write synthetic hand shards or the fixed test split; --bench, --preview PNG"),
    "eval": ("hand_pose_ros.eval.cli",
             "score a model on a data source (MPJPE, PA-MPJPE/MPVPE, F@5/15, AUC, MRRPE); "
             "table, JSON, plots"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hand-pose",
        description="Real-time 3D hand pose, hand mesh and robot-hand retargeting for ROS 2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        # No or unknown subcommand: usage, the list of subcommands, or a clear error.
        build_parser().parse_args(argv)  # prints help or the error and exits
        build_parser().print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"hand-pose {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
