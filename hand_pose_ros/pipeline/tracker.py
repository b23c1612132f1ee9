"""The hand tracker: image in, metric 3D hands in the camera frame out. The one entry point that
the ROS node, the benchmark and the reference comparison call.

Design (MediaPipe Tasks in spirit): ``HandTrackerOptions`` (a validated dataclass) configures a
``HandTracker``; ``process(image, intrinsics, stamp, depth=None)`` returns a
``HandTrackingResult`` whose lists are empty, never None. The tracker is a context manager.

One frame:
1. detection (palm detector on the letterboxed image, weighted NMS, palm -> hand ROI) runs only
   when no hand is tracked, or every ``detection_interval`` frames while fewer than
   ``max_hands`` are tracked; a new ROI overlapping a tracked one is dropped (the track wins);
2. every tracked ROI is cropped (rotation-aware affine warp) and the estimator runs on the batch;
3. a hand whose presence is below ``min_tracking_confidence`` ends its track (its filter state
   goes with it); the others are lifted to metres in the camera frame (``lifting.py``),
   smoothed (``OneEuroFilter``), given a wrist pose, and their landmarks give the next ROI.
Handedness is the running mean of the per-frame probability over the track's life, so a hand's
side does not flicker; tracking ids are unique per tracker and never reused.
"""

from __future__ import annotations

import math
import numbers
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.fit import HandFit, HandFitter
from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.models.base import HandEstimate
from hand_pose_ros.pipeline.filters import OneEuroFilter
from hand_pose_ros.pipeline.lifting import CameraIntrinsics, depth_to_metres, lift_to_camera
from hand_pose_ros.pipeline.palm import detect_palms, letterbox_roi, palm_to_roi
from hand_pose_ros.pipeline.roi import Roi, crop, crop_points_to_image, iou, roi_from_landmarks

COLOR_ORDERS = ("rgb", "bgr")
MIN_IMAGE_SIDE = 16
# OpenCV's warps address pixels with 16-bit signed coordinates.
MAX_IMAGE_SIDE = 16384
DETECTOR_VARIANTS = ("full", "lite")


@dataclass
class HandTrackerOptions:
    """Configuration of a ``HandTracker``.

    Attributes:
        color_order: channel order of the 3/4-channel images given to ``process``: "rgb" or
            "bgr" (required: a wrong guess silently ruins detection). Single-channel images are
            taken as grey.
        model: registered estimator name (``hand_pose_ros.models.list_models()``).
        detector: palm detector variant, "full" or "lite".
        backend: inference runtime, e.g. "onnxruntime" or "torch".
        num_threads: intra-op CPU threads of the runtime.
        max_hands: most hands tracked at once.
        min_detection_confidence: palm detector score threshold, in [0, 1].
        min_tracking_confidence: landmark presence below this ends a track, in [0, 1].
        detection_interval: while fewer than ``max_hands`` hands are tracked, run the detector
            every this many frames (>= 1); with no hand tracked it runs every frame.
        mirrored: the images are mirrored (selfie view); flips handedness.
        smoothing: apply the 1-euro filter to the 3D keypoints.
        filter_min_cutoff: 1-euro cutoff at rest, Hz (lower: smoother).
        filter_beta: 1-euro speed coefficient, s/m (higher: less lag on fast moves).
        filter_d_cutoff: 1-euro cutoff of the speed estimate, Hz.
        background_detection: while at least one hand is tracked, look for more hands in a
            background thread, so that frames do not wait for the palm detector (its result
            is merged one or two frames later); with no hand tracked it always runs inline.
        mesh: give every hand a mesh by fitting the open hand model (hand/fit.py) to its
            smoothed 3D keypoints, warm-started from the track's previous fit.
    """

    color_order: str
    model: str = "mediapipe"
    detector: str = "full"
    backend: str = "onnxruntime"
    num_threads: int = 2
    max_hands: int = 2
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    detection_interval: int = 10
    mirrored: bool = False
    smoothing: bool = True
    filter_min_cutoff: float = 1.0
    filter_beta: float = 20.0
    filter_d_cutoff: float = 1.0
    mesh: bool = True
    background_detection: bool = True

    def __post_init__(self) -> None:
        if self.color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if self.detector not in DETECTOR_VARIANTS:
            raise ValueError(f"detector must be one of {DETECTOR_VARIANTS}, got {self.detector!r}")
        if self.max_hands < 1:
            raise ValueError(f"max_hands must be >= 1, got {self.max_hands}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.detection_interval < 1:
            raise ValueError(f"detection_interval must be >= 1, got {self.detection_interval}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        # The filter validates its own parameters; fail here, at configuration time.
        OneEuroFilter(self.filter_min_cutoff, self.filter_beta, self.filter_d_cutoff)


@dataclass
class TrackedHand:
    """One hand in one frame. 3D quantities: metres, camera optical frame (x right, y down,
    z forward). Image quantities: pixels of the input image (x = column, y = row)."""

    side: Handedness
    handedness_score: float
    detection_score: float
    tracking_id: int
    keypoints_camera: np.ndarray  # (21, 3)
    keypoints_image: np.ndarray  # (21, 2)
    keypoint_confidence: np.ndarray  # (21,)
    wrist_position: np.ndarray  # (3,)
    wrist_quaternion_xyzw: np.ndarray  # (4,) orientation of hand.frames.wrist_frame
    roi: Roi  # the crop the landmarks were estimated in
    mesh_vertices: np.ndarray | None = None  # (V, 3) metres, camera frame; faces: mesh_faces
    mesh_faces: np.ndarray | None = None  # (F, 3) vertex indices, counter-clockwise outside


@dataclass
class HandTrackingResult:
    """Hands of one frame, right hands first, then left, each by tracking id.

    timings_ms: per-stage wall time of this frame, keys "preprocess", "detection" (only when
    the detector ran), "landmarks", "lifting", "total".
    """

    stamp: float
    hands: list[TrackedHand] = field(default_factory=list)
    detector_ran: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class _Track:
    id: int
    roi: Roi
    right_sum: float = 0.0
    frames: int = 0
    filter: OneEuroFilter | None = None
    fit: HandFit | None = None  # last hand-model fit: warm start of the next one
    fit_side: Handedness | None = None


def prepare_image(image: np.ndarray, color_order: str) -> tuple[np.ndarray, bool]:
    """Validate ``image`` and return it as contiguous (H, W, 3) uint8, and whether its channels
    are BGR (left as they are: only the small crops get swapped, which is cheaper).

    Accepts 8-bit grey (H, W) or (H, W, 1), colour (H, W, 3) and (H, W, 4, alpha ignored) in
    ``color_order``, with any strides.

    Raises:
        ValueError: not a numpy array, empty, not 8-bit, an unsupported channel count, or a side
            outside [MIN_IMAGE_SIDE, MAX_IMAGE_SIDE].
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be 8-bit (uint8), got {image.dtype}; convert it first, "
                         "e.g. 16-bit: (image >> 8).astype(np.uint8)")
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if channels not in (1, 3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE or max(h, w) > MAX_IMAGE_SIDE:
        raise ValueError(f"image size {w}x{h} is outside {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} "
                         "pixels per side")
    image = np.ascontiguousarray(image)
    if channels == 1:
        return cv2.cvtColor(image.reshape(h, w), cv2.COLOR_GRAY2RGB), False
    if channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)  # drops alpha, keeps the order
    return image, color_order == "bgr"


def crop_rgb(image: np.ndarray, is_bgr: bool, roi: Roi, size: int,
             border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """RGB crop of ``roi`` from an image prepared by ``prepare_image``."""
    patch = crop(image, roi, size, border)
    return patch[:, :, ::-1] if is_bgr else patch


def _rotate_xy(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate (K, 3) points about z by ``angle`` (clockwise on screen, as ROI rotations)."""
    c, s = math.cos(angle), math.sin(angle)
    out = points.copy()
    out[:, 0] = c * points[:, 0] - s * points[:, 1]
    out[:, 1] = s * points[:, 0] + c * points[:, 1]
    return out


class HandTracker:
    """Tracks up to ``max_hands`` hands in a video; see the module docstring for one frame."""

    # A detection overlapping a tracked hand this much (IoU) is that hand, as are two tracks.
    SAME_HAND_IOU = 0.5

    def __init__(self, options: HandTrackerOptions):
        from hand_pose_ros.models import create_model
        from hand_pose_ros.models.mediapipe import MediaPipePalmDetector

        self.options = options
        self.estimator = create_model(options.model, backend=options.backend,
                                      num_threads=options.num_threads)
        self.detector = MediaPipePalmDetector(options.detector, options.backend,
                                              options.num_threads)
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frames_since_detection = 0
        self._fitters = {side: HandFitter(side) for side in Handedness} if options.mesh else {}
        self._mesh_ms = 0.0  # time spent fitting meshes in the current frame
        self._search = (ThreadPoolExecutor(1, thread_name_prefix="palm_search")
                        if options.background_detection else None)
        self._pending: Future | None = None  # background palm search: ROIs of new hands

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> HandTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the networks; the tracker cannot be used afterwards."""
        if self._search is not None:
            self._search.shutdown(wait=True)
        self.estimator = None
        self.detector = None
        self._tracks.clear()

    def reset(self) -> None:
        """Forget all tracks (e.g. after a jump in the video)."""
        self._tracks.clear()
        self._frames_since_detection = 0
        self._pending = None  # a search still running finishes, its result is ignored

    # -- one frame ---------------------------------------------------------------------------
    def process(self, image: np.ndarray, intrinsics: CameraIntrinsics, stamp: float,
                depth: np.ndarray | None = None) -> HandTrackingResult:
        """Track hands in one image.

        Args:
            image: 8-bit image in ``options.color_order`` (or grey), any strides.
            intrinsics: the camera's pinhole intrinsics for this image.
            stamp: capture time in seconds (monotonic within a stream; drives the filter).
            depth: optional depth image aligned to ``image`` (same H, W): float metres or
                uint16 millimetres; 0 and NaN mean no data.

        Returns:
            The hands found; an empty ``hands`` list when there are none.

        Raises:
            ValueError: unusable image, depth, intrinsics or stamp (the message says which).
            RuntimeError: the tracker was closed.
        """
        if self.estimator is None:
            raise RuntimeError("HandTracker.process called after close()")
        start = time.perf_counter()
        frame, is_bgr = prepare_image(image, self.options.color_order)
        if not isinstance(intrinsics, CameraIntrinsics):
            raise ValueError(f"intrinsics must be a CameraIntrinsics, got {type(intrinsics)}")
        if not isinstance(stamp, numbers.Real) or not math.isfinite(stamp):
            raise ValueError(f"stamp must be a finite number of seconds, got {stamp!r}")
        depth_m = self._prepare_depth(depth, frame.shape[:2])
        result = HandTrackingResult(stamp=float(stamp))
        timings = result.timings_ms
        mark = time.perf_counter()
        timings["preprocess"] = 1e3 * (mark - start)

        if self._pending is not None and (self._pending.done() or not self._tracks):
            self._add_tracks(self._pending.result())
            self._pending = None
        search_in_background = False
        if not self._should_detect():
            self._frames_since_detection += 1
        elif self._tracks and self._search is not None:
            search_in_background = self._pending is None
        else:
            self._frames_since_detection = 0
            self._add_tracks(self._find_palms(frame, is_bgr))
            result.detector_ran = True
            now = time.perf_counter()
            timings["detection"] = 1e3 * (now - mark)
            mark = now

        hands = []
        if self._tracks:
            size = self.estimator.input_size
            crops = np.stack([crop_rgb(frame, is_bgr, t.roi, size) for t in self._tracks])
            estimate = self.estimator.estimate(crops)
            now = time.perf_counter()
            timings["landmarks"] = 1e3 * (now - mark)
            mark = now
            kept = []
            for i, track in enumerate(self._tracks):
                score = float(estimate.scores[i])
                if not score >= self.options.min_tracking_confidence:
                    continue  # lost: the track and its filter end here
                hand = self._make_hand(track, estimate, i, intrinsics, float(stamp), depth_m)
                if hand is not None:
                    hands.append(hand)
                    kept.append(track)
            self._tracks = self._without_duplicates(kept, hands)
            hands = [h for h in hands if any(t.id == h.tracking_id for t in self._tracks)]
        timings["lifting"] = 1e3 * (time.perf_counter() - mark) - self._mesh_ms
        if self.options.mesh:
            timings["mesh"] = self._mesh_ms
        self._mesh_ms = 0.0
        hands.sort(key=lambda h: (int(h.side), h.tracking_id))
        result.hands = hands
        if search_in_background:
            # Look for more hands without making any frame wait. Started once this frame's
            # own networks are done, the search runs in the idle time before the next frame
            # instead of competing with the landmark network for the cores.
            self._frames_since_detection = 0
            self._pending = self._search.submit(self._find_palms, frame.copy(), is_bgr)
        timings["total"] = 1e3 * (time.perf_counter() - start)
        return result

    # -- steps --------------------------------------------------------------------------------
    @staticmethod
    def _prepare_depth(depth: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        if depth is None:
            return None
        if not isinstance(depth, np.ndarray) or depth.ndim not in (2, 3):
            raise ValueError("depth must be a (H, W) numpy array aligned to the image")
        if depth.ndim == 3:
            if depth.shape[2] != 1:
                raise ValueError(f"depth must have one channel, got shape {depth.shape}")
            depth = depth[:, :, 0]
        if depth.shape != shape:
            raise ValueError(f"depth shape {depth.shape} differs from the image's {shape}; "
                             "it must be aligned (registered) to the colour image")
        return depth_to_metres(depth)

    def _should_detect(self) -> bool:
        if not self._tracks:
            return True
        return (len(self._tracks) < self.options.max_hands
                and self._frames_since_detection + 1 >= self.options.detection_interval)

    def _find_palms(self, frame: np.ndarray, is_bgr: bool) -> list[Roi]:
        """Hand ROIs from the palm detector, best first. Touches only the detector, so it
        may run in the background thread."""
        h, w = frame.shape[:2]
        letterbox = letterbox_roi(w, h)
        tensor = crop_rgb(frame, is_bgr, letterbox, self.detector.input_size,
                          border=cv2.BORDER_CONSTANT)
        raw_boxes, raw_scores = self.detector(tensor)
        palms = detect_palms(raw_boxes, raw_scores, self.options.min_detection_confidence)
        rois = [palm_to_roi(palm, letterbox) for palm in palms]
        return [r for r in rois
                if all(math.isfinite(v) for v in (r.cx, r.cy, r.width, r.rotation))]

    def _add_tracks(self, rois: list[Roi]) -> None:
        """Start a track for every ROI that is not a tracked hand already, up to max_hands."""
        for roi in rois:
            if len(self._tracks) >= self.options.max_hands:
                break
            if all(iou(roi, t.roi) < self.SAME_HAND_IOU for t in self._tracks):
                self._tracks.append(_Track(self._next_id, roi))
                self._next_id += 1

    def _make_hand(self, track: _Track, estimate: HandEstimate, i: int,
                   intrinsics: CameraIntrinsics, stamp: float,
                   depth_m: np.ndarray | None) -> TrackedHand | None:
        """Lift, smooth and package one hand; advance its track. None if not finite."""
        size = self.estimator.input_size
        used_roi = track.roi
        pixels = crop_points_to_image(estimate.joints_2d[i], used_roi, size)
        joints_rel = _rotate_xy(estimate.joints_3d[i], used_roi.rotation)
        camera = lift_to_camera(joints_rel, pixels, intrinsics, depth_m)
        if not (np.all(np.isfinite(camera)) and np.all(np.isfinite(pixels))):
            return None
        if self.options.smoothing:
            if track.filter is None:
                track.filter = OneEuroFilter(self.options.filter_min_cutoff,
                                             self.options.filter_beta,
                                             self.options.filter_d_cutoff)
            camera = track.filter(camera, stamp)
        right = float(estimate.right_hand[i])
        if self.options.mirrored:
            right = 1.0 - right
        track.right_sum += right
        track.frames += 1
        p_right = track.right_sum / track.frames
        side = Handedness.RIGHT if p_right >= 0.5 else Handedness.LEFT
        try:
            rotation = wrist_frame(camera, side)
        except ValueError:
            return None  # degenerate palm: no trustworthy pose this frame
        track.roi = roi_from_landmarks(pixels)
        vertices, faces = self._mesh(track, camera, side)
        return TrackedHand(
            side=side,
            handedness_score=p_right if side == Handedness.RIGHT else 1.0 - p_right,
            detection_score=float(estimate.scores[i]),
            tracking_id=track.id,
            keypoints_camera=camera,
            keypoints_image=pixels,
            keypoint_confidence=np.clip(estimate.joint_confidence[i], 0.0, 1.0),
            wrist_position=camera[0].copy(),
            wrist_quaternion_xyzw=Rotation.from_matrix(rotation).as_quat(),
            roi=used_roi,
            mesh_vertices=vertices,
            mesh_faces=faces,
        )

    def _mesh(self, track: _Track, keypoints: np.ndarray,
              side: Handedness) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The hand-model mesh fitted to ``keypoints`` (camera frame), or (None, None)."""
        if not self.options.mesh:
            return None, None
        start = time.perf_counter()
        fitter = self._fitters[side]
        warm = track.fit if track.fit is not None and track.fit_side == side else None
        try:
            track.fit = fitter.fit(keypoints, init=warm)
            track.fit_side = side
            vertices = fitter.vertices(track.fit)
        except ValueError:
            track.fit = None
            return None, None
        finally:
            self._mesh_ms += 1e3 * (time.perf_counter() - start)
        if not np.all(np.isfinite(vertices)):
            return None, None
        return vertices, fitter.model.faces

    def _without_duplicates(self, tracks: list[_Track], hands: list[TrackedHand]) -> list[_Track]:
        """Two tracks that converged on one hand: keep the one with the higher presence."""
        score = {h.tracking_id: h.detection_score for h in hands}
        kept: list[_Track] = []
        for track in sorted(tracks, key=lambda t: -score[t.id]):
            if all(iou(track.roi, k.roi) < self.SAME_HAND_IOU for k in kept):
                kept.append(track)
        return sorted(kept, key=lambda t: t.id)
