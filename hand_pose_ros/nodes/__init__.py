"""rclpy nodes and the conversions between our core types and ROS messages.

Only this subpackage imports rclpy: everything that computes lives in the ROS-free core.
"""
