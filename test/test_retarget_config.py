"""Robot YAML configs: a user hand without code, clear errors, fetched assets checked."""

import shutil

import numpy as np
import pytest
import yaml

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.retarget import fetch, synthetic
from hand_pose_ros.retarget.config import RetargetConfig, RobotHandConfig, load_robot_config


def allegro_yaml() -> dict:
    cfg = load_robot_config("allegro", "right")
    with cfg.source.open() as f:
        return yaml.safe_load(f)


def test_a_user_hand_needs_only_a_urdf_and_a_yaml(tmp_path):
    # A URDF the user brings (here: written from the Allegro model) and a YAML next to it.
    kin = load_robot_config("allegro", "right").build_kinematics()
    (tmp_path / "my_hand.urdf").write_text(kin.to_urdf("my_hand"))
    raw = allegro_yaml()
    raw.update(name="my_hand", description="my_hand.urdf", base_link="base")
    raw["points"] = {name: {"link": name} for name in raw["points"]}  # points are URDF links
    raw["joint_limits"] = {"ffj1": [0.0, 1.2]}
    path = tmp_path / "my_hand_right.yaml"
    path.write_text(yaml.safe_dump(raw))
    retargeter = RetargetConfig(robot=str(path), side="right").build()
    j = retargeter.joint_names.index("ffj1")
    assert (retargeter.lower[j], retargeter.upper[j]) == (0.0, 1.2)
    fist = synthetic.camera_keypoints(synthetic.FIST, Handedness.RIGHT)
    for i in range(60):
        result = retargeter.step(fist, i / 30)
    assert 0.9 < result.positions[j] <= 1.2  # flexed, and never beyond the narrowed limit


@pytest.mark.parametrize(("change", "message"), [
    ({"side": "middle"}, "side must be one of"),
    ({"colour": "red"}, "unknown keys"),
    ({"scale": -1.0}, "scale must be a positive"),
    ({"points": {"wrist": {"link": "palm"}}}, "are used but not defined"),
    ({"points": {"knuckle": {"link": "palm"}}}, "not human joint names"),
    ({"description": "nowhere.urdf"}, "hand-pose fetch-robots"),
    ({"joint_limits": {"ffj1": [-1.0, 1.0]}}, "must lie inside"),
    ({"base_link": "ff_distal"}, "moves with joint"),
])
def test_bad_configs_fail_with_a_clear_message(tmp_path, change, message):
    raw = allegro_yaml()
    raw.update(change)
    path = tmp_path / "bad_right.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        RobotHandConfig.from_yaml(path).build_kinematics()


def test_bad_options_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="method must be one of"):
        RetargetConfig(method="magic").build()
    with pytest.raises(FileNotFoundError, match="known robots"):
        RetargetConfig(robot="no_such_hand").build()


def test_fetch_checks_hashes_and_is_a_no_op_when_complete(tmp_path):
    assert len(fetch.missing_assets(tmp_path)) == len(fetch.ASSETS)
    cached = fetch.robot_assets_cache()
    if fetch.missing_assets(cached):
        pytest.skip("robot assets not fetched: run `hand-pose fetch-robots`")
    shutil.copytree(cached, tmp_path / "robots")
    root = tmp_path / "robots"
    assert fetch.missing_assets(root) == []
    assert fetch.fetch_robot_assets(root) == root  # nothing missing: no download
    tampered = root / fetch.ASSETS[0].dest
    tampered.write_text(tampered.read_text() + "<!-- edited -->")
    assert fetch.missing_assets(root) == [fetch.ASSETS[0]]


def test_safe_pose_and_velocity_limits_come_from_the_robot_yaml():
    retargeter = RetargetConfig(robot="allegro").build()
    i = retargeter.kin.active_joint_names.index("thj0")
    assert retargeter.gate.safe_pose[i] == pytest.approx(0.3)
    assert np.all(retargeter.gate.velocity_limits == 3.0)
