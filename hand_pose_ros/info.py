"""`hand-pose info`: what this installation has (versions, middleware, message types, cache,
registered models, installed runtimes)."""

import argparse
import importlib
import json
import os
import platform
from importlib import metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def collect() -> dict[str, str]:
    """Versions of the parts we depend on; a missing part is reported, not raised."""
    from hand_pose_ros import __version__
    from hand_pose_ros.paths import cache_dir

    info = {
        "hand_pose_ros": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "cache_dir": str(cache_dir()),
        "rmw_implementation": os.environ.get("RMW_IMPLEMENTATION", "(default)"),
        "discovery_range": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(default)"),
        "ros_domain_id": os.environ.get("ROS_DOMAIN_ID", "0"),
    }
    for dist in ("numpy", "scipy", "opencv-python-headless", "torch", "onnxruntime", "rosbags"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "not installed"
    try:
        from rclpy.utilities import get_rmw_implementation_identifier

        info["rmw_implementation"] = get_rmw_implementation_identifier()
    except ImportError as error:
        info["rclpy"] = f"not importable ({error})"
    for type_name in ("hand_pose_ros.msg.HandArray", "tf2_msgs.msg.TFMessage"):
        module, _, name = type_name.rpartition(".")
        try:
            getattr(importlib.import_module(module), name)
            info[type_name] = "ok"
        except (ImportError, AttributeError) as error:
            info[type_name] = f"missing ({error}); run `make setup` or colcon build"
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        info["cuda"] = "none"
    try:
        from hand_pose_ros.models import list_models
        from hand_pose_ros.runtime import available_backends

        info["models"] = ", ".join(list_models())
        info["backends"] = ", ".join(available_backends())
    except ImportError as error:
        info["models"] = f"not importable ({error})"
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
