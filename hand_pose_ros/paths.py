"""Where the project keeps files it fetches or builds at setup (weights, robot assets)."""

import os
import sys
from pathlib import Path


def source_checkout_root() -> Path | None:
    """The source checkout we run from, or whose .venv runs us (`make setup` installs the
    package into <checkout>/.venv); None for other installs (colcon, pip)."""
    for root in (Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve().parent):
        if (root / "package.xml").is_file() and (root / "hand_pose_ros").is_dir():
            return root
    return None


def cache_dir() -> Path:
    """Cache root for fetched files.

    $HAND_POSE_ROS_CACHE if set, else <checkout>/.cache for a source checkout and its .venv
    (see ``source_checkout_root``), else ~/.cache/hand_pose_ros.
    """
    env = os.environ.get("HAND_POSE_ROS_CACHE")
    if env:
        return Path(env).expanduser()
    root = source_checkout_root()
    if root is not None:
        return root / ".cache"
    return Path.home() / ".cache" / "hand_pose_ros"
