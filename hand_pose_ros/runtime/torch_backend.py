"""PyTorch eager backend: runs the module itself under ``torch.inference_mode``.

``torch.set_num_threads`` is process-wide; the backend sets it once at construction so the
intra-op pool matches the requested thread count (2 on the target machines).
"""

from __future__ import annotations

import numpy as np
import torch

from hand_pose_ros.runtime.base import InferenceBackend, register_backend


@register_backend
class TorchBackend(InferenceBackend):
    name = "torch"
    requires = {"torch": "torch"}

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, *, num_threads: int = 2,
                 cache_key: str | None = None, busy_wait: bool = True):
        del example_inputs, cache_key, busy_wait  # eager mode: one shared intra-op pool
        if num_threads > 0 and torch.get_num_threads() != num_threads:
            torch.set_num_threads(num_threads)
        self.module = module.eval()

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            outputs = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(o.numpy() for o in outputs)

    def describe(self) -> str:
        return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
