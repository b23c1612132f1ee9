"""ONNX Runtime backend: exports the module to ONNX once, then runs it with onnxruntime (CPU).

Design: export uses ``torch.onnx.export`` (the torch.export-based exporter, needs ``onnx`` and
``onnxscript``) with a dynamic batch axis. The file is cached under ``cache_dir()/onnx`` keyed by
the module's ``cache_key`` (its weights), the source of the module's code and the torch version,
so it is exported once per machine and a stale export is never reused. ``export_onnx`` is public
so other tools (TensorRT engine builds, users) can get the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hand_pose_ros.paths import cache_dir
from hand_pose_ros.runtime.base import InferenceBackend, register_backend

log = logging.getLogger(__name__)


def export_onnx(module: torch.nn.Module, example_inputs: tuple, path: Path) -> Path:
    """Export ``module`` to ``path`` (single file, opset 18+, dynamic batch on every input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=64)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")  # concurrent exporters never collide
    # The exporter prints progress and warns about things irrelevant here (torchvision ops).
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(example_inputs), str(tmp), dynamo=True,
                              external_data=False, verbose=False,
                              dynamic_shapes=tuple({0: batch} for _ in example_inputs))
    finally:
        exporter_log.setLevel(level)
    tmp.replace(path)  # atomic: a half-written file is never picked up as cached
    return path


@register_backend
class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"
    requires = {"onnxruntime": "onnxruntime", "onnx": "onnx", "onnxscript": "onnxscript"}

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, *, num_threads: int = 2,
                 cache_key: str | None = None, busy_wait: bool = True):
        import onnxruntime as ort

        path = cache_dir() / "onnx" / f"{self._artifact_name(module, cache_key)}.onnx"
        if not path.is_file():
            log.info("exporting %s to %s", type(module).__name__, path)
            export_onnx(module, example_inputs, path)
            if cache_key is not None:  # drop exports of older code or torch for the same weights
                for stale in path.parent.glob(f"{cache_key}-*.onnx"):
                    if stale != path:
                        stale.unlink(missing_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not busy_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.path = path
        self._version = ort.__version__
        self._threads = num_threads

    @staticmethod
    def _artifact_name(module: torch.nn.Module, cache_key: str | None) -> str:
        """File name that changes whenever the weights (``cache_key``), the code defining the
        module, or torch change, so a stale export is never reused."""
        if cache_key is None:  # nothing stable to key on: a one-off export
            return f"{type(module).__name__}-{id(module)}"
        source = inspect.getsource(inspect.getmodule(type(module)))
        code = hashlib.sha256(source.encode()).hexdigest()[:8]
        return f"{cache_key}-code{code}-torch{torch.__version__}"

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        feed = {n: np.ascontiguousarray(x, dtype=np.float32)
                for n, x in zip(self.input_names, inputs, strict=True)}
        return tuple(self.session.run(None, feed))

    def describe(self) -> str:
        return f"onnxruntime {self._version} ({self._threads} intra-op threads)"
