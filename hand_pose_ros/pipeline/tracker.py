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

Two-hand models (estimator ``hands_per_crop == 2``: Handformer2T, DFL) see ONE crop per frame,
holding both hands: the axis-aligned square ``PAIR_CROP_SCALE`` x the longer side of the union
of the hands' joint boxes (each tracked hand's last landmarks; a hand only the palm detector has
seen: its ROI shrunk to a joint box), the framing the models are trained and evaluated with. A
single visible hand gets the same crop around it alone. The model's slot 0 is the right hand and
slot 1 the left one (a slot whose presence is below ``min_tracking_confidence`` is absent); one
track per side. The right hand is lifted as in the single-hand path; the left one is placed at
the right wrist plus the model's root offset when both are present (with a depth image, or
alone, it is lifted on its own: measured depth beats a learnt offset). A hand's
``detection_score`` and ``handedness_score`` are its slot's presence probability (the slot is
the side). The detector runs inline (no background search): while one hand is tracked the
model itself often finds the other one in the crop.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
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
PAIR_SLOTS = 2  # hands per crop of a two-hand model: slot 0 right, slot 1 left
# Crop side of a two-hand model / longer side of the hands' joint box, as the synthetic crops
# (joint box = 0.5-0.75 of the crop) and eval's JOINT_BOX_SCALE.
PAIR_CROP_SCALE = 1.6
# A MediaPipe hand ROI (palm box x 2.6, or stable joints x 2) is about this many times the
# side of the hand's joint box.
ROI_PER_JOINT_BOX = 1.4


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
        backend_options: runtime options for both networks, passed to ``create_backend``
            unchanged, e.g. ``{"device": "cuda", "precision": "fp16", "cuda_graphs": True}``.
            When the estimator runs on CUDA and accepts tensors, the crops are made there too.
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
    backend_options: dict = field(default_factory=dict)

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
    side: Handedness | None = None  # two-hand models: the model slot this track follows
    landmarks: np.ndarray | None = None  # two-hand models: last (21, 2) image pixels


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


def hand_box(landmarks: np.ndarray | None, roi: Roi) -> tuple[float, float, float, float]:
    """A hand's joint box (xmin, ymin, xmax, ymax), image pixels: the bounds of its landmarks
    when known, else the square of side ``roi.width / ROI_PER_JOINT_BOX`` around the (detector)
    ROI's centre."""
    if landmarks is not None:
        low, high = landmarks.min(axis=0), landmarks.max(axis=0)
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])
    half = 0.5 * max(roi.width, roi.height) / ROI_PER_JOINT_BOX
    return roi.cx - half, roi.cy - half, roi.cx + half, roi.cy + half


def pair_crop(boxes: Sequence[tuple[float, float, float, float]],
              scale: float = PAIR_CROP_SCALE) -> Roi:
    """The crop of a two-hand model: an axis-aligned square centred on the union of the hands'
    joint boxes (image pixels), side ``scale`` x the union's longer side (one box: the crop
    around that hand alone).

    Raises:
        ValueError: no box, or a non-finite one.
    """
    if not boxes:
        raise ValueError("pair_crop needs at least one hand box")
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"hand boxes must be finite, got {array.tolist()}")
    x0, y0 = array[:, :2].min(axis=0)
    x1, y1 = array[:, 2:].max(axis=0)
    side = scale * max(x1 - x0, y1 - y0, 1.0)  # a degenerate box still gets a crop
    return Roi(0.5 * (x0 + x1), 0.5 * (y0 + y1), side, side, 0.0)


def lift_pair(estimate: HandEstimate, roi: Roi, size: int, present: Sequence[bool],
              intrinsics: CameraIntrinsics, depth_m: np.ndarray | None = None
              ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Both hands of a two-hand model's crop in the camera frame.

    Args:
        estimate: a ``models.twohand.TwoHandEstimate`` of ONE crop (entries 0 right, 1 left;
            ``root_offset`` (1, 3) left wrist minus right wrist, crop axes, metres).
        roi: the crop (image pixels); size: its side in model pixels.
        present: per slot, whether that hand counts as seen.
        depth_m: optional aligned depth image, metres.

    Returns:
        Per slot (right, left): (joints (21, 3) metres, camera optical frame; pixels (21, 2))
        or None when absent or not finite. The right hand is lifted with ``lift_to_camera``;
        the left one sits at the right wrist + the root offset when both are present and no
        depth image is given, else it is lifted on its own.
    """
    placed: list[tuple[np.ndarray, np.ndarray] | None] = [None] * PAIR_SLOTS
    for slot in range(PAIR_SLOTS):
        if not present[slot]:
            continue
        pixels = crop_points_to_image(estimate.joints_2d[slot], roi, size)
        joints_rel = _rotate_xy(estimate.joints_3d[slot], roi.rotation)
        right = placed[0]
        if slot == 1 and right is not None and depth_m is None:
            offset = _rotate_xy(estimate.root_offset.reshape(1, 3), roi.rotation)[0]
            camera = joints_rel - joints_rel[0] + right[0][0] + offset
        else:
            camera = lift_to_camera(joints_rel, pixels, intrinsics, depth_m)
        if np.all(np.isfinite(camera)) and np.all(np.isfinite(pixels)):
            placed[slot] = (camera, pixels)
    return placed


class HandTracker:
    """Tracks up to ``max_hands`` hands in a video; see the module docstring for one frame."""

    # A detection overlapping a tracked hand this much (IoU) is that hand, as are two tracks.
    SAME_HAND_IOU = 0.5

    def __init__(self, options: HandTrackerOptions):
        from hand_pose_ros.models import create_model
        from hand_pose_ros.models.mediapipe import MediaPipePalmDetector

        self.options = options
        self.estimator = create_model(options.model, backend=options.backend,
                                      num_threads=options.num_threads, **options.backend_options)
        self.detector = MediaPipePalmDetector(options.detector, options.backend,
                                              options.num_threads, **options.backend_options)
        # Crop on the GPU when the network runs there: crops never cross to host memory.
        self._device_crops = (getattr(self.estimator, "accepts_tensors", False)
                              and getattr(self.estimator.backend, "device", "cpu") == "cuda")
        # Two-hand models see one crop holding both hands, one track per side.
        self._pairs = getattr(self.estimator, "hands_per_crop", 1) == PAIR_SLOTS
        self._max_hands = min(options.max_hands, PAIR_SLOTS) if self._pairs else options.max_hands
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
        if self._pairs:
            self._process_pair(frame, is_bgr, intrinsics, float(stamp), depth_m, result)
            timings["total"] = 1e3 * (time.perf_counter() - start)
            return result

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
            # All tracked hands in one batched network call.
            estimate = self.estimator.estimate(self._crops(frame, is_bgr))
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
        return (len(self._tracks) < self._max_hands
                and self._frames_since_detection + 1 >= self.options.detection_interval)

    def _crops(self, frame: np.ndarray, is_bgr: bool):
        """Crops of every tracked ROI: (N, S, S, 3) uint8 RGB, or on the GPU path the network's
        (N, 3, S, S) float input tensor, made there (runtime/preprocess.py)."""
        size = self.estimator.input_size
        rois = [t.roi for t in self._tracks]
        if self._device_crops:
            from hand_pose_ros.runtime.preprocess import crop_batch, frame_to_device

            return crop_batch(frame_to_device(frame, "cuda"), rois, size, is_bgr)
        return np.stack([crop_rgb(frame, is_bgr, roi, size) for roi in rois])

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
        camera = self._smooth(track, camera, stamp)
        right = float(estimate.right_hand[i])
        if self.options.mirrored:
            right = 1.0 - right
        track.right_sum += right
        track.frames += 1
        p_right = track.right_sum / track.frames
        side = Handedness.RIGHT if p_right >= 0.5 else Handedness.LEFT
        return self._package(track, side, camera, pixels,
                             p_right if side == Handedness.RIGHT else 1.0 - p_right,
                             float(estimate.scores[i]), estimate.joint_confidence[i], used_roi)

    def _smooth(self, track: _Track, camera: np.ndarray, stamp: float) -> np.ndarray:
        """The track's 1-euro filter applied to (21, 3) camera-frame joints (when smoothing)."""
        if not self.options.smoothing:
            return camera
        if track.filter is None:
            track.filter = OneEuroFilter(self.options.filter_min_cutoff, self.options.filter_beta,
                                         self.options.filter_d_cutoff)
        return track.filter(camera, stamp)

    def _package(self, track: _Track, side: Handedness, camera: np.ndarray, pixels: np.ndarray,
                 handedness_score: float, detection_score: float, confidence: np.ndarray,
                 roi: Roi) -> TrackedHand | None:
        """Wrist pose and mesh of a lifted, smoothed hand; moves its track's ROI onto it.
        None when the palm is degenerate."""
        try:
            rotation = wrist_frame(camera, side)
        except ValueError:
            return None  # degenerate palm: no trustworthy pose this frame
        track.roi = roi_from_landmarks(pixels)
        vertices, faces = self._mesh(track, camera, side)
        return TrackedHand(
            side=side,
            handedness_score=handedness_score,
            detection_score=detection_score,
            tracking_id=track.id,
            keypoints_camera=camera,
            keypoints_image=pixels,
            keypoint_confidence=np.clip(confidence, 0.0, 1.0),
            wrist_position=camera[0].copy(),
            wrist_quaternion_xyzw=Rotation.from_matrix(rotation).as_quat(),
            roi=roi,
            mesh_vertices=vertices,
            mesh_faces=faces,
        )

    def _process_pair(self, frame: np.ndarray, is_bgr: bool, intrinsics: CameraIntrinsics,
                      stamp: float, depth_m: np.ndarray | None,
                      result: HandTrackingResult) -> None:
        """One frame of a two-hand model (see the module docstring) into ``result``."""
        timings = result.timings_ms
        mark = time.perf_counter()
        boxes = [hand_box(t.landmarks, t.roi) for t in self._tracks]
        if self._should_detect():
            self._frames_since_detection = 0
            found = [r for r in self._find_palms(frame, is_bgr)
                     if all(iou(r, t.roi) < self.SAME_HAND_IOU for t in self._tracks)]
            boxes += [hand_box(None, r) for r in found[:PAIR_SLOTS - len(boxes)]]
            result.detector_ran = True
            now = time.perf_counter()
            timings["detection"] = 1e3 * (now - mark)
            mark = now
        else:
            self._frames_since_detection += 1
        if not boxes:
            return
        size = self.estimator.input_size
        roi = pair_crop(boxes)
        estimate = self.estimator.estimate(crop_rgb(frame, is_bgr, roi, size)[None])
        now = time.perf_counter()
        timings["landmarks"] = 1e3 * (now - mark)
        mark = now
        scores = np.asarray(estimate.scores[:PAIR_SLOTS], dtype=np.float64)
        present = [bool(s >= self.options.min_tracking_confidence) for s in scores]
        if self._max_hands == 1 and all(present):
            present[int(np.argmin(scores))] = False  # one hand asked for: the surer one
        old = {t.side: t for t in self._tracks}
        tracks, hands = [], []
        for slot, placed in enumerate(lift_pair(estimate, roi, size, present, intrinsics,
                                                depth_m)):
            if placed is None:
                continue  # absent: that side's track and its filter end here
            # In a mirrored image a right hand looks like a left one: the slot flips.
            side = Handedness(slot ^ int(self.options.mirrored))
            track = old.get(side)
            if track is None:
                track = _Track(self._next_id, roi, side=side)
                self._next_id += 1
            camera, pixels = placed
            hand = self._package(track, side, self._smooth(track, camera, stamp), pixels,
                                 float(scores[slot]), float(scores[slot]),
                                 estimate.joint_confidence[slot], roi)
            if hand is not None:
                track.landmarks = pixels
                tracks.append(track)
                hands.append(hand)
        self._tracks = tracks
        timings["lifting"] = 1e3 * (time.perf_counter() - mark) - self._mesh_ms
        if self.options.mesh:
            timings["mesh"] = self._mesh_ms
        self._mesh_ms = 0.0
        result.hands = sorted(hands, key=lambda h: int(h.side))

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
