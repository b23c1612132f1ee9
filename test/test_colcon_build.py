"""The package builds the ROS-workspace way: `colcon build` against the venv's ROS 2."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("colcon", path=str(VENV / "bin")) is None, reason="no colcon")
def test_colcon_build_installs_messages_modules_and_command(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "hand_pose_ros").symlink_to(REPO_ROOT)
    env = {
        **os.environ,
        "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}",
        "AMENT_PREFIX_PATH": str(VENV),
        "CMAKE_PREFIX_PATH": str(VENV),
    }
    build = subprocess.run(
        [
            str(VENV / "bin" / "colcon"),
            "build",
            "--paths", "src/hand_pose_ros",
            "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
        ],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    # Use the workspace as a user would: source its setup script, then import and run.
    check = (
        "source install/setup.bash && cd /tmp && python -c '"
        "import hand_pose_ros, hand_pose_ros.cli; "
        "from hand_pose_ros.msg import Hand, HandArray; "
        "assert \"/install/\" in hand_pose_ros.__file__, hand_pose_ros.__file__; "
        "print(len(Hand().keypoints))' && "
        f"{workspace}/install/hand_pose_ros/lib/hand_pose_ros/hand-pose --help"
    )
    result = subprocess.run(
        ["bash", "-c", check], cwd=workspace, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("21\n")
    assert "SUBCOMMAND" in result.stdout
    launch_dir = workspace / "install" / "hand_pose_ros" / "share" / "hand_pose_ros"
    assert (launch_dir / "package.xml").is_file()
