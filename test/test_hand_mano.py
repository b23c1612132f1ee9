"""MANO behind the HandModel interface, checked with a fake MANO file written here.

The fake file has MANO's keys, shapes and pickled types (chumpy ``Ch`` objects, a scipy sparse
joint regressor, protocol 2 as the official Python 2 files) but random content. The loader must
read it without chumpy, and the model must put joints in the canonical order.
"""

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.joints import Handedness, HandLandmark
from hand_pose_ros.hand.mano import (
    MANO_TIP_VERTICES,
    ManoModel,
    load_mano_file,
)

# MANO's kinematic tree: wrist, then index, middle, little, ring, thumb (3 joints each).
_PARENTS = [2**32 - 1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
# Vertices the fake regressor picks as joint positions (one-hot rows).
_JOINT_VERTICES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]


@pytest.fixture
def fake_mano(tmp_path, monkeypatch):
    """Write a MANO-format pickle whose shapedirs is a (fake) chumpy Ch object."""
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")

    class Ch:  # pickled by reference as chumpy.ch.Ch, with its state dict, like chumpy's
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", chumpy_ch)

    rng = np.random.default_rng(0)
    shapedirs = Ch()
    shapedirs.x = rng.normal(scale=1e-3, size=(778, 3, 10))
    shapedirs._dirty_vars = set()
    regressor = np.zeros((16, 778))
    regressor[np.arange(16), _JOINT_VERTICES] = 1.0
    weights = np.zeros((778, 16))
    weights[np.arange(778), rng.integers(0, 16, 778)] = 1.0
    weights[MANO_TIP_VERTICES[1]] = np.eye(16)[3]  # index tip moves with the index's 3rd joint
    data = {
        "v_template": rng.normal(scale=0.05, size=(778, 3)),
        "f": rng.integers(0, 778, size=(1538, 3)).astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "kintree_table": np.array([_PARENTS, list(range(16))], dtype=np.int64),
        "weights": weights,
        "posedirs": np.zeros((778, 3, 135)),
        "shapedirs": shapedirs,
        "hands_mean": rng.normal(scale=0.1, size=45),
        "hands_components": rng.normal(size=(45, 45)),
        "J": regressor @ rng.normal(size=(778, 3)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    return path, data


def test_loader_reads_a_mano_pickle_without_chumpy(fake_mano):
    path, data = fake_mano
    assert "chumpy" not in sys.modules
    loaded = load_mano_file(path)
    np.testing.assert_array_equal(loaded["shapedirs"], data["shapedirs"].x)
    np.testing.assert_array_equal(loaded["J_regressor"], data["J_regressor"].toarray())
    assert loaded["f"].dtype == np.int64 and loaded["v_template"].dtype == np.float64
    assert "chumpy" not in sys.modules


def test_rest_joints_come_out_in_the_canonical_order(fake_mano):
    path, data = fake_mano
    model = ManoModel(path)
    assert model.side == Handedness.RIGHT and model.num_shape == 10
    out = model.forward(np.zeros((1, 15, 3)))
    v = data["v_template"]
    mano_joint = {name: v[_JOINT_VERTICES[k]] for k, name in enumerate(
        ["wrist", "index1", "index2", "index3", "middle1", "middle2", "middle3", "little1",
         "little2", "little3", "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3"])}
    L = HandLandmark  # noqa: N806 (short alias keeps the table readable)
    expected = {
        L.WRIST: mano_joint["wrist"], L.THUMB_CMC: mano_joint["thumb1"],
        L.THUMB_IP: mano_joint["thumb3"], L.THUMB_TIP: v[744],
        L.INDEX_MCP: mano_joint["index1"], L.INDEX_TIP: v[320],
        L.MIDDLE_PIP: mano_joint["middle2"], L.MIDDLE_TIP: v[443],
        L.RING_MCP: mano_joint["ring1"], L.RING_DIP: mano_joint["ring3"], L.RING_TIP: v[554],
        L.LITTLE_MCP: mano_joint["little1"], L.LITTLE_TIP: v[671],
    }
    for landmark, position in expected.items():
        np.testing.assert_allclose(out.joints[0, landmark], position, err_msg=landmark.name)
    np.testing.assert_allclose(out.vertices[0], v)


def test_posing_shape_and_global_transform_follow_mano(fake_mano):
    path, data = fake_mano
    model = ManoModel(path)
    v, j = data["v_template"], data["v_template"][_JOINT_VERTICES]
    # Rotating MANO's first index joint turns the index tip about that joint.
    pose = np.zeros((1, 15, 3))
    pose[0, 0] = [0.0, 0.0, np.pi / 2]
    out = model.forward(pose)
    rot = Rotation.from_rotvec(pose[0, 0]).as_matrix()
    np.testing.assert_allclose(out.joints[0, HandLandmark.INDEX_TIP], rot @ (v[320] - j[1]) + j[1],
                               atol=1e-12)
    # Shape adds shapedirs @ betas to the template before regressing joints.
    betas = np.linspace(-1, 1, 10)[None]
    shaped = model.forward(np.zeros((1, 15, 3)), betas)
    np.testing.assert_allclose(shaped.vertices[0], v + data["shapedirs"].x @ betas[0], atol=1e-12)
    # global_orient turns everything about the root joint; transl comes last.
    orient, transl = np.array([[0.3, -0.2, 0.5]]), np.array([[0.1, 0.2, 0.3]])
    moved = model.forward(np.zeros((1, 15, 3)), None, orient, transl)
    r = Rotation.from_rotvec(orient[0]).as_matrix()
    np.testing.assert_allclose(moved.vertices[0], (v - j[0]) @ r.T + j[0] + transl, atol=1e-12)


def test_torch_matches_numpy_and_mean_pose_option(fake_mano):
    path, _ = fake_mano
    rng = np.random.default_rng(1)
    pose, betas = rng.normal(scale=0.3, size=(2, 15, 3)), rng.normal(size=(2, 10))
    model = ManoModel(path)
    expected = model.forward(pose, betas)
    out = model.forward(torch.tensor(pose), torch.tensor(betas))
    np.testing.assert_allclose(out.joints.numpy(), expected.joints, atol=1e-12)
    # With flat_hand_mean=False, pose zero is MANO's mean pose.
    mean = load_mano_file(path)["hands_mean"].reshape(1, 15, 3)
    mean_model = ManoModel(path, flat_hand_mean=False)
    np.testing.assert_allclose(mean_model.forward(np.zeros((1, 15, 3))).joints,
                               model.forward(mean).joints)


def test_missing_or_wrong_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mano.is.tue.mpg.de"):
        ManoModel(tmp_path / "MANO_RIGHT.pkl")
    bad = tmp_path / "MANO_LEFT.pkl"
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((778, 3))}))
    with pytest.raises(ValueError, match="missing"):
        ManoModel(bad)
