"""Inference runtimes behind one interface: ``create_backend(name, module, example_inputs)``."""

from hand_pose_ros.runtime.base import (
    BackendUnavailableError,
    InferenceBackend,
    available_backends,
    create_backend,
    register_backend,
)

__all__ = ["BackendUnavailableError", "InferenceBackend", "available_backends", "create_backend",
           "register_backend"]
