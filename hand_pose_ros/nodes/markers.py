"""rviz/Foxglove views of a HandArray: skeleton and mesh markers, and a teleop PoseArray.

Everything is built from the HandArray message itself (keypoints, wrist pose, mesh), so the
markers show exactly what consumers receive.
"""

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, PoseArray
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from hand_pose_ros.hand.joints import BONES, NUM_JOINTS
from hand_pose_ros.msg import HandArray
from hand_pose_ros.viz import MESH_COLOUR_RGB, joint_colour_rgb

JOINT_DIAMETER_M = 0.012
BONE_WIDTH_M = 0.006
# Markers vanish on their own if the node stops publishing (e.g. the camera stops).
MARKER_LIFETIME = Duration(sec=0, nanosec=500_000_000)


def _colour(rgb: tuple[int, int, int], alpha: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=rgb[0] / 255, g=rgb[1] / 255, b=rgb[2] / 255, a=alpha)


# Colours never change: build them once, not per frame.
JOINT_COLOURS = [_colour(joint_colour_rgb(j)) for j in range(NUM_JOINTS)]
BONE_COLOURS = [c for _, child in BONES for c in [_colour(joint_colour_rgb(child))] * 2]
MESH_COLOUR = _colour(MESH_COLOUR_RGB, 0.6)


def hand_markers(hands: HandArray, namespace: str = "hands") -> MarkerArray:
    """Per hand: joints (SPHERE_LIST), bones (LINE_LIST), coloured by finger, and the mesh
    (TRIANGLE_LIST) when the hand has one. The first marker clears the previous frame's."""
    markers = [Marker(header=hands.header, ns=namespace, action=Marker.DELETEALL)]
    for index, hand in enumerate(hands.hands):
        base = dict(header=hands.header, ns=f"{namespace}/{hand.handedness}",
                    lifetime=MARKER_LIFETIME, action=Marker.ADD)
        base["pose"] = Pose()
        base["pose"].orientation.w = 1.0
        joints = Marker(id=3 * index, type=Marker.SPHERE_LIST, **base)
        joints.scale.x = joints.scale.y = joints.scale.z = JOINT_DIAMETER_M
        joints.points = list(hand.keypoints)
        joints.colors = JOINT_COLOURS
        bones = Marker(id=3 * index + 1, type=Marker.LINE_LIST, **base)
        bones.scale.x = BONE_WIDTH_M
        bones.points = [hand.keypoints[j] for bone in BONES for j in bone]
        bones.colors = BONE_COLOURS
        markers += [joints, bones]
        if hand.mesh.triangles:
            mesh = Marker(id=3 * index + 2, type=Marker.TRIANGLE_LIST, **base)
            mesh.scale.x = mesh.scale.y = mesh.scale.z = 1.0
            mesh.color = MESH_COLOUR
            vertices = hand.mesh.vertices
            corners = np.concatenate([t.vertex_indices for t in hand.mesh.triangles]).tolist()
            mesh.points = [vertices[i] for i in corners]
            markers.append(mesh)
    return MarkerArray(markers=markers)


def hand_pose_array(hands: HandArray) -> PoseArray:
    """Per hand (right first): the wrist pose, then joints 1-20 at their positions with the
    wrist's orientation - 21 poses per hand, in the HandArray header frame."""
    poses = []
    for hand in hands.hands:
        poses.append(hand.wrist_pose)
        for point in hand.keypoints[1:]:
            poses.append(Pose(position=Point(x=point.x, y=point.y, z=point.z),
                              orientation=hand.wrist_pose.orientation))
    return PoseArray(header=hands.header, poses=poses)
