"""Metric lifting to the camera frame on synthetic projections with known ground truth."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hand_pose_ros.pipeline.lifting import (
    CameraIntrinsics,
    depth_to_metres,
    depth_translation_z,
    lift_to_camera,
    solve_translation,
)

K = CameraIntrinsics(fx=600.0, fy=600.0, cx=320.0, cy=240.0)


def synthetic_hand(rng) -> np.ndarray:
    """(21, 3) metres, wrist at the origin: palm ~9 cm, fingers with random flexion."""
    mcp_x = np.array([-0.035, -0.02, 0.0, 0.02, 0.038])  # thumb CMC, index..little MCP
    mcp_y = np.array([-0.025, -0.085, -0.09, -0.085, -0.075])
    lengths = np.array([[0.04, 0.035, 0.03], [0.045, 0.025, 0.02], [0.05, 0.03, 0.022],
                        [0.045, 0.028, 0.02], [0.035, 0.02, 0.018]])
    joints = [np.zeros(3)]
    for f in range(5):
        p = np.array([mcp_x[f], mcp_y[f], 0.0])
        joints.append(p.copy())
        direction = np.array([-0.5 if f == 0 else 0.0, -1.0, 0.0])
        direction /= np.linalg.norm(direction)
        for length in lengths[f]:
            bend = Rotation.from_euler("x", rng.uniform(0, 0.6)).as_matrix()
            direction = bend @ direction
            p = p + length * direction
            joints.append(p.copy())
    return np.array(joints)


def scene(rng):
    """Ground-truth camera-frame joints of a randomly posed hand 0.3-1.2 m away."""
    hand = synthetic_hand(rng) @ Rotation.random(random_state=rng).as_matrix().T
    t = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15), rng.uniform(0.3, 1.2)])
    return hand + t


def lifting_errors_mm(rng, trials, pixel_noise, shape_noise_m):
    errors = []
    for _ in range(trials):
        truth = scene(rng)
        pixels = K.project(truth) + rng.normal(0, pixel_noise, (21, 2))
        relative = truth - truth[0] + rng.normal(0, shape_noise_m, (21, 3))
        errors.append(np.linalg.norm(lift_to_camera(relative, pixels, K) - truth, axis=1).mean())
    return 1e3 * np.array(errors)


def test_exact_projections_give_the_exact_translation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = scene(rng)
        relative = truth - truth[5]  # any origin works
        t = solve_translation(relative, K.project(truth), K)
        assert np.allclose(t, truth[5], atol=1e-9)


def test_lifting_error_with_realistic_noise_is_a_few_centimetres_at_most():
    # 1 px keypoint noise and 4 mm per-joint noise on the network's metric shape.
    errors = lifting_errors_mm(np.random.default_rng(1), 200, pixel_noise=1.0, shape_noise_m=0.004)
    print(f"lifting MPJPE (camera frame): mean {errors.mean():.1f} mm, "
          f"median {np.median(errors):.1f} mm, p95 {np.percentile(errors, 95):.1f} mm")
    assert np.median(errors) < 30.0
    assert np.all(np.isfinite(errors))


def render_depth(truth, background=1.8, holes=0.2, rng=None, shape=(480, 640)):
    """Depth image: background plane, the hand's joints as 9x9 discs 8 mm in front of their
    centres (skin surface), random holes (zeros and NaNs)."""
    depth = np.full(shape, background, np.float32)
    pixels = np.rint(K.project(truth)).astype(int)
    for (u, v), z in zip(pixels, truth[:, 2], strict=True):
        depth[max(v - 4, 0):v + 5, max(u - 4, 0):u + 5] = z - 0.008
    mask = rng.random(shape) < holes
    depth[mask] = np.where(rng.random(mask.sum()) < 0.5, 0.0, np.nan)
    return depth


def test_depth_fixes_a_wrong_hand_scale():
    rng = np.random.default_rng(2)
    truth = scene(rng)
    pixels = K.project(truth)
    # The network's metric shape 15 % too large: from RGB alone the hand lands 15 % too far.
    relative = 1.15 * (truth - truth[0])
    rgb_only = lift_to_camera(relative, pixels, K)
    with_depth = lift_to_camera(relative, pixels, K, render_depth(truth, rng=rng))
    rgb_error = np.linalg.norm(rgb_only - truth, axis=1).mean()
    depth_error = np.linalg.norm(with_depth - truth, axis=1).mean()
    assert rgb_error > 0.04
    assert depth_error < 0.4 * rgb_error


def test_depth_ignores_background_and_holes():
    rng = np.random.default_rng(3)
    truth = scene(rng)
    pixels = K.project(truth)
    depth = render_depth(truth, holes=0.5, rng=rng)
    # Half the joints see only background (a hand at the image border, bad alignment...).
    for u, v in np.rint(pixels[::2]).astype(int):
        depth[max(v - 4, 0):v + 5, max(u - 4, 0):u + 5] = 1.8
    tz = depth_translation_z(truth - truth[0], pixels, depth)
    assert tz == pytest.approx(truth[0, 2], abs=0.005)


def test_depth_without_valid_samples_falls_back_to_rgb():
    rng = np.random.default_rng(4)
    truth = scene(rng)
    pixels = K.project(truth)
    empty = np.zeros((480, 640), np.float32)
    assert depth_translation_z(truth - truth[0], pixels, empty) is None
    assert np.allclose(lift_to_camera(truth - truth[0], pixels, K, empty), truth, atol=1e-9)


def test_uint16_depth_is_millimetres():
    assert np.allclose(depth_to_metres(np.array([[1500, 0]], np.uint16)), [[1.5, 0.0]])
    with pytest.raises(ValueError, match="uint16 millimetres"):
        depth_to_metres(np.zeros((2, 2), np.int8))


@pytest.mark.parametrize("values", [(np.nan, 600, 320, 240), (600, 600, np.inf, 240),
                                    (0, 600, 320, 240), (600, -1, 320, 240)])
def test_bad_intrinsics_are_rejected(values):
    with pytest.raises(ValueError):
        CameraIntrinsics(*values)


def test_intrinsics_from_camera_info_matrix():
    k = CameraIntrinsics.from_matrix([500, 0, 320, 0, 510, 240, 0, 0, 1])
    assert (k.fx, k.fy, k.cx, k.cy) == (500, 510, 320, 240)
