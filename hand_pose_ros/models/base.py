"""The one estimator interface, its result type, and the model registry.

Design (in the spirit of timm's ``create_model``):
- Every hand estimator takes a batch of square RGB crops (uint8, the estimator's ``input_size``)
  and returns a ``HandEstimate``: root-relative 3D joints in metres, 2D joints in crop pixels,
  optional mesh vertices, per-hand scores and handedness. Pipelines, nodes, bench and eval use
  only this interface and never branch on a model's name.
- ``@register_model`` registers a factory function under its own name; ``create_model(name,
  **overrides)`` builds any registered model. Modules that define models are imported lazily
  (``BUILTIN_MODEL_MODULES``), so importing the registry costs nothing and a model with heavy
  dependencies only loads when asked for.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Modules whose import registers models; a new model family adds its module here.
BUILTIN_MODEL_MODULES: tuple[str, ...] = (
    "hand_pose_ros.models.mediapipe",
    "hand_pose_ros.models.rejshand",
    "hand_pose_ros.models.ehpe",
    "hand_pose_ros.models.cliphand",
    "hand_pose_ros.models.handformer2t",
    "hand_pose_ros.models.dfl",
)

_MODELS: dict[str, Callable[..., HandEstimator]] = {}
# Built-in model modules that failed to import -> the error, so one broken or missing model
# module leaves every other model usable and is reported when asked for.
_FAILED_MODULES: dict[str, str] = {}


@dataclass
class HandEstimate:
    """What an estimator returns for N crops. Every array's first axis is the crop index.

    joints_3d: (N, 21, 3) metres, relative to the wrist (joint 0 is at the origin), in the crop's
        axes: x right, y down (image directions of the crop), z away from the camera.
    joints_2d: (N, 21, 2) crop pixels (x = column, y = row, (0, 0) the top-left pixel's centre).
    scores: (N,) probability that the crop holds a hand.
    right_hand: (N,) probability that the hand is a right hand, for an unmirrored camera image.
    joint_confidence: (N, 21) per-joint confidence in [0, 1] (ones when the model has none).
    vertices: (N, V, 3) mesh vertices in metres, same origin and axes as ``joints_3d``, or None
        when the model has no mesh head.
    """

    joints_3d: np.ndarray
    joints_2d: np.ndarray
    scores: np.ndarray
    right_hand: np.ndarray
    joint_confidence: np.ndarray
    vertices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)


class HandEstimator(ABC):
    """A network that estimates one hand per crop.

    Attributes:
        input_size: side in pixels of the square crops it takes.
        name: registered model name.
        backend: the ``InferenceBackend`` running the network (for reports).
    """

    input_size: int
    name: str

    @abstractmethod
    def estimate(self, crops: np.ndarray) -> HandEstimate:
        """Estimate hands in crops of shape (N, input_size, input_size, 3), uint8 RGB."""


def register_model(factory: Callable[..., HandEstimator]) -> Callable[..., HandEstimator]:
    """Decorator: register ``factory`` under its function name."""
    _MODELS[factory.__name__] = factory
    return factory


def _load_builtins() -> None:
    for module in BUILTIN_MODEL_MODULES:
        if module in _FAILED_MODULES:
            continue
        try:
            importlib.import_module(module)
        except Exception as error:  # any import failure of one model must not hide the others
            _FAILED_MODULES[module] = f"{type(error).__name__}: {error}"
            log.warning("model module %s failed to import (%s); its models are unavailable",
                        module, _FAILED_MODULES[module])


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    _load_builtins()
    return sorted(_MODELS)


def create_model(name: str, **overrides) -> HandEstimator:
    """Build the registered model ``name``; ``overrides`` replace its default configuration
    (e.g. ``backend="torch"``, ``num_threads=2``).

    Raises:
        ValueError: unknown name.
    """
    _load_builtins()
    if name not in _MODELS:
        failed = "".join(f"; {m} failed to import: {e}" for m, e in _FAILED_MODULES.items())
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_MODELS)}{failed}")
    return _MODELS[name](**overrides)
