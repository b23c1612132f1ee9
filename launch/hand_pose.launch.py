"""Hand pose on a camera: `ros2 launch hand_pose_ros hand_pose.launch.py
image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info`.

Nodes and parameters come from config/hand_pose.yaml (or config:=FILE), the file
`hand-pose run --config` reads too, so the two ways of starting cannot drift.
"""

from hand_pose_ros.graph import launch_description


def generate_launch_description():
    return launch_description(
        "hand_pose.yaml", {"image_topic": "image", "camera_info_topic": "camera_info",
                           "depth_topic": ""}
    )
