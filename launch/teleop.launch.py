"""Hand pose + retargeting for teleoperation: `ros2 launch hand_pose_ros teleop.launch.py
image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info`.

Nodes and parameters come from config/teleop.yaml (or config:=FILE), the file
`hand-pose run --config` reads too.
"""

from hand_pose_ros.graph import launch_description


def generate_launch_description():
    return launch_description(
        "teleop.yaml", {"image_topic": "image", "camera_info_topic": "camera_info"}
    )
