"""Fitting the open hand model to 21 joints (joints -> pose, shape, global pose -> mesh)."""


import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.fit import HandFitter
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import gesture, random_poses
from hand_pose_ros.hand.skeleton import NUM_SHAPE, POSE_LIMITS


def _hands(count: int, seed: int, side=Handedness.RIGHT):
    """Joints and vertices of random valid hands: pose, shape, orientation, camera position."""
    rng = np.random.default_rng(seed)
    poses = random_poses(count, rng)
    shapes = np.clip(rng.normal(scale=0.06, size=(count, NUM_SHAPE)), -0.15, 0.15)
    orient = Rotation.random(count, random_state=seed).as_rotvec()
    transl = rng.normal(scale=0.1, size=(count, 3)) + [0.0, 0.0, 0.5]
    return OpenHandModel(side).forward(poses, shapes, orient, transl)


@pytest.mark.parametrize("side", [Handedness.RIGHT, Handedness.LEFT])
def test_fit_recovers_random_valid_hands_to_well_under_two_millimetres(side):
    hands = _hands(40, seed=11, side=side)
    fitter = HandFitter(side)
    errors = []
    for joints in hands.joints:
        fit = fitter.fit(joints)
        per_joint = np.linalg.norm(fit.joints - joints, axis=1)
        assert fit.mean_error == pytest.approx(per_joint.mean())
        assert np.all(fit.pose >= POSE_LIMITS[..., 0]) and np.all(fit.pose <= POSE_LIMITS[..., 1])
        errors.append(per_joint.mean())
    assert np.mean(errors) < 0.5e-3
    assert np.max(errors) < 2e-3


def test_fitted_parameters_reproduce_the_fit_and_give_a_matching_mesh():
    hands = _hands(10, seed=12)
    fitter = HandFitter()
    model = fitter.model
    for joints, vertices in zip(hands.joints, hands.vertices, strict=True):
        fit = fitter.fit(joints)
        again = model.forward(fit.pose[None], fit.shape[None], fit.global_orient[None],
                              fit.transl[None])
        np.testing.assert_allclose(again.joints[0], fit.joints, atol=1e-9)
        mesh = fitter.vertices(fit)
        assert mesh.shape == vertices.shape
        # Twist of an almost straight finger is invisible in joints but turns its surface a
        # little; the mesh still matches closely.
        assert np.linalg.norm(mesh - vertices, axis=1).mean() < 3e-3


def test_warm_start_tracks_a_moving_hand():
    keys = random_poses(4, seed=13)
    steps = np.linspace(0, 1, 8, endpoint=False)
    poses = np.stack([(1 - a) * keys[k] + a * keys[k + 1] for k in range(3) for a in steps])
    orient = (Rotation.from_rotvec([0.3, -0.2, 1.0])
              * Rotation.from_rotvec(np.linspace(0, 1, len(poses))[:, None] * [0.4, 0.2, 0.0]))
    hands = OpenHandModel().forward(poses, None, orient.as_rotvec(),
                                    np.tile([0.05, 0.0, 0.4], (len(poses), 1)))
    fitter, previous = HandFitter(), None
    for joints in hands.joints:
        previous = fitter.fit(joints, init=previous)
        assert previous.mean_error < 1e-3


def test_fit_of_noisy_joints_stays_finite_and_close():
    hands = _hands(10, seed=14)
    rng = np.random.default_rng(14)
    fitter = HandFitter()
    for joints in hands.joints:
        noisy = joints + rng.normal(scale=0.002, size=joints.shape)
        fit = fitter.fit(noisy)
        assert np.all(np.isfinite(fitter.vertices(fit)))
        # The model cannot follow the noise: the fit lands near the noise level, not above it.
        assert fit.mean_error < 4e-3
        assert np.linalg.norm(fit.joints - joints, axis=1).mean() < 4e-3


def test_fixed_shape_is_kept_and_still_fits_the_same_hand():
    shape = np.array([0.1, 0.0, 0.05, -0.05, 0.0, 0.02, -0.03])
    joints = OpenHandModel().forward(gesture("peace")[None], shape[None]).joints[0]
    fit = HandFitter(shape=shape).fit(joints)
    np.testing.assert_array_equal(fit.shape, shape)
    assert fit.mean_error < 1e-4
    free = HandFitter().fit(joints)
    np.testing.assert_allclose(free.shape, shape, atol=1e-3)


@pytest.mark.parametrize(
    ("joints", "message"),
    [
        (np.zeros((20, 3)), r"\(21, 3\)"),
        (np.full((21, 3), np.nan), "finite"),
        (np.zeros((21, 3)), "degenerate palm"),
    ],
)
def test_bad_joints_are_rejected_with_a_clear_error(joints, message):
    with pytest.raises(ValueError, match=message):
        HandFitter().fit(joints)


def test_implausible_joints_still_give_a_finite_fit():
    rng = np.random.default_rng(16)
    fitter = HandFitter()
    weird = [rng.normal(scale=0.05, size=(21, 3)), _hands(1, seed=16).joints[0] * [1, -1, 1]]
    collapsed = _hands(1, seed=17).joints[0]
    collapsed[5:] = collapsed[5]  # all four fingers squashed into one point
    for joints in [*weird, collapsed]:
        fit = fitter.fit(joints)
        assert np.all(np.isfinite(fit.joints)) and np.all(np.isfinite(fitter.vertices(fit)))
        assert np.all(np.isfinite(fit.shape)) and np.isfinite(fit.mean_error)
