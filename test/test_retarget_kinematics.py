"""Robot hand kinematics: every robot config loads, Jacobians, mirroring and URDF export."""

import numpy as np
import pytest
from robot_cases import robot_params

from hand_pose_ros.retarget.config import load_robot_config, robot_configs
from hand_pose_ros.retarget.kinematics import HandKinematics, load_description, mirror_description


def test_configs_cover_required_hands_both_sides():
    found = set(robot_configs())
    for robot in ("allegro", "leap", "shadow", "inspire", "ability"):
        assert {(robot, "right"), (robot, "left")} <= found


@pytest.fixture(params=[pytest.param(p.values, id=p.id, marks=p.marks) for p in robot_params()])
def kin(request):
    return load_robot_config(*request.param).build_kinematics()


def test_jacobian_matches_finite_differences(kin):
    rng = np.random.default_rng(0)
    q = rng.uniform(kin.lower, kin.upper)
    kin.use_points(kin.point_names)
    pos, jac = kin.points_and_jacobian(q)
    np.testing.assert_allclose(pos, kin.point_positions(q), atol=1e-12)
    eps = 1e-6
    for i in range(kin.num_active):
        dq = np.zeros(kin.num_active)
        dq[i] = eps
        numeric = (kin.point_positions(q + dq) - kin.point_positions(q - dq)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, i], numeric, atol=1e-7)


def test_active_limits_keep_mimic_followers_in_range(kin):
    rng = np.random.default_rng(1)
    for q in rng.uniform(kin.lower, kin.upper, size=(50, kin.num_active)):
        full = kin.to_full(q)
        assert np.all(full >= kin.full_lower - 1e-9) and np.all(full <= kin.full_upper + 1e-9)


def test_urdf_export_reproduces_the_kinematics(kin, tmp_path):
    pin = pytest.importorskip("pinocchio")
    path = tmp_path / "hand.urdf"
    path.write_text(kin.to_urdf("hand"))
    model = pin.buildModelFromUrdf(str(path))
    data = model.createData()
    q = np.random.default_rng(2).uniform(kin.lower, kin.upper)
    full = kin.to_full(q)
    q_pin = np.zeros(model.nq)
    for name, value in zip(kin.joint_names, full, strict=True):
        q_pin[model.idx_qs[model.getJointId(name)]] = value
    pin.framesForwardKinematics(model, data, q_pin)
    ours = kin.point_positions(q)
    for k, point in enumerate(kin.point_names):
        np.testing.assert_allclose(data.oMf[model.getFrameId(point)].translation, ours[k],
                                   atol=1e-7)


def test_mirrored_hand_is_the_mirror_image():
    cfg = load_robot_config("allegro", "right")
    frames = {n: (p.link, np.array(p.offset)) for n, p in cfg.points.items()}
    specs, points, _ = load_description(cfg.description_path(), cfg.base_link, frames, {})
    kin = HandKinematics(specs, points)
    mirrored = HandKinematics(*mirror_description(specs, points, axis=1))
    q = np.random.default_rng(3).uniform(kin.lower, kin.upper)
    np.testing.assert_allclose(mirrored.point_positions(q),
                               kin.point_positions(q) * [1.0, -1.0, 1.0], atol=1e-12)
