"""Hand pose and mesh metrics against hand-worked cases and independent computations."""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import procrustes as scipy_procrustes
from scipy.spatial.transform import Rotation

from hand_pose_ros.eval.metrics import (
    auc,
    f_score,
    joint_errors,
    mpjpe,
    mrrpe,
    pa_mpjpe,
    pa_mpvpe,
    pck,
    pck_2d,
    pck_curve,
    procrustes_align,
)

RNG = np.random.default_rng(0)
GT = RNG.normal(scale=0.05, size=(4, 21, 3))


def _similar(points, seed):
    """A rotated, scaled, shifted copy of points, plus a little noise (no reflection)."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(len(points), random_state=seed).as_matrix()
    scale = rng.uniform(0.7, 1.4, size=(len(points), 1, 1))
    noise = rng.normal(scale=0.002, size=points.shape)
    return scale * (points + noise) @ np.swapaxes(rot, 1, 2) + rng.normal(size=(len(points), 1, 3))


def test_mpjpe_of_a_uniform_shift_is_the_shift_length():
    shifted = GT + np.array([0.003, 0.004, 0.0])  # 5 mm
    assert mpjpe(shifted, GT) == pytest.approx(0.005)
    np.testing.assert_allclose(joint_errors(shifted, GT), 0.005)
    valid = np.zeros((4, 21), dtype=bool)
    valid[:, 0] = True
    wrist_off = GT.copy()
    wrist_off[:, 1:] += 1.0  # invalid joints are ignored
    assert mpjpe(wrist_off, GT, valid) == 0.0


def test_procrustes_undoes_a_similarity_transform_exactly():
    rot = Rotation.from_euler("xyz", [30, -40, 75], degrees=True).as_matrix()
    moved = 1.7 * GT @ rot.T + [0.1, -0.2, 0.3]
    np.testing.assert_allclose(procrustes_align(moved, GT), GT, atol=1e-12)
    assert pa_mpjpe(moved, GT) == pytest.approx(0.0, abs=1e-12)
    assert mpjpe(moved, GT) > 0.05


def test_pa_alignment_matches_scipy_procrustes():
    pred = _similar(GT, seed=1)
    aligned = procrustes_align(pred, GT)
    for k in range(len(GT)):
        # scipy standardises both sets and reports the squared residual of the aligned pair;
        # for the same optimal similarity, that is |aligned - gt|^2 / |gt - mean|^2.
        _, _, disparity = scipy_procrustes(GT[k], pred[k])
        centred = GT[k] - GT[k].mean(axis=0)
        ours = np.sum((aligned[k] - GT[k]) ** 2) / np.sum(centred**2)
        assert ours == pytest.approx(disparity, rel=1e-9)


def test_pa_rotation_matches_scipy_orthogonal_procrustes():
    pred = _similar(GT, seed=2)
    aligned = procrustes_align(pred, GT, scale=False)
    for k in range(len(GT)):
        p, g = pred[k] - pred[k].mean(axis=0), GT[k] - GT[k].mean(axis=0)
        rot, _ = orthogonal_procrustes(p, g)  # p @ rot ~ g
        np.testing.assert_allclose(aligned[k], p @ rot + GT[k].mean(axis=0), atol=1e-12)
    # Rigid alignment keeps the prediction's size: no better than the similarity alignment.
    assert pa_mpjpe(pred, GT) <= joint_errors(aligned, GT).mean()


def test_procrustes_never_reflects():
    mirrored = GT * np.array([1.0, 1.0, -1.0])
    aligned = procrustes_align(mirrored, GT)
    for k in range(len(GT)):
        src = mirrored[k] - mirrored[k].mean(axis=0)
        dst = aligned[k] - aligned[k].mean(axis=0)
        transform = np.linalg.lstsq(src, dst, rcond=None)[0]
        assert np.linalg.det(transform) > 0
    assert pa_mpjpe(mirrored, GT) > 1e-3


def test_pa_mpvpe_is_pa_error_over_vertices():
    gt_vertices = RNG.normal(scale=0.05, size=(2, 778, 3))
    pred = _similar(gt_vertices, seed=3)
    expected = np.linalg.norm(procrustes_align(pred, gt_vertices) - gt_vertices, axis=-1).mean()
    assert pa_mpvpe(pred, gt_vertices) == pytest.approx(expected)
    assert 0.001 < pa_mpvpe(pred, gt_vertices) < 0.004  # the 2 mm noise per axis survives


def test_f_score_hand_worked_cases():
    gt = np.array([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]]])
    shifted = gt + [0.003, 0.0, 0.0]  # every vertex 3 mm away
    assert f_score(shifted, gt, 0.005, align=False) == 1.0
    assert f_score(shifted, gt, 0.002, align=False) == 0.0
    assert f_score(shifted, gt, 0.002, align=True) == 1.0  # alignment removes the shift
    # Half the predicted vertices are far: precision 1/2, recall 1/2 (two gt points matched).
    half = gt.copy()
    half[0, 2:] += [0.0, 0.0, 0.05]
    assert f_score(half, gt, 0.005, align=False) == pytest.approx(0.5)
    # Unequal sets: 2 predicted points both on gt points -> precision 1, recall 2/4.
    assert f_score(gt[:, :2], gt, 0.005, align=False) == pytest.approx(2 * 0.5 / 1.5)


def test_f_score_matches_brute_force_distances():
    gt_vertices = RNG.normal(scale=0.03, size=(2, 300, 3))
    pred = gt_vertices + RNG.normal(scale=0.004, size=gt_vertices.shape)
    for threshold in (0.005, 0.015):
        expected = []
        for p, g in zip(pred, gt_vertices, strict=True):
            d = np.linalg.norm(p[:, None] - g[None], axis=-1)
            precision = (d.min(axis=1) < threshold).mean()
            recall = (d.min(axis=0) < threshold).mean()
            expected.append(2 * precision * recall / (precision + recall))
        score = f_score(pred, gt_vertices, threshold, align=False)
        assert score == pytest.approx(np.mean(expected))


def test_pck_and_auc_hand_worked_cases():
    errors = np.array([0.0, 0.01, 0.03, 0.06])
    assert pck(errors, 0.02) == 0.5
    assert pck(errors, 0.03) == 0.75  # inclusive threshold
    np.testing.assert_array_equal(pck_curve(errors, [0.0, 0.05]), [0.25, 0.75])
    assert auc(np.zeros(5)) == 1.0
    assert auc(np.full(5, 0.06)) == 0.0
    assert auc(np.full(5, 0.03)) == pytest.approx(0.4)  # PCK is 1 on [30, 50] mm of [0, 50]
    assert auc(np.full(5, 0.03), 0.02, 0.05) == pytest.approx(2 / 3)
    assert auc(np.full(5, 0.01), 0.02, 0.05) == 1.0
    with pytest.raises(ValueError, match="high > low"):
        auc(errors, 0.05, 0.02)


def test_auc_equals_dense_trapezoid_of_the_pck_curve():
    errors = RNG.uniform(0, 0.07, size=500)
    for low, high in ((0.0, 0.05), (0.02, 0.05)):
        thresholds = np.linspace(low, high, 20001)
        numeric = np.trapezoid(pck_curve(errors, thresholds), thresholds) / (high - low)
        assert auc(errors, low, high) == pytest.approx(numeric, abs=1e-4)


def test_mrrpe_hand_worked_case():
    right = np.array([[0.0, 0.0, 0.5]])
    left = np.array([[0.2, 0.0, 0.5]])
    # Both hands shifted together: no relative error; the left one 10 mm off: 10 mm.
    assert mrrpe(right + 0.1, left + 0.1, right, left) == pytest.approx(0.0)
    assert mrrpe(right, left + [0.0, 0.006, 0.008], right, left) == pytest.approx(0.01)


def test_pck_2d_absolute_and_normalised():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[:, :, 0] = [[1.0, 4.0, 9.0], [1.0, 4.0, 9.0]]  # pixel errors 1, 4, 9
    assert pck_2d(pred, gt, 5.0) == pytest.approx(2 / 3)
    # Sample boxes of 100 and 20 px, threshold 0.2 of the box: 20 px and 4 px.
    assert pck_2d(pred, gt, 0.2, normalizer=np.array([100.0, 20.0])) == pytest.approx(5 / 6)


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        mpjpe(GT[:, :20], GT)
    with pytest.raises(ValueError, match="non-finite"):
        mpjpe(np.full_like(GT, np.nan), GT)
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        pa_mpjpe(GT[..., :2], GT[..., :2])
