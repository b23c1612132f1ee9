"""Drawing hands on images: the node's debug image and the demo's annotated video.

Colours are per finger and shared with the rviz markers (``FINGER_COLOURS_RGB``), so the
debug image, the video and rviz look alike.
"""

import cv2
import numpy as np

from hand_pose_ros.hand.joints import BONES, FINGER_OF_JOINT

# RGB in [0, 255]: thumb, index, middle, ring, little; then the palm/wrist.
FINGER_COLOURS_RGB: tuple[tuple[int, int, int], ...] = (
    (230, 60, 60),
    (240, 180, 40),
    (60, 200, 60),
    (50, 140, 240),
    (170, 80, 220),
)
PALM_COLOUR_RGB = (200, 200, 200)
MESH_COLOUR_RGB = (120, 200, 255)


def joint_colour_rgb(joint: int) -> tuple[int, int, int]:
    finger = FINGER_OF_JOINT[joint]
    return PALM_COLOUR_RGB if finger < 0 else FINGER_COLOURS_RGB[finger]


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def draw_mesh(
    image: np.ndarray, vertices_image: np.ndarray, faces: np.ndarray, alpha: float = 0.4
) -> None:
    """Blend the triangles of a projected mesh into ``image`` (BGR, in place).

    Args:
        vertices_image: (V, 2) pixel positions of the vertices.
        faces: (F, 3) vertex indices.
    """
    if not np.all(np.isfinite(vertices_image)):
        return
    overlay = image.copy()
    polygons = np.round(vertices_image[faces]).astype(np.int32)
    cv2.fillPoly(overlay, list(polygons), _bgr(MESH_COLOUR_RGB), lineType=cv2.LINE_AA)
    cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0, dst=image)


def draw_skeleton(image: np.ndarray, keypoints_image: np.ndarray, label: str = "") -> None:
    """Draw bones and joints of one hand (keypoints (21, 2) in pixels) on ``image`` (BGR)."""
    if not np.all(np.isfinite(keypoints_image)):
        return
    scale = max(1, round(min(image.shape[:2]) / 320))
    points = np.round(keypoints_image).astype(np.int32)
    for parent, child in BONES:
        colour = _bgr(joint_colour_rgb(child))
        cv2.line(image, tuple(points[parent]), tuple(points[child]), colour, 2 * scale,
                 cv2.LINE_AA)
    for joint, point in enumerate(points):
        cv2.circle(image, tuple(point), 3 * scale, _bgr(joint_colour_rgb(joint)), -1,
                   cv2.LINE_AA)
    if label:
        x, y = points[:, 0].min(), points[:, 1].min() - 6 * scale
        cv2.putText(image, label, (int(x), int(max(y, 12 * scale))), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, (255, 255, 255), scale, cv2.LINE_AA)
