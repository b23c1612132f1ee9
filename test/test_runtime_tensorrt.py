"""The TensorRT backend: what can be checked without TensorRT (engine cache key, profile shapes,
INT8 calibration cache files, the one-line error), and engine builds where TensorRT exists."""

import importlib.util

import numpy as np
import pytest
import torch

from hand_pose_ros.runtime import BackendUnavailableError, available_backends, create_backend
from hand_pose_ros.runtime.tensorrt_backend import (
    SKIP_REASON,
    build_engine,
    engine_cache_key,
    profile_shapes,
    read_calibration_cache,
    write_calibration_cache,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT or not torch.cuda.is_available(),
                                    reason=SKIP_REASON)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return y.mean(dim=(2, 3)), torch.sigmoid(y.amax(dim=(1, 2, 3)))


def test_profile_spans_batch_one_to_max_with_the_example_image_size():
    profile = profile_shapes({"x": (1, 3, 224, 224)}, max_batch=8, opt_batch=2)
    assert profile == {"x": ((1, 3, 224, 224), (2, 3, 224, 224), (8, 3, 224, 224))}
    with pytest.raises(ValueError, match="opt_batch"):
        profile_shapes({"x": (1, 3, 8, 8)}, max_batch=4, opt_batch=5)


def test_engine_cache_key_changes_with_everything_an_engine_depends_on():
    profile = profile_shapes({"x": (1, 3, 224, 224)}, 8)
    base = dict(onnx_sha256="ab" * 32, trt_version="10.3.0", gpu_name="Orin",
                precision="fp16", profile=profile)
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base), "deterministic"
    assert key.startswith("abababababab-fp16-b8-trt10.3.0-")
    changes = [{"onnx_sha256": "cd" * 32}, {"trt_version": "10.4.0"},
               {"gpu_name": "NVIDIA H100"}, {"precision": "int8"},
               {"profile": profile_shapes({"x": (1, 3, 224, 224)}, 4)},
               {"profile": profile_shapes({"x": (1, 3, 224, 224)}, 8, opt_batch=2)}]
    keys = {engine_cache_key(**{**base, **change}) for change in changes}
    assert key not in keys and len(keys) == len(changes)
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key(**{**base, "precision": "fp8"})


def test_calibration_cache_round_trips_and_absent_or_empty_reads_as_none(tmp_path):
    path = tmp_path / "sub" / "net-int8.calib"
    assert read_calibration_cache(path) is None
    data = bytes(range(256)) * 3
    write_calibration_cache(path, data)
    assert read_calibration_cache(path) == data
    assert [p.name for p in path.parent.iterdir()] == ["net-int8.calib"], "no temporary left"
    write_calibration_cache(path, b"")
    assert read_calibration_cache(path) is None


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_clear_line(tmp_path):
    with pytest.raises(BackendUnavailableError) as error:
        create_backend("tensorrt", Net(), (torch.zeros(1, 3, 8, 8),))
    message = str(error.value)
    assert "\n" not in message and "TensorRT" in message and "JetPack" in message
    assert "tensorrt" not in available_backends()
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        build_engine(tmp_path / "x.onnx", tmp_path / "x.engine", "fp16",
                     profile_shapes({"x": (1, 3, 8, 8)}, 2))


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_engine_matches_torch_for_every_batch_and_is_cached(tmp_path, monkeypatch, precision,
                                                            tolerance):
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    example = (torch.zeros(1, 3, 16, 16),)
    engine = create_backend("tensorrt", Net().eval(), example, cache_key="net",
                            precision=precision, max_batch=4)
    reference = create_backend("torch", Net().eval(), example)
    for batch in (1, 3, 4):
        x = np.random.default_rng(batch).random((batch, 3, 16, 16), dtype=np.float32)
        for a, b in zip(reference(x), engine(x), strict=True):
            assert a.shape == b.shape and np.abs(a - b).max() < tolerance
    with pytest.raises(ValueError, match="profile 1..4"):
        engine(np.zeros((5, 3, 16, 16), np.float32))
    assert len(list((tmp_path / "tensorrt").glob("*.engine"))) == 1
    again = create_backend("tensorrt", Net().eval(), example, cache_key="net",
                           precision=precision, max_batch=4)
    assert again.engine_path == engine.engine_path


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
def test_int8_calibration_writes_a_cache_that_the_next_build_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    batches = [(rng.random((4, 3, 16, 16), dtype=np.float32),) for _ in range(4)]
    engine = create_backend("tensorrt", Net().eval(), (torch.zeros(1, 3, 16, 16),),
                            cache_key="net", precision="int8", max_batch=4,
                            calibration_batches=batches)
    calib = list((tmp_path / "tensorrt").glob("*-int8.calib"))
    assert len(calib) == 1 and read_calibration_cache(calib[0])
    assert all(np.all(np.isfinite(o)) for o in engine(batches[0][0]))
