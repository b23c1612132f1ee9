"""The package imports on a machine without a GPU, and the `hand-pose` command answers."""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import hand_pose_ros
from hand_pose_ros.cli import SUBCOMMANDS

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_every_module_imports_without_a_gpu():
    modules = sorted(
        m.name
        for m in pkgutil.walk_packages(hand_pose_ros.__path__[:1], "hand_pose_ros.")
        if not m.name.startswith("hand_pose_ros.msg")
    )
    assert "hand_pose_ros.cli" in modules and "hand_pose_ros.nodes.convert" in modules
    code = (
        "import importlib, torch\n"
        "assert not torch.cuda.is_available()\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_message_types_import_from_the_built_package():
    result = run_python(
        "from hand_pose_ros.msg import Hand, HandArray\n"
        "from tf2_msgs.msg import TFMessage\n"
        "h = Hand(); assert len(h.keypoints) == Hand.NUM_JOINTS == 21\n"
        "assert len(h.keypoint_confidence) == 21 and HandArray().hands == []\n"
    )
    assert result.returncode == 0, result.stderr


def test_installed_hand_pose_command_lists_every_subcommand():
    result = subprocess.run(
        [str(VENV_BIN / "hand-pose"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_info_reports_message_types_and_middleware_as_json():
    result = subprocess.run(
        [str(VENV_BIN / "hand-pose"), "info", "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["hand_pose_ros.msg.HandArray"] == "ok"
    assert info["tf2_msgs.msg.TFMessage"] == "ok"
    assert info["rmw_implementation"].startswith("rmw_")


def test_unknown_subcommand_fails_with_usage():
    result = subprocess.run(
        [str(VENV_BIN / "hand-pose"), "no-such-command"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
