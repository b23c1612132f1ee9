"""MediaPipe's hand models as project estimators: the landmark net (registered as ``mediapipe``
and ``mediapipe_lite``) and the palm detector the pipeline runs before it.

Design: the PyTorch modules of ``blaze.py`` run behind any ``InferenceBackend`` (torch,
onnxruntime, ...); this module only converts crops to tensors and raw outputs to a
``HandEstimate``. Default configurations are data (``DEFAULT_CFGS``); factories apply overrides.
"""

from __future__ import annotations

import numpy as np
import torch

from hand_pose_ros.models.base import HandEstimate, HandEstimator, register_model
from hand_pose_ros.models.blaze import build_hand_landmark_net, build_palm_detector
from hand_pose_ros.models.weights import MEDIAPIPE_FILES
from hand_pose_ros.runtime import create_backend

DEFAULT_CFGS: dict[str, dict] = {
    "mediapipe": {"variant": "full", "backend": "onnxruntime", "num_threads": 2},
    "mediapipe_lite": {"variant": "lite", "backend": "onnxruntime", "num_threads": 2},
}

WRIST = 0


def _to_nchw(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 in [0, 1], the networks' input."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _cache_key(file_name: str) -> str:
    return f"{file_name.removesuffix('.tflite')}-{MEDIAPIPE_FILES[file_name][1][:12]}"


class MediaPipeHandLandmarks(HandEstimator):
    """MediaPipe hand landmark network (21 joints, metric world landmarks, presence, side).

    ``backend_options`` go to ``create_backend`` unchanged (e.g. ``device="cuda"``,
    ``precision="fp16"``, ``cuda_graphs=True``). ``accepts_tensors``: ``estimate`` also takes
    crops already pre-processed into the network's input tensor (the tracker's GPU path).
    """

    input_size = 224
    accepts_tensors = True

    def __init__(self, variant: str = "full", backend: str = "onnxruntime", num_threads: int = 2,
                 **backend_options):
        self.name = "mediapipe" if variant == "full" else f"mediapipe_{variant}"
        example = (torch.zeros(1, 3, self.input_size, self.input_size),)
        self.backend = create_backend(backend, build_hand_landmark_net(variant), example,
                                      num_threads=num_threads,
                                      cache_key=_cache_key(f"hand_landmark_{variant}.tflite"),
                                      **backend_options)

    def estimate(self, crops: np.ndarray | torch.Tensor) -> HandEstimate:
        """``crops``: (N, S, S, 3) uint8 RGB, or a (N, 3, S, S) float tensor in [0, 1] on any
        device (e.g. ``runtime.preprocess.crop_batch`` output)."""
        shape = (self.input_size, self.input_size)
        if isinstance(crops, torch.Tensor):
            if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, *shape):
                raise ValueError(f"crop tensor must be (N, 3, {shape[0]}, {shape[1]}), "
                                 f"got {tuple(crops.shape)}")
            outputs = tuple(o.cpu().numpy() for o in self.backend.run_tensors(crops))
        else:
            if crops.ndim != 4 or crops.shape[1:] != (*shape, 3):
                raise ValueError(f"crops must be (N, {shape[0]}, {shape[1]}, 3), "
                                 f"got {crops.shape}")
            outputs = self.backend(_to_nchw(crops))
        landmarks, presence, handedness, world = outputs
        n = len(crops)
        image = landmarks.reshape(n, 21, 3).astype(np.float64)
        world = world.reshape(n, 21, 3).astype(np.float64)
        # The net's "handedness" is P(label "Left") under MediaPipe's mirrored-image assumption
        # (label map: Left, Right), which is P(right hand) for an unmirrored camera image.
        return HandEstimate(
            joints_3d=world - world[:, WRIST:WRIST + 1],
            joints_2d=image[:, :, :2],
            scores=presence.reshape(n).astype(np.float64),
            right_hand=handedness.reshape(n).astype(np.float64),
            joint_confidence=np.ones((n, 21)),
        )


class MediaPipePalmDetector:
    """BlazePalm on a 192x192 letterboxed RGB image; raw outputs, decoded by pipeline.palm."""

    input_size = 192

    def __init__(self, variant: str = "full", backend: str = "onnxruntime", num_threads: int = 2,
                 **backend_options):
        example = (torch.zeros(1, 3, self.input_size, self.input_size),)
        # The detector runs now and then, right before the landmark net: no idle spinning.
        self.backend = create_backend(backend, build_palm_detector(variant), example,
                                      num_threads=num_threads, busy_wait=False,
                                      cache_key=_cache_key(f"palm_detection_{variant}.tflite"),
                                      **backend_options)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image``: (192, 192, 3) uint8 RGB. Returns raw boxes (2016, 18) in input pixels
        relative to the anchors, and score logits (2016,)."""
        boxes, scores = self.backend(_to_nchw(image[None]))
        return boxes[0], scores[0, :, 0]


def _build(name: str, overrides: dict) -> MediaPipeHandLandmarks:
    cfg = {**DEFAULT_CFGS[name], **overrides}
    return MediaPipeHandLandmarks(**cfg)


@register_model
def mediapipe(**overrides) -> MediaPipeHandLandmarks:
    """MediaPipe hand_landmark_full (2.7 M parameters)."""
    return _build("mediapipe", overrides)


@register_model
def mediapipe_lite(**overrides) -> MediaPipeHandLandmarks:
    """MediaPipe hand_landmark_lite (about half the cost of full)."""
    return _build("mediapipe_lite", overrides)
