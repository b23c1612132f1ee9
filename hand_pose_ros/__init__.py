"""hand_pose_ros: real-time 3D hand pose, hand mesh and robot-hand retargeting for ROS 2.

The package holds both our Python modules and the Python code generated for our messages
(``hand_pose_ros.msg``). When the modules are imported from a source checkout, the generated
message modules live in the installed copy of the package; extending ``__path__`` lets
``hand_pose_ros.msg`` resolve there while every other module comes from the checkout.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
