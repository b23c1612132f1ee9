"""Conversions between numpy arrays (the core's types) and our ROS messages.

Every function that builds a message refuses non-finite input (ValueError), so nothing
non-finite can reach a publisher through here.
"""

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, TransformStamped, Vector3
from scipy.spatial.transform import Rotation
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import Header

from hand_pose_ros.hand.joints import JOINT_NAMES, NUM_JOINTS, Handedness
from hand_pose_ros.msg import Hand, HandArray


def _finite(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf: refusing to build a message")
    return array


def _points(array: np.ndarray) -> list[Point]:
    # tolist() gives Python floats in one call: 4x faster than float() per element.
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(array, dtype=np.float64).tolist()]


@lru_cache(maxsize=8)
def _triangles(faces_bytes: bytes) -> tuple[MeshTriangle, ...]:
    """MeshTriangles of a faces array; cached because a model's faces never change."""
    faces = np.frombuffer(faces_bytes, dtype=np.uint32).reshape(-1, 3)
    return tuple(MeshTriangle(vertex_indices=f) for f in faces)


def hand_to_msg(
    *,
    side: Handedness | int,
    handedness_score: float,
    detection_score: float,
    tracking_id: int,
    keypoints: np.ndarray,
    keypoints_image: np.ndarray,
    keypoint_confidence: np.ndarray | None,
    wrist_quaternion_xyzw: np.ndarray,
    mesh_vertices: np.ndarray | None = None,
    mesh_faces: np.ndarray | None = None,
) -> Hand:
    """Build a ``Hand`` message.

    Args:
        side: RIGHT or LEFT.
        handedness_score, detection_score: probabilities in [0, 1].
        tracking_id: the hand's track id.
        keypoints: (21, 3) metres in the camera optical frame (the HandArray header frame).
        keypoints_image: (21, 2) pixels (column, row).
        keypoint_confidence: (21,) in [0, 1], or None for all ones.
        wrist_quaternion_xyzw: wrist frame orientation (see hand/frames.py), ROS order [x,y,z,w].
        mesh_vertices: (V, 3) metres in the camera frame, or None for no mesh.
        mesh_faces: (F, 3) vertex indices of the triangles, required with mesh_vertices.

    Raises:
        ValueError: wrong shapes, non-finite values, scores outside [0, 1], a zero quaternion.
    """
    side = Handedness(side)
    keypoints = _finite("keypoints", keypoints, (NUM_JOINTS, 3))
    keypoints_image = _finite("keypoints_image", keypoints_image, (NUM_JOINTS, 2))
    if keypoint_confidence is None:
        keypoint_confidence = np.ones(NUM_JOINTS)
    keypoint_confidence = _finite("keypoint_confidence", keypoint_confidence, (NUM_JOINTS,))
    quaternion = _finite("wrist_quaternion_xyzw", wrist_quaternion_xyzw, (4,))
    norm = np.linalg.norm(quaternion)
    if norm < 1e-6:
        raise ValueError("wrist_quaternion_xyzw is zero")
    quaternion = quaternion / norm
    scores = {"handedness_score": handedness_score, "detection_score": detection_score}
    for name, score in scores.items():
        if not 0.0 <= score <= 1.0:  # also rejects NaN
            raise ValueError(f"{name} must be in [0, 1], got {score}")

    mesh = Mesh()
    if mesh_vertices is not None:
        vertices = _finite("mesh_vertices", mesh_vertices, (len(mesh_vertices), 3))
        faces = np.asarray(mesh_faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"mesh_faces must have shape (F, 3), got {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError("mesh_faces index outside mesh_vertices")
        mesh.vertices = _points(vertices)
        mesh.triangles = list(_triangles(faces.astype(np.uint32).tobytes()))

    wrist = keypoints[0]
    return Hand(
        side=int(side),
        handedness=side.label,
        handedness_score=float(handedness_score),
        detection_score=float(detection_score),
        tracking_id=int(tracking_id),
        keypoints=_points(keypoints),
        keypoints_image=[Point(x=float(u), y=float(v), z=0.0) for u, v in keypoints_image],
        keypoint_confidence=keypoint_confidence.astype(np.float32),
        wrist_pose=Pose(
            position=Point(x=float(wrist[0]), y=float(wrist[1]), z=float(wrist[2])),
            orientation=Quaternion(
                x=float(quaternion[0]),
                y=float(quaternion[1]),
                z=float(quaternion[2]),
                w=float(quaternion[3]),
            ),
        ),
        mesh=mesh,
    )


def hand_array_msg(header: Header, model: str, hands: Sequence[Hand]) -> HandArray:
    """A ``HandArray`` with right hands before left ones (stable within each side)."""
    ordered = sorted(hands, key=lambda hand: hand.side)
    return HandArray(header=header, model=model, hands=ordered)


def keypoints_from_msg(hand: Hand) -> np.ndarray:
    """(21, 3) keypoints in metres in the HandArray header frame."""
    return np.array([[p.x, p.y, p.z] for p in hand.keypoints], dtype=np.float64)


def hand_frame_name(prefix: str, side: Handedness | int, joint: int) -> str:
    """TF frame of one joint of one hand: prefix + side + joint, e.g. ``hand_right_index_tip``."""
    return f"{prefix}{Handedness(side).label}_{JOINT_NAMES[joint]}"


def hand_transforms(header: Header, hand: Hand, prefix: str) -> list[TransformStamped]:
    """TF transforms of one hand: the wrist frame in the header frame, each joint in the wrist.

    The wrist frame has the message's ``wrist_pose``; each joint frame is a child of the wrist
    frame at the joint's position, with the wrist's orientation, so the TF tree reads
    camera -> <prefix><side>_wrist -> <prefix><side>_<joint>.
    """
    q = hand.wrist_pose.orientation
    rotation = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()  # scipy order is [x,y,z,w]
    keypoints = keypoints_from_msg(hand)
    in_wrist = (keypoints - keypoints[0]) @ rotation  # rotation.T @ (p - wrist), row-wise
    wrist_frame = hand_frame_name(prefix, hand.side, 0)
    position = hand.wrist_pose.position
    transforms = [TransformStamped(header=header, child_frame_id=wrist_frame)]
    transforms[0].transform.translation = Vector3(x=position.x, y=position.y, z=position.z)
    transforms[0].transform.rotation = hand.wrist_pose.orientation
    for joint in range(1, NUM_JOINTS):
        t = TransformStamped(child_frame_id=hand_frame_name(prefix, hand.side, joint))
        t.header.stamp = header.stamp
        t.header.frame_id = wrist_frame
        px, py, pz = in_wrist[joint]
        t.transform.translation = Vector3(x=float(px), y=float(py), z=float(pz))
        t.transform.rotation.w = 1.0
        transforms.append(t)
    return transforms
