"""Every robot hand config as a pytest parameter (robot, side); unfetched assets skip."""

import pytest

from hand_pose_ros.retarget.config import load_robot_config, robot_configs


def robot_params() -> list:
    params = []
    for robot, side in robot_configs():
        try:
            load_robot_config(robot, side).description_path()
            marks = []
        except FileNotFoundError:
            marks = [pytest.mark.skip(reason=f"{robot} not fetched: run `hand-pose fetch-robots`")]
        params.append(pytest.param(robot, side, id=f"{robot}_{side}", marks=marks))
    return params
