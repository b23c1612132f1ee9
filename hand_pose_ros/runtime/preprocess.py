"""Crop pre-processing in torch: the rotation-aware ROI warp, resize and normalisation of
``pipeline.roi.crop`` done on the device the network runs on.

Design: the frame goes to the device once (uint8, 1 byte per pixel channel); every ROI's crop is
one ``affine_grid`` + ``grid_sample`` (bilinear, border = replicate), all ROIs in one batched
call, straight into the network's (N, 3, S, S) float layout in [0, 1]. The affine map is the
same one the CPU path gives ``cv2.warpAffine`` (``Roi.crop_to_image``), converted to
``grid_sample``'s normalised coordinates with ``align_corners=True`` (-1 and +1 are the centres
of the first and last pixels, as in OpenCV's pixel-centre convention), so both paths sample the
same points. They differ only in rounding: OpenCV interpolates in fixed point (1/32-pixel
positions, 15-bit weights) and rounds to uint8; this path stays in float.
Measured agreement with ``cv2.warpAffine`` (test_runtime_preprocess.py): <= 2/255 everywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from hand_pose_ros.pipeline.roi import Roi


def _pixel_to_normalised(width: int, height: int) -> np.ndarray:
    """3x3 map from pixel coordinates (pixel centres at integers) to align_corners=True
    normalised coordinates in [-1, 1]."""
    return np.array([[2.0 / (width - 1), 0.0, -1.0],
                     [0.0, 2.0 / (height - 1), -1.0],
                     [0.0, 0.0, 1.0]])


def crop_thetas(rois: list[Roi], size: int, width: int, height: int) -> np.ndarray:
    """(N, 2, 3) ``affine_grid`` matrices: normalised crop coordinates -> normalised image
    coordinates of a ``width`` x ``height`` image, for crops of ``size`` pixels."""
    to_image = _pixel_to_normalised(width, height)
    from_crop = np.linalg.inv(_pixel_to_normalised(size, size))
    thetas = []
    for roi in rois:
        m = np.vstack([roi.crop_to_image(size), [0.0, 0.0, 1.0]])  # crop px -> image px
        thetas.append((to_image @ m @ from_crop)[:2])
    return np.stack(thetas)


def frame_to_device(frame: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (1, 3, H, W) float32 tensor on ``device``, values 0..255.

    The upload is uint8 (a quarter of float's bytes); conversion happens on the device."""
    tensor = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    return tensor.permute(2, 0, 1).unsqueeze(0).float()


def crop_batch(frame: torch.Tensor, rois: list[Roi], size: int,
               is_bgr: bool = False) -> torch.Tensor:
    """Crops of ``rois`` from ``frame`` ((1, 3, H, W) float 0..255, see ``frame_to_device``).

    Returns:
        (N, 3, size, size) float32 RGB in [0, 1] on ``frame``'s device: what the networks take.
        Pixels outside the image repeat the nearest edge pixel (as ``BORDER_REPLICATE``).
    """
    if not rois:
        raise ValueError("crop_batch needs at least one ROI")
    _, _, height, width = frame.shape
    theta = torch.as_tensor(crop_thetas(rois, size, width, height), dtype=frame.dtype,
                            device=frame.device)
    grid = functional.affine_grid(theta, [len(rois), 3, size, size], align_corners=True)
    crops = functional.grid_sample(frame.expand(len(rois), -1, -1, -1), grid, mode="bilinear",
                          padding_mode="border", align_corners=True)
    if is_bgr:
        crops = crops.flip(1)
    return crops.mul_(1.0 / 255.0)
