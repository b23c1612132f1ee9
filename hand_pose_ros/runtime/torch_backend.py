"""PyTorch backend: runs the module itself under ``torch.inference_mode``, on CPU or CUDA.

Design:
- ``device="cpu"`` (default) is eager mode; ``torch.set_num_threads`` is process-wide, so the
  backend sets it once at construction to the requested thread count (2 on the target machines).
- ``device="cuda"`` moves the module to the GPU; ``precision="fp16"`` casts its weights to half
  (inputs are cast on the device, outputs come back as float32). ``cuda_graphs=True`` captures
  one CUDA graph per input shape (i.e. per batch size) into static input/output buffers on first
  use and replays it afterwards: one launch instead of one per layer, which is what bounds a
  small network's latency on a big GPU.
- ``run_tensors`` takes tensors already on the GPU (the tracker's GPU crops) and returns GPU
  tensors; ``__call__`` is the numpy interface of every backend.
"""

from __future__ import annotations

import numpy as np
import torch

from hand_pose_ros.runtime.base import BackendUnavailableError, InferenceBackend, register_backend

DEVICES = ("cpu", "cuda")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


def check_cuda() -> None:
    """Raise ``BackendUnavailableError`` (one line) when torch cannot use a CUDA device."""
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BackendUnavailableError(
            f"device 'cuda' unavailable: torch {torch.__version__} ({build}) sees no CUDA GPU")


class _GraphRunner:
    """One captured CUDA graph for one set of input shapes: static inputs in, static outputs."""

    def __init__(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
        self.inputs = tuple(x.clone() for x in inputs)
        # Warm up on a side stream first (cuDNN picks its algorithms, the allocator fills its
        # pools), as torch.cuda.graphs requires before capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                module(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            outputs = module(*self.inputs)
        self.outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        for static, x in zip(self.inputs, inputs, strict=True):
            static.copy_(x)
        self.graph.replay()
        # The next replay overwrites the static outputs: hand out copies.
        return tuple(o.clone() for o in self.outputs)


@register_backend
class TorchBackend(InferenceBackend):
    name = "torch"
    requires = {"torch": "torch"}

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, *, num_threads: int = 2,
                 cache_key: str | None = None, busy_wait: bool = True, device: str = "cpu",
                 precision: str = "fp32", cuda_graphs: bool = False):
        del example_inputs, cache_key, busy_wait  # eager mode: one shared intra-op pool
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
        if device == "cpu" and (precision != "fp32" or cuda_graphs):
            # CPU half-precision convolutions are slower than fp32; graphs are CUDA-only.
            raise BackendUnavailableError("fp16 and CUDA graphs need device='cuda' (torch on "
                                          "CPU runs fp32 only)")
        if device == "cuda":
            check_cuda()
        if num_threads > 0 and torch.get_num_threads() != num_threads:
            torch.set_num_threads(num_threads)
        self.device = device
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.cuda_graphs = cuda_graphs
        self.module = module.eval().to(device=device, dtype=self.dtype)
        self._graphs: dict[tuple, _GraphRunner] = {}

    def run_tensors(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run on tensors (any device, float); returns float32 tensors on ``self.device``."""
        inputs = tuple(x.to(device=self.device, dtype=self.dtype, non_blocking=True)
                       for x in inputs)
        with torch.inference_mode():
            if self.cuda_graphs:
                key = tuple(x.shape for x in inputs)
                if key not in self._graphs:
                    self._graphs[key] = _GraphRunner(self.module, inputs)
                outputs = self._graphs[key](inputs)
            else:
                outputs = self.module(*inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(o.float() for o in outputs)

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        tensors = (torch.from_numpy(np.ascontiguousarray(x)) for x in inputs)
        return tuple(o.cpu().numpy() for o in self.run_tensors(*tensors))

    def describe(self) -> str:
        if self.device == "cpu":
            return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        return (f"torch {torch.__version__} cuda {self.precision}{graphs} "
                f"({torch.cuda.get_device_name()})")
