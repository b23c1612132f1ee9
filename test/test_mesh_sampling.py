"""Coarse meshes, upsampling matrices and the vertex -> joint regressor of the open hand model."""

import numpy as np
import pytest

from hand_pose_ros.hand import mesh_sampling
from hand_pose_ros.hand.mesh import hand_template
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import random_poses


def _held_out_hands(count: int = 200):
    """Random hands (pose, shape, orientation, position) not in the regressor's fitting set."""
    rng = np.random.default_rng(1234)
    return OpenHandModel().forward(
        random_poses(count, rng), 0.08 * rng.standard_normal((count, 7)),
        rng.standard_normal((count, 3)), rng.uniform(-0.5, 0.5, (count, 3)),
    )


def test_hierarchy_levels_are_template_vertices_and_deterministic():
    levels = mesh_sampling.mesh_hierarchy()
    assert [c.num_vertices for c in levels] == list(mesh_sampling.DEFAULT_LEVELS)
    for level in levels:
        assert len(np.unique(level.indices)) == level.num_vertices
        assert level.indices.max() < len(hand_template().vertices)
    # Recomputed from scratch (no cache), the sampling is the same.
    again = mesh_sampling.farthest_point_sampling(levels[0].num_vertices)
    np.testing.assert_array_equal(again, levels[0].indices)


def test_upsample_rows_sum_to_one_and_copy_coarse_vertices():
    for level in mesh_sampling.mesh_hierarchy():
        u = level.upsample.toarray()
        assert u.shape == (len(hand_template().vertices), level.num_vertices)
        np.testing.assert_allclose(u.sum(1), 1.0, atol=1e-6)
        assert (u >= 0).all()
        np.testing.assert_allclose(u[level.indices], np.eye(level.num_vertices), atol=1e-6)


def test_upsampled_coarse_mesh_stays_close_to_posed_mesh():
    vertices = _held_out_hands(20).vertices
    errors = []
    for level in mesh_sampling.mesh_hierarchy():
        up = np.einsum("vc,bcd->bvd", level.upsample.toarray(), vertices[:, level.indices])
        errors.append(np.linalg.norm(up - vertices, axis=-1).mean())
    # Finer levels reconstruct better; the 194-vertex level within a few millimetres.
    assert errors[0] < errors[1]
    assert errors[0] < 0.004


def test_coarse_to_coarse_upsample_matches_its_levels():
    fine, coarse = mesh_sampling.mesh_hierarchy()
    u = mesh_sampling.coarse_to_coarse_upsample(fine.num_vertices, coarse.num_vertices)
    assert u.shape == (fine.num_vertices, coarse.num_vertices)
    np.testing.assert_allclose(np.asarray(u.sum(1)).ravel(), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="coarse_count"):
        mesh_sampling.coarse_to_coarse_upsample(49, 194)


def test_adjacency_is_symmetric_and_connected():
    from scipy.sparse.csgraph import connected_components

    for level in mesh_sampling.mesh_hierarchy():
        adjacency = level.adjacency
        np.testing.assert_array_equal(adjacency, adjacency.T)
        assert not adjacency.diagonal().any()
        assert connected_components(adjacency, directed=False)[0] == 1


def test_bad_level_counts_are_rejected():
    with pytest.raises(ValueError, match="coarse vertex count"):
        mesh_sampling.farthest_point_sampling(0)
    with pytest.raises(ValueError, match="decreasing"):
        mesh_sampling.mesh_hierarchy((49, 194))


def test_joint_regressor_is_convex_and_local():
    regressor = mesh_sampling.joint_regressor()
    template = hand_template()
    assert regressor.shape == (21, len(template.vertices))
    assert (regressor >= 0).all()
    np.testing.assert_allclose(regressor.sum(1), 1.0, atol=1e-5)
    # Sparse-ish: each joint uses a handful of vertices of the parts that meet there.
    assert ((regressor > 0).sum(1) <= 40).all()
    index_tip_parts = np.unique(template.parts[regressor[8] > 0])
    np.testing.assert_array_equal(index_tip_parts, [6])  # index distal phalanx only


def test_joint_regressor_matches_forward_kinematics_on_held_out_hands():
    out = _held_out_hands()
    regressed = np.einsum("jv,bvd->bjd", mesh_sampling.joint_regressor(), out.vertices)
    error = np.linalg.norm(regressed - out.joints, axis=-1)
    assert error.mean() < 0.002  # metres
    assert error.max() < 0.005
