"""Frame in, hands out: detection -> crop -> estimator -> lifting -> filter, ROS-free.

Public API: ``HandTracker(HandTrackerOptions(color_order="bgr")).process(image, intrinsics,
stamp, depth=None) -> HandTrackingResult``.
"""

from hand_pose_ros.pipeline.lifting import CameraIntrinsics
from hand_pose_ros.pipeline.tracker import (
    HandTracker,
    HandTrackerOptions,
    HandTrackingResult,
    TrackedHand,
)

__all__ = ["CameraIntrinsics", "HandTracker", "HandTrackerOptions", "HandTrackingResult",
           "TrackedHand"]
