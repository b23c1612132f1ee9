"""Standard 3D hand pose and mesh metrics (FreiHAND, InterHand2.6M, RHD conventions).

Inputs are batches of points in metres (any frame, the same for prediction and ground truth):
joints (N, J, 3), vertices (N, V, 3), 2D keypoints (N, J, 2) in pixels. Distances come back in
the input's units (metres); thresholds are given in the same units (e.g. 0.005 for F@5 mm).
Optional ``valid`` masks (N, J) leave out unannotated joints.

- MPJPE: mean Euclidean joint error. PA-MPJPE / PA-MPVPE: the same after aligning each
  prediction to its ground truth with the best similarity transform (rotation, translation,
  isotropic scale: Umeyama 1991), joints and vertices aligned separately.
- F-score at a threshold (FreiHAND): harmonic mean of precision (predicted vertices within the
  threshold of the ground-truth surface points) and recall (the converse), after alignment.
- 3D PCK: fraction of joints within a threshold; AUC: area under the PCK curve between two
  thresholds, normalised to [0, 1] (computed exactly, the limit of the usual dense-threshold
  trapezoid).
- MRRPE (InterHand2.6M): error of the left hand's root relative to the right hand's root.
- 2D PCK: fraction of 2D keypoints within a pixel threshold, optionally per-sample scaled
  (e.g. by the hand box size).
"""

import numpy as np
from scipy.spatial import cKDTree


def _batch(points: np.ndarray, name: str, dims: int = 3) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != dims:
        raise ValueError(f"{name} must be (N, K, {dims}) or (K, {dims}), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array


def _pair(pred, gt, dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _batch(pred, "prediction", dims), _batch(gt, "ground truth", dims)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return pred, gt


def _valid_mask(valid, shape: tuple[int, int]) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(valid, dtype=bool).reshape(shape)
    if not mask.any():
        raise ValueError("no valid points to evaluate")
    return mask


def procrustes_align(pred: np.ndarray, gt: np.ndarray, scale: bool = True) -> np.ndarray:
    """Each prediction moved onto its ground truth by the best similarity transform.

    Args:
        pred, gt: (N, K, 3) or (K, 3) point sets in corresponding order.
        scale: allow an isotropic scale (similarity); False gives a rigid alignment.

    Returns:
        The aligned predictions, (N, K, 3) (proper rotations only, never a reflection).
    """
    pred, gt = _pair(pred, gt)
    mu_p, mu_g = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    u, sigma, vt = np.linalg.svd(np.swapaxes(g, 1, 2) @ p)  # (N, 3, 3) cross-covariance
    d = np.sign(np.linalg.det(u @ vt))
    sigma[:, 2] *= d
    u[:, :, 2] *= d[:, None]
    rotation = u @ vt
    if scale:
        var_p = (p**2).sum(axis=(1, 2))
        s = sigma.sum(axis=1) / np.maximum(var_p, 1e-30)
    else:
        s = np.ones(len(p))
    return s[:, None, None] * p @ np.swapaxes(rotation, 1, 2) + mu_g


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K) Euclidean distance of every predicted point to its ground truth."""
    pred, gt = _pair(pred, gt)
    return np.linalg.norm(pred - gt, axis=-1)


def mpjpe(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean per-joint position error, in the input's units (no alignment)."""
    errors = joint_errors(pred, gt)
    return float(errors[_valid_mask(valid, errors.shape)].mean())


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint error after similarity Procrustes alignment of each hand's joints."""
    return float(joint_errors(procrustes_align(pred, gt), gt).mean())


def pa_mpvpe(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> float:
    """Mean per-vertex error after similarity Procrustes alignment of each mesh's vertices."""
    return float(joint_errors(procrustes_align(pred_vertices, gt_vertices), gt_vertices).mean())


def f_score(
    pred_vertices: np.ndarray, gt_vertices: np.ndarray, threshold: float, align: bool = True
) -> float:
    """Mean F-score of vertex sets at a distance threshold (FreiHAND's F@5 mm: 0.005 m).

    Precision: fraction of predicted vertices closer than ``threshold`` to some ground-truth
    vertex; recall: the converse; F = 2 P R / (P + R) per sample (0 when both are 0).
    With ``align`` the prediction is first Procrustes-aligned (as FreiHAND reports it), which
    needs corresponding vertices; without it the two sets may differ in size.
    """
    if align:
        pred_vertices = procrustes_align(pred_vertices, gt_vertices)
    pred = _batch(pred_vertices, "prediction")
    gt = _batch(gt_vertices, "ground truth")
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predicted and {len(gt)} ground-truth meshes")
    scores = []
    for p, g in zip(pred, gt, strict=True):
        precision = np.mean(cKDTree(g).query(p)[0] < threshold)
        recall = np.mean(cKDTree(p).query(g)[0] < threshold)
        total = precision + recall
        scores.append(0.0 if total == 0 else 2 * precision * recall / total)
    return float(np.mean(scores))


def pck(errors: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> float:
    """Fraction of points whose error (any shape, e.g. ``joint_errors``) is <= threshold."""
    errors = np.asarray(errors, dtype=np.float64)
    return float((errors[_valid_mask(valid, errors.shape)] <= threshold).mean())


def pck_curve(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """PCK at every threshold, for plots: (T,)."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    return (errors[None, :] <= np.asarray(thresholds, dtype=np.float64)[:, None]).mean(axis=1)


def auc(errors: np.ndarray, low: float = 0.0, high: float = 0.05) -> float:
    """Area under the 3D PCK curve between ``low`` and ``high`` (metres), normalised to [0, 1].

    The PCK curve is a step function of the threshold, so its integral is exact:
    mean over points of (high - clip(error, low, high)) / (high - low). AUC 0-50 mm: (0, 0.05);
    AUC 20-50 mm: (0.02, 0.05).
    """
    if not high > low:
        raise ValueError(f"AUC needs high > low, got [{low}, {high}]")
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    return float(np.mean((high - np.clip(errors, low, high)) / (high - low)))


def mrrpe(
    pred_right_root: np.ndarray,
    pred_left_root: np.ndarray,
    gt_right_root: np.ndarray,
    gt_left_root: np.ndarray,
) -> float:
    """Mean relative-root position error: | (left - right)_pred - (left - right)_gt |.

    Roots are (N, 3) (each hand's wrist, as in InterHand2.6M); returns the mean over samples.
    """
    roots = [np.asarray(r, dtype=np.float64).reshape(-1, 3) for r in
             (pred_right_root, pred_left_root, gt_right_root, gt_left_root)]
    if len({len(r) for r in roots}) != 1:
        raise ValueError("MRRPE needs the same number of samples for all four roots")
    pred_rel, gt_rel = roots[1] - roots[0], roots[3] - roots[2]
    return float(np.linalg.norm(pred_rel - gt_rel, axis=1).mean())


def pck_2d(
    pred: np.ndarray,
    gt: np.ndarray,
    threshold: float,
    normalizer: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> float:
    """Fraction of 2D keypoints (N, J, 2) within ``threshold`` pixels of the ground truth.

    With ``normalizer`` (N,) (e.g. the hand box's longer side in pixels) the threshold is
    relative: a keypoint counts when its error <= threshold * normalizer of its sample.
    """
    pred, gt = _pair(pred, gt, dims=2)
    errors = np.linalg.norm(pred - gt, axis=-1)
    if normalizer is not None:
        errors = errors / np.asarray(normalizer, dtype=np.float64).reshape(-1, 1)
    return pck(errors, threshold, valid)
