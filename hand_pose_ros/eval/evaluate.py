"""Evaluate any registered hand estimator on a data source: crops in, standard metrics out.

Only ``HandEstimator.estimate(crops)`` is used, so every model of the registry is evaluated the
same way. Steps, per hand of every sample:

1. **Crop** (the same convention for every model, fixed by the data, never by the model):
   - samples of sources that already are single-hand crops (``PRECROPPED_SOURCES``: the
     synthetic engine's crops, FreiHAND's 224 px images) are used whole;
   - otherwise (RHD, InterHand2.6M, and each hand of a two-hand sample) an axis-aligned square
     around the hand's valid ground-truth 2D joints: centred on their bounding box, side
     ``JOINT_BOX_SCALE`` (1.6) x the box's longer side, which matches the mean fill of the
     synthetic crops (joints box / crop side drawn from 0.5-0.75). Pixels outside the image
     repeat the border, as in the tracker.
   The crop is resampled to ``model.input_size`` (bilinear, pixel centres aligned:
   ``u' = (u - centre) * S / side + (S - 1) / 2``). An axis-aligned crop of a pinhole image is
   a pinhole image with the same axes, so the model's root-relative joints (crop axes) compare
   directly with the ground truth's camera-frame joints.
   Two-hand models declare ``hands_per_crop = 2``: they get one crop per sample, the square
   around both hands' joints, and return two estimates per crop (right hand, then left).
2. **Estimate** in batches; predicted 2D joints go back to image pixels through the crop.
3. **Mesh**: the model's vertices when it has a mesh head (``mesh_source: "model"``), else the
   open hand model fitted to the predicted joints with ``HandFitter`` (``"fit"``), using the
   ground-truth side. Vertex metrics need the ground truth in the same topology; otherwise
   (e.g. MANO ground truth, open-hand prediction) they are null with a reason.
4. **Metrics** (``metrics.py``), joints root-relative (each hand's wrist at the origin):
   ``mpjpe_mm``; ``pa_mpjpe_mm`` (similarity Procrustes per hand); ``pa_mpvpe_mm``, ``f5``,
   ``f15`` (aligned vertices); ``auc_0_50``/``auc_20_50`` (root-relative 3D PCK);
   ``pa_auc_0_50`` (aligned, FreiHAND's convention); ``pck2d`` (2D joints in image pixels
   within ``PCK2D_THRESHOLD`` x the ground-truth joint box's longer side) and ``epe2d_px``;
   per-joint-group errors ``group_mm`` (after Procrustes, so the wrist is not zero by
   construction, as in EHPE's per-joint analysis) and ``group_rr_mm`` (root-relative).
   Groups (``JOINT_GROUPS``): the thumb's CMC, MCP, IP and TIP count as MCP, PIP, DIP and TIP.
   EHPE names the five groups after Spurr et al. 2020 but states neither the thumb's mapping
   nor the alignment; we take the level in each finger chain (Spurr's convention) and report
   the aligned errors as the main ones (EHPE's wrist error is non-zero, about 40 % of TIP's,
   which rules out root-relative errors).
   Two-hand data adds ``mpjpe_interacting_mm`` and ``mpjpe_single_mm`` (hands of samples
   marked ``extras["interacting"]``, by default those holding two hands, and the others) and
   ``mrrpe_mm``, which needs the model's own root placement (an estimate attribute
   ``roots_3d``, (N, 3) wrists in metres with an origin shared by the hands of a crop for
   two-hand models, or in the camera frame for single-hand ones); without it, null with
   ``mrrpe_reason``. ``mrrpe_lifted_mm`` places
   each hand as the ROS node does (``pipeline.lifting.lift_to_camera``: predicted
   root-relative joints + predicted pixels + the image intrinsics).
   Detection-free failure modes: crops whose hand score is below ``SCORE_THRESHOLD`` are
   counted as ``missed`` but still scored (the evaluation does not depend on a threshold);
   ``handedness_accuracy`` compares the predicted side with the ground truth.
Hands whose wrist has no annotation are left out of the 3D metrics (``hands_without_wrist``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from hand_pose_ros.data.sample import HandSample
from hand_pose_ros.data.synth import crop_intrinsics
from hand_pose_ros.eval import metrics
from hand_pose_ros.hand.fit import HandFitter
from hand_pose_ros.hand.joints import Handedness, HandLandmark
from hand_pose_ros.models.base import HandEstimate, HandEstimator

PRECROPPED_SOURCES = frozenset({"synthetic", "freihand"})
JOINT_BOX_SCALE = 1.6
SCORE_THRESHOLD = 0.5
PCK2D_THRESHOLD = 0.1  # of the ground-truth 2D joint box's longer side
WRIST = int(HandLandmark.WRIST)

# Joint groups of EHPE's per-joint analysis. Every finger chain is (MCP, PIP, DIP, TIP) at
# levels 0..3 (joint 1 + 4 finger + level); the thumb's chain is (CMC, MCP, IP, TIP), mapped
# level by level onto the same four groups (the chain levels of Spurr et al. 2020).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {"wrist": (WRIST,)} | {
    group: tuple(1 + 4 * finger + level for finger in range(5))
    for level, group in enumerate(("mcp", "pip", "dip", "tip"))
}


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned square of an image: centre (x, y) and side, in image pixels.

    A crop of ``size`` pixels maps image pixel u to ``(u - centre) * size / side + (size - 1)
    / 2``: pixel centres at integers in both, as ``data.synth.crop_intrinsics``.
    """

    center: tuple[float, float]
    side: float

    def __post_init__(self) -> None:
        if not (np.all(np.isfinite(self.center)) and np.isfinite(self.side) and self.side > 0):
            raise ValueError(f"crop box needs a finite centre and a positive side, got "
                             f"{self.center}, {self.side}")

    def crop_to_image_affine(self, size: int) -> np.ndarray:
        """(2, 3) affine map from crop pixels to image pixels."""
        scale = self.side / size
        offset = np.asarray(self.center) - scale * (size - 1) / 2
        return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])

    def to_image(self, points: np.ndarray, size: int) -> np.ndarray:
        """(..., 2) crop pixels -> image pixels."""
        return (np.asarray(points) - (size - 1) / 2) * (self.side / size) + self.center

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """(..., 2) image pixels -> crop pixels."""
        return (np.asarray(points) - self.center) * (size / self.side) + (size - 1) / 2

    def intrinsics(self, k: np.ndarray, size: int) -> np.ndarray:
        """(3, 3) pinhole matrix of the crop, from the image's ``k``."""
        return crop_intrinsics(np.asarray(k, dtype=np.float64), np.asarray(self.center),
                               self.side, size)

    def cut(self, image: np.ndarray, size: int) -> np.ndarray:
        """The (size, size, 3) crop of ``image``, bilinear; outside pixels repeat the border."""
        return cv2.warpAffine(image, self.crop_to_image_affine(size), (size, size),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)


def box_around(points: np.ndarray, scale: float = JOINT_BOX_SCALE) -> CropBox:
    """Square around (K, 2) pixels: their bounding box's centre, ``scale`` x its longer side."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 or not np.all(np.isfinite(points)):
        raise ValueError("a crop box needs at least one finite 2D joint")
    low, high = points.min(axis=0), points.max(axis=0)
    # Never smaller than 8 px, so a hand annotated with a single joint still gets a crop.
    side = max(float((high - low).max()) * scale, 8.0)
    return CropBox(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2), side)


def whole_image_box(image: np.ndarray) -> CropBox:
    height, width = image.shape[:2]
    return CropBox(((width - 1) / 2, (height - 1) / 2), float(max(width, height)))


def crop_plan(sample: HandSample, hands_per_crop: int = 1) -> list[tuple[CropBox, tuple[int, ...]]]:
    """The crops of one sample: (box, indices of the sample's hands it is scored for). Hands
    without any annotated joint are not scored."""
    hands = [h for h in range(sample.num_hands) if sample.joint_valid[h].any()]
    if hands_per_crop == 2:
        return [(box_around(sample.joints_2d[sample.joint_valid]), tuple(hands))] if hands else []
    if hands_per_crop != 1:
        raise ValueError(f"hands_per_crop must be 1 or 2, got {hands_per_crop}")
    height, width = sample.image.shape[:2]
    if sample.num_hands == 1 and sample.source in PRECROPPED_SOURCES and height == width:
        return [(whole_image_box(sample.image), (0,))]
    return [(box_around(sample.joints_2d[h][sample.joint_valid[h]]), (h,)) for h in hands]


@dataclass
class Example:
    """One scored hand kept for plots: the model's input crop and what to draw on it."""

    crop: np.ndarray  # (S, S, 3) uint8 RGB, the model input
    intrinsics: np.ndarray  # (3, 3) of the crop
    gt_2d: np.ndarray  # (21, 2) crop pixels
    pred_2d: np.ndarray  # (21, 2) crop pixels
    pred_vertices: np.ndarray | None  # (V, 3) metres, placed at the ground-truth wrist
    side: int
    score: float  # the model's hand presence score
    pa_mpjpe_mm: float


@dataclass
class Evaluation:
    """Per-hand predictions and ground truth of a run (one list entry per scored hand), the
    kept examples, and timings (seconds: reading data, running the model, fitting meshes)."""

    model: str
    input_size: int
    hands_per_crop: int
    sample_index: list[int] = field(default_factory=list)
    interacting: list[bool] = field(default_factory=list)
    side: list[int] = field(default_factory=list)
    gt_joints: list[np.ndarray] = field(default_factory=list)  # camera frame, metres
    gt_2d: list[np.ndarray] = field(default_factory=list)  # image pixels
    valid: list[np.ndarray] = field(default_factory=list)
    gt_vertices: list[np.ndarray | None] = field(default_factory=list)  # camera frame
    gt_mesh: list[str | None] = field(default_factory=list)
    image_k: list[np.ndarray] = field(default_factory=list)
    pred_rel: list[np.ndarray] = field(default_factory=list)  # root-relative, metres
    pred_2d: list[np.ndarray] = field(default_factory=list)  # image pixels
    pred_vertices: list[np.ndarray | None] = field(default_factory=list)  # root-relative
    pred_root: list[np.ndarray | None] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    right_prob: list[float] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    samples: int = 0
    mesh_source: str = "fit"
    data_s: float = 0.0
    model_s: float = 0.0
    fit_s: float = 0.0
    wall_s: float = 0.0

    @property
    def hands(self) -> int:
        return len(self.score)


@dataclass
class _Pending:
    crop: np.ndarray
    box: CropBox
    sample_index: int
    hands: tuple[int, ...]
    sample: HandSample  # kept until its batch has run


def _check_estimate(estimate: HandEstimate, expected: int, name: str) -> None:
    if len(estimate) != expected:
        raise ValueError(f"model {name!r} returned {len(estimate)} hands for {expected} expected")
    arrays = [estimate.joints_3d, estimate.joints_2d, estimate.scores, estimate.right_hand]
    if estimate.vertices is not None:
        arrays.append(estimate.vertices)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError(f"model {name!r} returned non-finite values; cannot score it")


class _Runner:
    def __init__(self, model: HandEstimator, batch_size: int, examples: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.model, self.batch_size, self.examples = model, batch_size, examples
        self.per_crop = int(getattr(model, "hands_per_crop", 1))
        self.result = Evaluation(model.name, model.input_size, self.per_crop)
        self.pending: list[_Pending] = []
        self._fitters: dict[int, HandFitter] = {}

    def add(self, index: int, sample: HandSample) -> None:
        self.result.samples += 1
        for box, hands in crop_plan(sample, self.per_crop):
            crop = box.cut(sample.image, self.model.input_size)
            self.pending.append(_Pending(crop, box, index, hands, sample))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        start = time.perf_counter()
        estimate = self.model.estimate(np.stack([p.crop for p in self.pending]))
        self.result.model_s += time.perf_counter() - start
        _check_estimate(estimate, len(self.pending) * self.per_crop, self.model.name)
        roots = getattr(estimate, "roots_3d", None)
        for c, item in enumerate(self.pending):
            for h in item.hands:
                side = int(item.sample.handedness[h])
                # Two-hand models return (right, left) per crop; single-hand models one hand.
                e = c * self.per_crop + (side if self.per_crop == 2 else 0)
                self._record(item, h, estimate, e, None if roots is None else roots[e])
        self.pending = []

    def _record(self, item: _Pending, h: int, est: HandEstimate, e: int, root) -> None:
        r, sample, size = self.result, item.sample, self.model.input_size
        side = int(sample.handedness[h])
        pred_rel = est.joints_3d[e] - est.joints_3d[e][WRIST]
        if est.vertices is not None:
            r.mesh_source = "model"
            vertices = est.vertices[e] - est.joints_3d[e][WRIST]
        else:
            vertices = self._fit(pred_rel, side)
        r.sample_index.append(item.sample_index)
        r.interacting.append(bool(sample.extras.get("interacting", sample.num_hands == 2)))
        r.side.append(side)
        r.gt_joints.append(np.asarray(sample.joints_3d[h], dtype=np.float64))
        r.gt_2d.append(np.asarray(sample.joints_2d[h], dtype=np.float64))
        r.valid.append(np.asarray(sample.joint_valid[h], dtype=bool))
        r.gt_vertices.append(None if sample.vertices is None else sample.vertices[h])
        r.gt_mesh.append(sample.mesh)
        r.image_k.append(np.asarray(sample.intrinsics, dtype=np.float64))
        r.pred_rel.append(pred_rel)
        r.pred_2d.append(item.box.to_image(est.joints_2d[e], size))
        r.pred_vertices.append(vertices)
        r.pred_root.append(None if root is None else np.asarray(root, dtype=np.float64))
        r.score.append(float(est.scores[e]))
        r.right_prob.append(float(est.right_hand[e]))
        if len(r.examples) < self.examples:
            v = r.valid[-1]
            gt_rel = r.gt_joints[-1] - r.gt_joints[-1][WRIST]
            pa = metrics.pa_mpjpe(pred_rel[v], gt_rel[v]) * 1e3 if v[WRIST] else float("nan")
            r.examples.append(Example(
                crop=item.crop, intrinsics=item.box.intrinsics(sample.intrinsics, size),
                gt_2d=item.box.to_crop(sample.joints_2d[h], size),
                pred_2d=np.asarray(est.joints_2d[e], dtype=np.float64),
                pred_vertices=None if vertices is None else vertices + r.gt_joints[-1][WRIST],
                side=side, score=float(est.scores[e]), pa_mpjpe_mm=pa))

    def _fit(self, joints_rel: np.ndarray, side: int) -> np.ndarray | None:
        """Open-hand-model mesh fitted to predicted joints (None when they are no hand)."""
        start = time.perf_counter()
        if side not in self._fitters:
            self._fitters[side] = HandFitter(side)
        fitter = self._fitters[side]
        try:
            vertices = fitter.vertices(fitter.fit(joints_rel))
        except ValueError:
            vertices = None
        self.result.fit_s += time.perf_counter() - start
        return vertices if vertices is not None and np.all(np.isfinite(vertices)) else None


def evaluate(model: HandEstimator, samples: Iterable, batch_size: int = 16,
             examples: int = 12) -> Evaluation:
    """Run ``model`` on every hand of ``samples`` (``HandSample``s); keep ``examples`` crops."""
    runner = _Runner(model, batch_size, examples)
    start = time.perf_counter()
    iterator = iter(samples)
    index = 0
    while True:
        fetch = time.perf_counter()
        sample = next(iterator, None)
        runner.result.data_s += time.perf_counter() - fetch
        if sample is None:
            break
        runner.add(index, sample)
        index += 1
    runner.flush()
    runner.result.wall_s = time.perf_counter() - start
    if runner.result.hands == 0:
        raise ValueError("no hands to evaluate: the data source yielded no annotated hand")
    return runner.result


def _mm(value: float) -> float:
    return float(value) * 1e3


def _nanmean_mm(errors: np.ndarray) -> float | None:
    return _mm(np.nanmean(errors)) if np.isfinite(errors).any() else None


def _vertex_metrics(r: Evaluation, hands: np.ndarray) -> dict:
    """PA-MPVPE and F-scores over ``hands`` whose predicted and true meshes correspond."""
    out = {"pa_mpvpe_mm": None, "f5": None, "f15": None, "vertex_reason": None,
           "mesh_failures": None}
    if any(r.gt_vertices[i] is None for i in hands):
        out["vertex_reason"] = "the data has no ground-truth vertices"
        return out
    gt_meshes = {r.gt_mesh[i] for i in hands}
    pred = [i for i in hands if r.pred_vertices[i] is not None]
    if not pred:
        out["vertex_reason"] = "no hand got a mesh (every fit failed)"
        return out
    if gt_meshes != {"open_hand"} or any(
            len(r.pred_vertices[i]) != len(r.gt_vertices[i]) for i in pred):
        out["vertex_reason"] = (f"ground-truth topology {sorted(map(str, gt_meshes))} differs "
                                f"from the predicted open_hand mesh ({r.mesh_source})")
        return out
    gt_v = np.stack([r.gt_vertices[i] - r.gt_joints[i][WRIST] for i in pred])
    pred_v = np.stack([r.pred_vertices[i] for i in pred])
    out.update(pa_mpvpe_mm=_mm(metrics.pa_mpvpe(pred_v, gt_v)),
               f5=metrics.f_score(pred_v, gt_v, 0.005), f15=metrics.f_score(pred_v, gt_v, 0.015),
               mesh_failures=len(hands) - len(pred))
    return out


def error_tables(r: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """(H, 21) 3D joint errors in metres, root-relative and after similarity Procrustes
    alignment of each hand's valid joints; NaN where a joint is not scored (unannotated, or
    its hand's wrist is)."""
    valid = np.stack(r.valid)
    valid = valid & valid[:, WRIST:WRIST + 1]
    if not valid.any():
        raise ValueError("no evaluated hand has an annotated wrist: root-relative metrics "
                         "are undefined")
    gt = np.stack(r.gt_joints)
    gt_rel = gt - gt[:, WRIST:WRIST + 1]
    pred_rel = np.stack(r.pred_rel)
    rr = np.where(valid, metrics.joint_errors(pred_rel, gt_rel), np.nan)
    pa = np.full(rr.shape, np.nan)
    for i in np.flatnonzero(valid[:, WRIST]):
        v = valid[i]
        aligned = metrics.procrustes_align(pred_rel[i][v], gt_rel[i][v])[0]
        pa[i, v] = np.linalg.norm(aligned - gt_rel[i][v], axis=-1)
    return rr, pa


def compute_metrics(r: Evaluation) -> dict:
    """The metrics of the module docstring, as a JSON-ready dict (mm, fractions, px)."""
    rr, pa = error_tables(r)
    rr_all, pa_all = rr[np.isfinite(rr)], pa[np.isfinite(pa)]
    valid = np.stack(r.valid)
    with_wrist = valid[:, WRIST]
    gt_2d, pred_2d = np.stack(r.gt_2d), np.stack(r.pred_2d)
    box_side = np.array([np.ptp(g[v], axis=0).max() for g, v in zip(gt_2d, valid, strict=True)])
    error_2d = np.linalg.norm(pred_2d - gt_2d, axis=-1)
    scores, side = np.array(r.score), np.array(r.side)
    out = {
        "mpjpe_mm": _mm(rr_all.mean()),
        "pa_mpjpe_mm": _mm(pa_all.mean()),
        "auc_0_50": metrics.auc(rr_all, 0.0, 0.05),
        "auc_20_50": metrics.auc(rr_all, 0.02, 0.05),
        "pa_auc_0_50": metrics.auc(pa_all, 0.0, 0.05),
        "pck3d_20mm": metrics.pck(rr_all, 0.02),
        "pck2d": metrics.pck_2d(pred_2d, gt_2d, PCK2D_THRESHOLD,
                                normalizer=np.maximum(box_side, 1.0), valid=valid),
        "epe2d_px": float(error_2d[valid].mean()),
        "group_mm": {g: _nanmean_mm(pa[:, list(j)]) for g, j in JOINT_GROUPS.items()},
        "group_rr_mm": {g: _nanmean_mm(rr[:, list(j)]) for g, j in JOINT_GROUPS.items()},
        "mesh_source": r.mesh_source,
        **_vertex_metrics(r, np.flatnonzero(with_wrist)),
        "missed": int((scores < SCORE_THRESHOLD).sum()),
        "missed_fraction": float((scores < SCORE_THRESHOLD).mean()),
        "handedness_accuracy": float(
            ((np.array(r.right_prob) > 0.5) == (side == Handedness.RIGHT)).mean()),
        "hands_without_wrist": int((~with_wrist).sum()),
    }
    if any(r.interacting) or _hand_pairs(r):
        out.update(_two_hand_metrics(r, rr))
    return out


def _hand_pairs(r: Evaluation) -> list[tuple[int, int]]:
    """(right, left) hand indices of the samples that hold both hands."""
    by_side = {(r.sample_index[i], r.side[i]): i for i in range(r.hands)}
    return [(i, by_side[s, Handedness.LEFT]) for (s, side), i in by_side.items()
            if side == Handedness.RIGHT and (s, Handedness.LEFT) in by_side]


def _two_hand_metrics(r: Evaluation, rr: np.ndarray) -> dict:
    interacting = np.array(r.interacting)
    out = {"mpjpe_single_mm": _nanmean_mm(rr[~interacting]),
           "mpjpe_interacting_mm": _nanmean_mm(rr[interacting])}
    for key, what in (("single", "non-interacting"), ("interacting", "interacting")):
        if out[f"mpjpe_{key}_mm"] is None:
            out[f"{key}_reason"] = f"the data holds no scored hand of {what} samples"
    pairs = [(i, j) for i, j in _hand_pairs(r) if r.valid[i][WRIST] and r.valid[j][WRIST]]
    out.update(mrrpe_mm=None, mrrpe_reason=None, mrrpe_lifted_mm=None)
    if not pairs:
        out["mrrpe_reason"] = "no sample holds both hands with annotated wrists"
        return out
    right, left = np.array(pairs).T
    gt_roots = np.stack(r.gt_joints)[:, WRIST]
    if all(r.pred_root[k] is not None for k in np.concatenate([right, left])):
        out["mrrpe_mm"] = _mm(metrics.mrrpe(np.stack([r.pred_root[k] for k in right]),
                                            np.stack([r.pred_root[k] for k in left]),
                                            gt_roots[right], gt_roots[left]))
    else:
        out["mrrpe_reason"] = (f"model {r.model!r} gives root-relative hands only (no "
                               f"roots_3d); see mrrpe_lifted_mm for the node's placement")
    lifted = _lifted_roots(r)
    out["mrrpe_lifted_mm"] = _mm(metrics.mrrpe(lifted[right], lifted[left],
                                               gt_roots[right], gt_roots[left]))
    return out


def _lifted_roots(r: Evaluation) -> np.ndarray:
    """(H, 3) wrists placed as the node does: predicted shape + predicted pixels + image K."""
    from hand_pose_ros.pipeline.lifting import CameraIntrinsics, lift_to_camera

    return np.stack([
        lift_to_camera(rel, px, CameraIntrinsics.from_matrix(k))[WRIST]
        for rel, px, k in zip(r.pred_rel, r.pred_2d, r.image_k, strict=True)
    ])


def pck_curves(r: Evaluation, thresholds_m: np.ndarray) -> dict[str, np.ndarray]:
    """3D PCK at ``thresholds_m`` (metres), root-relative and Procrustes-aligned, for plots."""
    rr, pa = error_tables(r)
    return {"root-relative": metrics.pck_curve(rr[np.isfinite(rr)], thresholds_m),
            "Procrustes-aligned": metrics.pck_curve(pa[np.isfinite(pa)], thresholds_m)}
