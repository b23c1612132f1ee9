"""Test-wide settings: keep ROS traffic on loopback, in a domain of this test run's own.

Set before any test imports rclpy, and inherited by the processes tests start, so that
publishers and subscribers of one run find each other and nobody else's.
"""

import os

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Domain ids 0-101 are safe for any number of participants; derive one from the process id so
# two test runs on one machine do not hear each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def mediapipe_weights():
    """The MediaPipe weights (`make setup` fetches them); skip only where they cannot be had."""
    from hand_pose_ros.models.weights import WeightsError, fetch_weights

    try:
        fetch_weights()
    except WeightsError as error:
        pytest.skip(f"MediaPipe weights absent and cannot be fetched: {error}")
