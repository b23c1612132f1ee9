"""Crops made in torch (the GPU pre-processing path) against the CPU path's cv2.warpAffine."""

import math

import cv2
import numpy as np
import pytest
import torch

from hand_pose_ros.pipeline.roi import Roi, crop
from hand_pose_ros.runtime.preprocess import crop_batch, frame_to_device

# Stated agreement with cv2.warpAffine (which rounds to uint8 and interpolates in fixed point):
# every value within 2/255, the mean within 0.5/255.
MAX_DIFF, MEAN_DIFF = 2 / 255, 0.5 / 255
ROIS = [Roi(320, 240, 200, 200, 0.3), Roi(10, 20, 300, 300, -2.0),  # partly outside: border
        Roi(600, 400, 150, 150, math.pi / 2), Roi(320.5, 240.25, 90, 90, 0.0)]


def textured_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (640, 480),
                      interpolation=cv2.INTER_CUBIC)


def cv2_crops(image: np.ndarray, size: int, is_bgr: bool) -> np.ndarray:
    out = np.stack([crop(image, roi, size) for roi in ROIS])
    if is_bgr:
        out = out[..., ::-1]
    return out.transpose(0, 3, 1, 2) / 255.0


def check_close(crops: torch.Tensor, expected: np.ndarray) -> None:
    assert crops.dtype == torch.float32 and tuple(crops.shape) == expected.shape
    diff = np.abs(crops.cpu().numpy() - expected)
    assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF, (diff.max(), diff.mean())


@pytest.mark.parametrize("is_bgr", [False, True])
def test_torch_crops_match_cv2_warp_affine_with_rotation_and_border(is_bgr):
    image = textured_image()
    crops = crop_batch(frame_to_device(image, "cpu"), ROIS, 224, is_bgr)
    check_close(crops, cv2_crops(image, 224, is_bgr))


def test_crops_are_the_rgb_unit_range_input_of_the_networks():
    image = np.zeros((100, 120, 3), np.uint8)
    image[..., 0] = 255  # red in RGB, blue when declared BGR
    rgb = crop_batch(frame_to_device(image, "cpu"), [Roi(60, 50, 40, 40)], 8)
    bgr = crop_batch(frame_to_device(image, "cpu"), [Roi(60, 50, 40, 40)], 8, is_bgr=True)
    assert torch.allclose(rgb[0, 0], torch.ones(8, 8)) and torch.all(rgb[0, 1:] == 0)
    assert torch.allclose(bgr[0, 2], torch.ones(8, 8)) and torch.all(bgr[0, :2] == 0)
    with pytest.raises(ValueError, match="at least one ROI"):
        crop_batch(frame_to_device(image, "cpu"), [], 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_crops_match_cv2_too():
    image = textured_image()
    crops = crop_batch(frame_to_device(image, "cuda"), ROIS, 224, is_bgr=True)
    assert crops.is_cuda
    check_close(crops, cv2_crops(image, 224, True))


@pytest.mark.usefixtures("mediapipe_weights")
def test_estimator_gives_the_same_hands_from_tensor_crops_as_from_uint8_crops():
    from hand_pose_ros.models import create_model

    model = create_model("mediapipe_lite", backend="torch", num_threads=1)
    image = textured_image()
    tensors = crop_batch(frame_to_device(image, "cpu"), ROIS[:2], model.input_size, True)
    arrays = np.stack([crop(image, roi, model.input_size)[..., ::-1] for roi in ROIS[:2]])
    from_tensors, from_arrays = model.estimate(tensors), model.estimate(arrays)
    assert np.abs(from_tensors.joints_2d - from_arrays.joints_2d).max() < 1.0  # crop pixels
    assert np.abs(from_tensors.scores - from_arrays.scores).max() < 0.02
    with pytest.raises(ValueError, match="crop tensor must be"):
        model.estimate(torch.zeros(1, 3, 100, 100))
