"""ONNX Runtime backend: exports the module to ONNX once, then runs it with onnxruntime (CPU).

Design: export uses ``torch.onnx.export`` (the torch.export-based exporter, needs ``onnx`` and
``onnxscript``) with a dynamic batch axis. The file is cached under ``cache_dir()/onnx`` keyed by
the module's ``cache_key`` (its weights), the source of the module's code and the torch version,
so it is exported once per machine and a stale export is never reused. ``export_onnx`` and
``cached_onnx`` are public so other tools (TensorRT engine builds, ``hand-pose export``) get the
same file. ``device="cuda"`` needs the onnxruntime-gpu build (its CUDAExecutionProvider).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from hand_pose_ros.paths import cache_dir
from hand_pose_ros.runtime.base import BackendUnavailableError, InferenceBackend, register_backend

log = logging.getLogger(__name__)

# ONNX opset of every export: the lowest the torch.export-based exporter writes natively
# (it cannot convert these graphs down to 17), and within TensorRT 10's parser range (9-20).
OPSET = 18
# Revision of what ``export_onnx`` writes, part of cached file names: bump it when the export
# changes, so caches made by older code are never reused.
EXPORT_REVISION = 2


def export_onnx(module: torch.nn.Module, example_inputs: tuple, path: Path, *,
                dynamic_batch: bool = True, max_batch: int = 64, opset: int = OPSET,
                external_data: bool = False) -> Path:
    """Export ``module`` to ``path``: opset ``opset``, every input's batch axis dynamic
    (1..``max_batch``) or fixed to the example's, all other dimensions static. Weights are
    embedded unless ``external_data`` (protobuf caps a file at 2 GB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
        # An example batch of 1 lets the exporter specialise the batch axis to 1, silently,
        # in models whose code broadcasts over it (seen with the seed models): trace with 2.
        example_inputs = tuple(torch.cat([x[:1], x[:1]]) for x in example_inputs)
    # Write to a temporary name, then rename: concurrent exporters never collide and a
    # half-written file is never picked up as cached. External data is named after the file
    # the exporter writes, so such an export goes to its final name directly.
    target = path if external_data else path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    # The exporter prints progress and warns about things irrelevant here (torchvision ops).
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(example_inputs), str(target), dynamo=True,
                              external_data=external_data, verbose=False, opset_version=opset,
                              dynamic_shapes=dynamic_shapes)
    finally:
        exporter_log.setLevel(level)
    if dynamic_batch:
        _check_dynamic_batch(target, type(module).__name__)
    target.replace(path)
    return path


def _check_dynamic_batch(path: Path, name: str) -> None:
    """Raise when the exporter fixed the batch axis of an input that should stay dynamic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            path.unlink(missing_ok=True)
            raise RuntimeError(
                f"ONNX export of {name}: input {tensor.name!r} got a static batch of "
                f"{dims[0].dim_value}; the module's code depends on the batch size (make it "
                "batch-agnostic, e.g. reshape with -1 instead of the size)")


def cached_onnx(module: torch.nn.Module, example_inputs: tuple, cache_key: str | None) -> Path:
    """The module's ONNX file (dynamic batch) in ``cache_dir()/onnx``, exported on first use.

    The file name changes whenever the weights (``cache_key``), the code defining the module or
    torch change, so a stale export is never reused; older exports of the same weights go."""
    path = cache_dir() / "onnx" / f"{_artifact_name(module, cache_key)}.onnx"
    if not path.is_file():
        log.info("exporting %s to %s", type(module).__name__, path)
        export_onnx(module, example_inputs, path)
        if cache_key is not None:
            for stale in path.parent.glob(f"{cache_key}-*.onnx"):
                if stale != path:
                    stale.unlink(missing_ok=True)
    return path


def _artifact_name(module: torch.nn.Module, cache_key: str | None) -> str:
    if cache_key is None:  # nothing stable to key on: a one-off export
        return f"{type(module).__name__}-{id(module)}"
    source = inspect.getsource(inspect.getmodule(type(module)))
    code = hashlib.sha256(source.encode()).hexdigest()[:8]
    return f"{cache_key}-code{code}-torch{torch.__version__}-opset{OPSET}-r{EXPORT_REVISION}"


@register_backend
class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"
    requires = {"onnxruntime": "onnxruntime", "onnx": "onnx", "onnxscript": "onnxscript"}

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, *, num_threads: int = 2,
                 cache_key: str | None = None, busy_wait: bool = True, device: str = "cpu",
                 precision: str = "fp32"):
        import onnxruntime as ort

        if precision != "fp32":
            raise BackendUnavailableError(f"onnxruntime backend runs fp32 only, not {precision}")
        providers = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
        if device not in providers:
            raise ValueError(f"device must be one of {tuple(providers)}, got {device!r}")
        if providers[device] not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"onnxruntime {ort.__version__} has no {providers[device]} here "
                "(the GPU build is the onnxruntime-gpu package)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not busy_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if cache_key is None:
            # Nothing stable to key a cached file on (a one-off module): export to a temporary
            # folder so that such exports never pile up in the cache.
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{type(module).__name__}.onnx"
                export_onnx(module, example_inputs, path)
                self.session = ort.InferenceSession(str(path), options,
                                                    providers=[providers[device]])
            path = None
        else:
            path = cached_onnx(module, example_inputs, cache_key)
            self.session = ort.InferenceSession(str(path), options, providers=[providers[device]])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.path = path
        self.device = device
        self._version = ort.__version__
        self._threads = num_threads

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        feed = {n: np.ascontiguousarray(x, dtype=np.float32)
                for n, x in zip(self.input_names, inputs, strict=True)}
        return tuple(self.session.run(None, feed))

    def describe(self) -> str:
        return f"onnxruntime {self._version} ({self._threads} intra-op threads)"
