"""Our PyTorch rebuild of MediaPipe's hand networks against the reference TFLite interpreter,
and onnxruntime against torch, on the same inputs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from hand_pose_ros.models import blaze
from hand_pose_ros.models.weights import weights_path
from hand_pose_ros.pipeline.palm import decode_boxes, palm_anchors

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_hand_video.mp4"
TOLERANCE = 1e-3


pytestmark = pytest.mark.usefixtures("mediapipe_weights")


def sample_image(size: int) -> np.ndarray:
    """(1, size, size, 3) float32 RGB in [0, 1]: a real frame when the test video is present
    (so scores take meaningful values), else smooth deterministic noise."""
    import cv2

    frame = None
    if VIDEO.is_file():
        ok, frame = cv2.VideoCapture(str(VIDEO)).read()
        if ok:  # the hand is right of centre in the first frame
            frame = cv2.cvtColor(frame[100:700, 500:1100], cv2.COLOR_BGR2RGB)
    if frame is None:
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return (frame.astype(np.float32) / 255.0)[None]


def reference_outputs(model_file: str, image: np.ndarray) -> list[np.ndarray]:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(weights_path(model_file)), num_threads=2)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def torch_outputs(model: torch.nn.Module, image: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        return [o.numpy() for o in model(torch.from_numpy(image.transpose(0, 3, 1, 2).copy()))]


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_landmark_net_matches_reference_interpreter(variant):
    image = sample_image(224)
    ours = torch_outputs(blaze.build_hand_landmark_net(variant), image)
    ref = reference_outputs(f"hand_landmark_{variant}.tflite", image)
    for name, a, b in zip(["landmarks", "presence", "handedness", "world"], ours, ref,
                          strict=True):
        assert a.shape == b.shape, name
        assert np.abs(a - b).max() < TOLERANCE, name
    if VIDEO.is_file():
        assert ref[1].item() > 0.9, "the real crop should hold a hand (checks the test input)"


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_palm_detector_matches_reference_interpreter(variant):
    image = sample_image(192)
    boxes, scores = torch_outputs(blaze.build_palm_detector(variant), image)
    ref_boxes, ref_scores = reference_outputs(f"palm_detection_{variant}.tflite", image)
    assert np.abs(scores - ref_scores).max() < TOLERANCE
    # Raw regressions are in input pixels (up to ~200); decoded to normalized coordinates with
    # the anchors, as the pipeline uses them, they must agree to 1e-3.
    ours_decoded = decode_boxes(boxes[0], palm_anchors())
    ref_decoded = decode_boxes(ref_boxes[0], palm_anchors())
    for a, b in zip(ours_decoded, ref_decoded, strict=True):
        assert np.abs(a - b).max() < TOLERANCE
    if VIDEO.is_file():
        assert 1 / (1 + np.exp(-ref_scores.max())) > 0.5, "the real crop should hold a palm"


def test_anchors_are_mediapipe_ssd_grid():
    anchors = palm_anchors()
    assert anchors.shape == (2016, 2)
    # Stride 8: 24x24 cells, 2 anchors each; strides 16,16,16 merged: 12x12 cells, 6 each.
    first = anchors[:1152].reshape(24, 24, 2, 2)
    second = anchors[1152:].reshape(12, 12, 6, 2)
    for grid, block in ((24, first), (12, second)):
        centres = (np.arange(grid) + 0.5) / grid
        assert np.allclose(block[..., 0], centres[None, :, None], atol=1e-7)
        assert np.allclose(block[..., 1], centres[:, None, None], atol=1e-7)


@pytest.mark.parametrize("kind", ["landmarks", "palm"])
def test_onnxruntime_matches_torch(kind):
    pytest.importorskip("onnxruntime")
    from hand_pose_ros.models.mediapipe import MediaPipeHandLandmarks, MediaPipePalmDetector
    from hand_pose_ros.runtime import create_backend

    if kind == "landmarks":
        size, wrapper, model = 224, MediaPipeHandLandmarks, blaze.build_hand_landmark_net("lite")
    else:
        size, wrapper, model = 192, MediaPipePalmDetector, blaze.build_palm_detector("lite")
    ort = wrapper("lite", backend="onnxruntime").backend
    eager = create_backend("torch", model, (torch.zeros(1, 3, size, size),))
    image = np.concatenate([sample_image(size), sample_image(size)[:, ::-1]])
    image = image.transpose(0, 3, 1, 2)
    # A batch of 2: the exported dynamic batch axis works.
    for a, b in zip(ort(image), eager(image), strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < TOLERANCE
