"""Where the project keeps files it fetches or builds at setup (weights, robot assets)."""

import os
from pathlib import Path


def source_checkout_root() -> Path | None:
    """The repository root when running from a source checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "package.xml").is_file() else None


def cache_dir() -> Path:
    """Cache root for fetched files.

    $HAND_POSE_ROS_CACHE if set, else <repo>/.cache in a source checkout, else
    ~/.cache/hand_pose_ros. `make` sets $HAND_POSE_ROS_CACHE to <repo>/.cache, so the command
    installed into .venv and the tests share one cache.
    """
    env = os.environ.get("HAND_POSE_ROS_CACHE")
    if env:
        return Path(env).expanduser()
    root = source_checkout_root()
    if root is not None:
        return root / ".cache"
    return Path.home() / ".cache" / "hand_pose_ros"
