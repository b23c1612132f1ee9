"""Raw image buffers (as carried by sensor_msgs/Image) to numpy arrays and back.

cv_bridge is not installable with ROS 2 from PyPI, and its conversion is a reshape of the
buffer; this module does that reshape for the encodings cameras publish, and says clearly
what is wrong with a buffer it cannot use.
"""

from dataclasses import dataclass

import cv2
import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "yuv422_yuy2": (np.dtype(np.uint8), 2),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "yuv422_yuy2", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class ImageError(ValueError):
    """An image buffer that cannot be used (encoding, size or content)."""


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that define its pixels."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes | bytearray | memoryview | np.ndarray
    is_bigendian: bool = False


def to_numpy(image: RawImage) -> np.ndarray:
    """View the buffer as (H, W) or (H, W, C) without copying when the layout allows.

    Raises:
        ImageError: unknown encoding, zero size, or a buffer too short for height x step.
    """
    if image.encoding not in ENCODINGS:
        raise ImageError(
            f"unsupported image encoding '{image.encoding}'; supported: {sorted(ENCODINGS)}"
        )
    dtype, channels = ENCODINGS[image.encoding]
    if image.height <= 0 or image.width <= 0:
        raise ImageError(f"empty image ({image.width}x{image.height})")
    row_bytes = image.width * channels * dtype.itemsize
    if image.step < row_bytes:
        raise ImageError(
            f"step {image.step} is smaller than width x channels x bytes = {row_bytes}"
        )
    buffer = np.frombuffer(image.data, dtype=np.uint8)
    if buffer.size < image.height * image.step:
        raise ImageError(
            f"image data has {buffer.size} bytes, needs height x step = "
            f"{image.height * image.step} for {image.width}x{image.height} {image.encoding}"
        )
    rows = buffer[: image.height * image.step].reshape(image.height, image.step)[:, :row_bytes]
    array = rows.view(dtype.newbyteorder(">" if image.is_bigendian else "<"))
    array = array.reshape(image.height, image.width, channels)
    return array[:, :, 0] if channels == 1 else array


def to_bgr8(image: RawImage) -> np.ndarray:
    """A colour image as contiguous (H, W, 3) uint8 BGR, whatever its colour encoding.

    Raises:
        ImageError: a depth or other non-colour encoding, or a malformed buffer.
    """
    if image.encoding not in COLOUR_ENCODINGS:
        raise ImageError(
            f"'{image.encoding}' is not a colour encoding; expected one of {COLOUR_ENCODINGS}"
        )
    array = to_numpy(image)
    conversions = {
        "rgb8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGBA2BGR,
        "bgra8": cv2.COLOR_BGRA2BGR,
        "mono8": cv2.COLOR_GRAY2BGR,
        "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2,
    }
    if image.encoding in conversions:
        return cv2.cvtColor(array, conversions[image.encoding])
    return np.ascontiguousarray(array)


def to_depth_metres(image: RawImage) -> np.ndarray:
    """A depth image as (H, W) float32 metres; 0 or NaN mean no measurement.

    16-bit encodings are millimetres (REP 118); 32FC1 is metres.
    """
    if image.encoding not in DEPTH_ENCODINGS:
        raise ImageError(
            f"'{image.encoding}' is not a depth encoding; expected one of {DEPTH_ENCODINGS}"
        )
    array = to_numpy(image)
    if array.dtype == np.float32 and not array.dtype.isnative:
        array = array.astype(np.float32)
    return array.astype(np.float32) * (0.001 if array.dtype.kind == "u" else 1.0)


def from_bgr8(image: np.ndarray) -> RawImage:
    """Pack a (H, W, 3) uint8 BGR array as a bgr8 RawImage."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    return RawImage(height, width, "bgr8", width * 3, image.tobytes())
