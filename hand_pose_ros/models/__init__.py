"""Hand estimators behind one interface, built by name with ``create_model``."""

from hand_pose_ros.models.base import (
    HandEstimate,
    HandEstimator,
    create_model,
    list_models,
    register_model,
)

__all__ = ["HandEstimate", "HandEstimator", "create_model", "list_models", "register_model"]
