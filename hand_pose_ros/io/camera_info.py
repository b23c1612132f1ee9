"""Camera calibration: image size + pinhole intrinsics + distortion, as in sensor_msgs/CameraInfo.

Files use the ROS calibration YAML format that camera drivers and camera_calibration write
(camera_calibration_parsers): image_width, image_height, camera_name, camera_matrix,
distortion_model, distortion_coefficients, rectification_matrix, projection_matrix.
Without a calibration, ``CameraCalibration.default_for`` states the assumption: an ideal
camera with a 60 degree horizontal field of view.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hand_pose_ros.pipeline.lifting import CameraIntrinsics

# Horizontal field of view assumed when a source has no calibration: a typical webcam.
DEFAULT_HORIZONTAL_FOV_DEG = 60.0


class CalibrationError(ValueError):
    """A calibration that cannot be used (missing key, non-finite values, zero size...)."""


@dataclass(frozen=True)
class CameraCalibration:
    """What a CameraInfo carries that we use: size (pixels), intrinsics, distortion."""

    width: int
    height: int
    intrinsics: CameraIntrinsics
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"image size must be > 0, got {self.width}x{self.height}")

    @classmethod
    def from_k(cls, width, height, k, distortion_model="plumb_bob", d=()) -> "CameraCalibration":
        """From a row-major 3x3 K (``sensor_msgs/CameraInfo.k``).

        Raises:
            CalibrationError: K is not 9 finite numbers with positive focal lengths.
        """
        try:
            intrinsics = CameraIntrinsics.from_matrix(k)
        except ValueError as error:
            raise CalibrationError(f"unusable camera matrix K: {error}") from error
        return cls(int(width), int(height), intrinsics, distortion_model,
                   tuple(float(v) for v in d))

    @classmethod
    def default_for(cls, width: int, height: int) -> "CameraCalibration":
        """An ideal camera with a 60 degree horizontal field of view, no distortion."""
        return cls(width, height,
                   CameraIntrinsics.from_fov(width, height, DEFAULT_HORIZONTAL_FOV_DEG))

    @property
    def k(self) -> np.ndarray:
        """3x3 camera matrix."""
        i = self.intrinsics
        return np.array([[i.fx, 0.0, i.cx], [0.0, i.fy, i.cy], [0.0, 0.0, 1.0]])

    def scaled_to(self, width: int, height: int) -> "CameraCalibration":
        """The same camera for its image resized to (width x height)."""
        sx, sy = width / self.width, height / self.height
        i = self.intrinsics
        return CameraCalibration(
            width, height, CameraIntrinsics(i.fx * sx, i.fy * sy, i.cx * sx, i.cy * sy),
            self.distortion_model, self.distortion,
        )


def load_calibration_yaml(path: str | Path) -> CameraCalibration:
    """Read a ROS camera calibration YAML.

    Raises:
        CalibrationError: the file cannot be read, misses a key or holds unusable values.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
        return CameraCalibration.from_k(
            data["image_width"],
            data["image_height"],
            data["camera_matrix"]["data"],
            data.get("distortion_model", "plumb_bob"),
            data.get("distortion_coefficients", {}).get("data", []),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise CalibrationError(f"cannot read camera calibration {path}: {error!r}") from error


def save_calibration_yaml(calibration: CameraCalibration, path: str | Path,
                          name: str = "camera") -> None:
    """Write ``calibration`` in the ROS camera calibration YAML format."""
    k = calibration.k
    data = {
        "image_width": calibration.width,
        "image_height": calibration.height,
        "camera_name": name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": k.ravel().tolist()},
        "distortion_model": calibration.distortion_model,
        "distortion_coefficients": {
            "rows": 1, "cols": len(calibration.distortion), "data": list(calibration.distortion),
        },
        "rectification_matrix": {"rows": 3, "cols": 3, "data": np.eye(3).ravel().tolist()},
        "projection_matrix": {
            "rows": 3, "cols": 4, "data": np.hstack([k, np.zeros((3, 1))]).ravel().tolist(),
        },
    }
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
