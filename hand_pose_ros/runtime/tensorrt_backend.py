"""TensorRT backend: ONNX -> serialized engine (cached) -> execution on a CUDA stream.

Design, following the TensorRT Python API (TensorRT >= 10, the version in JetPack >= 6.1):
- Build: the module's cached ONNX file (``onnx_backend.cached_onnx``, dynamic batch) is parsed
  with ``trt.OnnxParser`` into a network; the ``BuilderConfig`` enables FP16 (default) or INT8
  (with an ``IInt8EntropyCalibrator2`` fed by calibration batches and backed by a calibration
  cache file, so calibration runs once), and one optimisation profile covers batch
  1..``max_batch`` hands (optimised for ``opt_batch``). ``build_serialized_network`` gives the
  engine bytes.
- Engine cache: ``cache_dir()/tensorrt/<key>.engine``; the key (``engine_cache_key``) hashes the
  ONNX file, the TensorRT version, the GPU name, the precision and the profile, because an
  engine is only valid for exactly that combination.
- Run: device buffers are torch CUDA tensors sized for ``max_batch``, allocated once; every call
  sets the input shapes, binds each tensor by NAME (``set_tensor_address``) and runs
  ``execute_async_v3`` on the backend's own CUDA stream. No dependency beyond torch + tensorrt.
The helpers that need no TensorRT (cache key, profile shapes, calibration cache I/O) are plain
functions, tested everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from hand_pose_ros.paths import cache_dir
from hand_pose_ros.runtime.base import (
    BUILTIN_BACKENDS,
    BackendUnavailableError,
    InferenceBackend,
    register_backend,
)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
SKIP_REASON = "TensorRT builder not installable on this machine (see README)"
INSTALL_HINT = ("on Jetson use JetPack's TensorRT (sudo apt install python3-libnvinfer), on a "
                "desktop GPU pip install tensorrt")

Shape = tuple[int, ...]


def profile_shapes(example_shapes: dict[str, Shape], max_batch: int,
                   opt_batch: int = 1) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of every input for one optimisation profile: batch (axis 0) from 1
    to ``max_batch``, optimised for ``opt_batch``; the other axes as in ``example_shapes``.

    Raises:
        ValueError: ``opt_batch`` outside 1..``max_batch``.
    """
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    return {name: ((1, *shape[1:]), (opt_batch, *shape[1:]), (max_batch, *shape[1:]))
            for name, shape in example_shapes.items()}


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     profile: dict[str, tuple[Shape, Shape, Shape]]) -> str:
    """File stem of an engine: readable prefix + a hash of everything the engine depends on.

    An engine is specific to the network (its ONNX bytes), the TensorRT version that built it,
    the GPU model, the precision and the optimisation profile; any change gives a new key.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    identity = "|".join([onnx_sha256, trt_version, gpu_name, precision,
                         repr(sorted(profile.items()))])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    max_batch = max(shapes[2][0] for shapes in profile.values())
    return f"{onnx_sha256[:12]}-{precision}-b{max_batch}-trt{trt_version}-{digest}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_calibration_cache(path: Path) -> bytes | None:
    """The INT8 calibration cache at ``path``, or None when there is none (or it is empty)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return data or None


def write_calibration_cache(path: Path, data: bytes) -> None:
    """Store an INT8 calibration cache atomically (a reader never sees half a file)."""
    _write_atomic(path, data)


def _write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(bytes(data))
    tmp.replace(path)


def check_tensorrt() -> None:
    """Raise ``BackendUnavailableError`` (one line) unless the TensorRT builder is importable."""
    if importlib.util.find_spec("tensorrt") is None:
        others = sorted(set(BUILTIN_BACKENDS) - {"tensorrt"})
        raise BackendUnavailableError(
            f"runtime 'tensorrt' needs the TensorRT Python package, which is not installed: "
            f"{INSTALL_HINT} (or choose another backend: {', '.join(others)})")
    import tensorrt as trt

    if not hasattr(trt, "Builder"):  # tensorrt_lean / _dispatch: run engines, cannot build
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} here is a lean/dispatch runtime without the builder: "
            f"{INSTALL_HINT}")


def _entropy_calibrator(trt, batches: Iterable[tuple[np.ndarray, ...]], cache_path: Path):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (tuples of float32 arrays, one per
    input, all with the same batch size) and backed by the cache file ``cache_path``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._pending = list(batches)
            self._batch_size = len(self._pending[0][0]) if self._pending else 1
            self._device: list[torch.Tensor] = []  # kept alive while TensorRT reads them

        def get_batch_size(self) -> int:
            return self._batch_size

        def get_batch(self, names):
            if not self._pending:
                return None  # no more data: calibration ends
            self._device = [torch.from_numpy(np.ascontiguousarray(a, np.float32)).cuda()
                            for a in self._pending.pop(0)]
            return [t.data_ptr() for t in self._device]

        def read_calibration_cache(self):
            return read_calibration_cache(cache_path)

        def write_calibration_cache(self, cache) -> None:
            write_calibration_cache(cache_path, cache)

    return EntropyCalibrator()


def build_engine(onnx_path: Path, engine_path: Path, precision: str,
                 profile: dict[str, tuple[Shape, Shape, Shape]], *,
                 calibration_batches: Iterable[tuple[np.ndarray, ...]] | None = None,
                 calibration_cache: Path | None = None, workspace_mb: int = 1024) -> Path:
    """Build a serialized TensorRT engine from an ONNX file and write it to ``engine_path``.

    Args:
        precision: "fp16" (default elsewhere), "fp32", or "int8" (FP16 also enabled, so layers
            INT8 cannot run fall back to half rather than float).
        profile: input name -> (min, opt, max) shapes, see ``profile_shapes``.
        calibration_batches: INT8 only: representative inputs; not needed when
            ``calibration_cache`` already holds a calibration of this network.
        calibration_cache: INT8 calibration cache file (read first, written after calibrating).
        workspace_mb: builder scratch memory limit.

    Raises:
        BackendUnavailableError: no TensorRT builder. RuntimeError: the parser or builder failed
            (the message holds the parser's errors).
    """
    check_tensorrt()
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    optimisation = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        optimisation.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimisation)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_cache is None:
            raise ValueError("int8 needs a calibration_cache path (read or written)")
        if read_calibration_cache(calibration_cache) is None and calibration_batches is None:
            raise ValueError(f"int8: no calibration cache at {calibration_cache}; pass "
                             "calibration_batches (representative crops) to create it")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _entropy_calibrator(trt, calibration_batches or (),
                                                     calibration_cache)
        config.set_calibration_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    _write_atomic(engine_path, serialized)
    return engine_path


@register_backend
class TensorRTBackend(InferenceBackend):
    """A TensorRT engine of the module, built on first use and cached (see module docstring)."""

    name = "tensorrt"
    requires = {"tensorrt": "tensorrt"}

    @classmethod
    def check_available(cls) -> None:
        check_tensorrt()

    def __init__(self, module: torch.nn.Module, example_inputs: tuple, *, num_threads: int = 2,
                 cache_key: str | None = None, busy_wait: bool = True, device: str = "cuda",
                 precision: str = "fp16", max_batch: int = 8, opt_batch: int = 1,
                 calibration_batches: Iterable[tuple[np.ndarray, ...]] | None = None,
                 workspace_mb: int = 1024):
        del num_threads, busy_wait  # the GPU does the work
        import onnx
        import tensorrt as trt

        from hand_pose_ros.runtime.onnx_backend import cached_onnx
        from hand_pose_ros.runtime.torch_backend import check_cuda

        if device != "cuda":
            raise BackendUnavailableError(f"TensorRT runs on CUDA GPUs only, not {device!r}")
        check_cuda()
        onnx_path = cached_onnx(module, example_inputs, cache_key)
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        shapes = {n: tuple(x.shape) for n, x in zip(self.input_names, example_inputs,
                                                     strict=True)}
        profile = profile_shapes(shapes, max_batch, opt_batch)
        onnx_hash = file_sha256(onnx_path)
        gpu = torch.cuda.get_device_name()
        key = engine_cache_key(onnx_hash, trt.__version__, gpu, precision, profile)
        engine_path = cache_dir() / "tensorrt" / f"{key}.engine"
        if not engine_path.is_file():
            log.info("building TensorRT %s engine %s (minutes, once)", precision, engine_path)
            build_engine(onnx_path, engine_path, precision, profile,
                         calibration_batches=calibration_batches,
                         calibration_cache=(cache_dir() / "tensorrt"
                                            / f"{onnx_hash[:12]}-int8.calib"),
                         workspace_mb=workspace_mb)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load {engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        # One buffer per tensor, sized for max_batch, allocated once; calls use a batch prefix.
        self._buffers: dict[str, torch.Tensor] = {}
        for name in self.input_names + self.output_names:
            max_shape = (profile[name][2] if name in profile
                         else (max_batch, *tuple(self.engine.get_tensor_shape(name))[1:]))
            numpy_dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            torch_dtype = torch.from_numpy(np.empty(0, numpy_dtype)).dtype
            self._buffers[name] = torch.empty(max_shape, dtype=torch_dtype, device="cuda")
        self.device = "cuda"
        self.precision = precision
        self.max_batch = max_batch
        self.engine_path = engine_path
        self._version = trt.__version__

    def run_tensors(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run on tensors (batch <= max_batch); returns views of the output buffers (valid
        until the next call), on the GPU."""
        n = len(inputs[0])
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch {n} outside this engine's profile 1..{self.max_batch}; "
                             "rebuild with a larger max_batch")
        stream = self.stream
        stream.wait_stream(torch.cuda.current_stream())  # inputs made on the default stream
        with torch.cuda.stream(stream):
            for name, x in zip(self.input_names, inputs, strict=True):
                buffer = self._buffers[name][:n]
                buffer.copy_(x.to(device="cuda", dtype=buffer.dtype), non_blocking=True)
                self.context.set_input_shape(name, tuple(buffer.shape))
                self.context.set_tensor_address(name, buffer.data_ptr())
            outputs = []
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                buffer = self._buffers[name].view(-1)[:int(np.prod(shape))].view(shape)
                self.context.set_tensor_address(name, buffer.data_ptr())
                outputs.append(buffer)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        torch.cuda.current_stream().wait_stream(stream)
        return tuple(o.float() for o in outputs)

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
        return tuple(o.cpu().numpy() for o in self.run_tensors(*tensors))

    def describe(self) -> str:
        return (f"tensorrt {self._version} {self.precision} batch 1..{self.max_batch} "
                f"({torch.cuda.get_device_name()})")
