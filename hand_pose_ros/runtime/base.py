"""One interface for running a network, whatever runtime executes it.

Design:
- ``InferenceBackend`` wraps one ``torch.nn.Module`` (the single source of truth for every model)
  and runs it on numpy inputs, returning numpy outputs: ``backend(*arrays) -> tuple[arrays]``.
- Backends register themselves by name with ``@register_backend``. ``create_backend(name, ...)``
  imports the built-in backend modules lazily (so a missing runtime costs nothing until chosen)
  and raises ``BackendUnavailableError`` naming the package to install when it is absent.
- A new runtime is one new module with one ``@register_backend`` class, plus one line in
  ``BUILTIN_BACKENDS``; callers only pass its name. Runtime-specific options (``device``,
  ``precision``, CUDA graphs, TensorRT's batch profile) are keyword options that
  ``create_backend`` passes through to the backend class unchanged.
- Backends on a GPU also take torch tensors already on their device (``run_tensors``), so
  pre-processing done on the GPU never goes back through host memory.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

# name -> module that defines (and registers) it; imported on first use.
BUILTIN_BACKENDS: dict[str, str] = {
    "torch": "hand_pose_ros.runtime.torch_backend",
    "onnxruntime": "hand_pose_ros.runtime.onnx_backend",
    "tensorrt": "hand_pose_ros.runtime.tensorrt_backend",
}

_REGISTRY: dict[str, type[InferenceBackend]] = {}


class BackendUnavailableError(RuntimeError):
    """The chosen runtime is not installed; the message says what to install."""


class InferenceBackend(ABC):
    """Runs one network. Subclasses set ``name`` and ``requires`` (import name -> pip name).

    Attributes:
        device: where the network runs, "cpu" or "cuda".
        num_parameters: parameters of the wrapped module (set by ``create_backend``).
    """

    name: ClassVar[str]
    requires: ClassVar[dict[str, str]] = {}
    device: str = "cpu"
    num_parameters: int = 0

    @classmethod
    def check_available(cls) -> None:
        """Raise ``BackendUnavailableError`` when a package this backend needs is missing."""
        missing = [pip for module, pip in cls.requires.items()
                   if importlib.util.find_spec(module) is None]
        if missing:
            raise BackendUnavailableError(
                f"runtime {cls.name!r} needs {', '.join(missing)}: "
                f"pip install {' '.join(missing)} (or choose another backend: "
                f"{', '.join(sorted(BUILTIN_BACKENDS))})")

    @abstractmethod
    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run the network on float32 arrays; returns its outputs in the module's order."""

    def run_tensors(self, *inputs):
        """Run on torch tensors (any device); returns torch tensors.

        The default goes through numpy and returns CPU tensors; backends that run on a GPU
        (torch, tensorrt) override it to take and return tensors on the device."""
        import torch

        outputs = self(*(np.ascontiguousarray(x.detach().cpu().numpy()) for x in inputs))
        return tuple(torch.from_numpy(o) for o in outputs)

    def describe(self) -> str:
        """Runtime name and version, for benchmark reports."""
        return self.name


def register_backend(cls: type[InferenceBackend]) -> type[InferenceBackend]:
    """Class decorator: make ``cls`` available to ``create_backend`` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_backends() -> list[str]:
    """Names of the backends whose runtime is installed."""
    names = []
    for name in sorted(set(BUILTIN_BACKENDS) | set(_REGISTRY)):
        try:
            _backend_class(name).check_available()
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def _backend_class(name: str) -> type[InferenceBackend]:
    if name not in _REGISTRY and name in BUILTIN_BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])
    if name not in _REGISTRY:
        known = sorted(set(BUILTIN_BACKENDS) | set(_REGISTRY))
        raise ValueError(f"unknown backend {name!r}; choose one of {known}")
    return _REGISTRY[name]


def create_backend(name: str, module, example_inputs: tuple, *, num_threads: int = 2,
                   cache_key: str | None = None, busy_wait: bool = True,
                   **options) -> InferenceBackend:
    """Build the backend ``name`` for a ``torch.nn.Module``.

    Args:
        name: a registered backend name ("torch", "onnxruntime", ...).
        module: the network, in eval mode.
        example_inputs: torch tensors with the input shapes (batch may vary at run time).
        num_threads: CPU threads for the runtime's intra-op pool.
        cache_key: stable identity of the module's weights, used by backends that compile or
            export once and reuse the artifact (e.g. an ONNX file in the cache folder).
        busy_wait: let the runtime's idle worker threads spin between calls. Right for a network
            run back to back (lowest latency); wrong for one run now and then, whose spinning
            threads would steal the cores of the network that runs next (backends with one
            shared thread pool ignore it).
        **options: backend-specific, passed to the backend class unchanged, e.g.
            ``device="cuda"``, ``precision="fp16"``, ``cuda_graphs=True`` (torch),
            ``max_batch=8`` (tensorrt). A backend rejects options it does not know (TypeError).

    Raises:
        ValueError: for an unknown name or a bad option value. BackendUnavailableError: runtime
            not installed, or it cannot run on this machine as asked (e.g. no CUDA device).
    """
    cls = _backend_class(name)
    cls.check_available()
    backend = cls(module, example_inputs, num_threads=num_threads, cache_key=cache_key,
                  busy_wait=busy_wait, **options)
    backend.num_parameters = sum(p.numel() for p in module.parameters())
    return backend
