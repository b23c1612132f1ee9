"""The runtime interface: backends chosen by name, same numbers from each, clear errors."""

import numpy as np
import pytest
import torch

from hand_pose_ros.runtime import (
    BackendUnavailableError,
    InferenceBackend,
    available_backends,
    create_backend,
    register_backend,
)


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        features = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(features), torch.sigmoid(features)


def test_torch_and_onnxruntime_give_the_same_outputs(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    model = TwoHeads().eval()
    example = (torch.zeros(1, 3, 8, 8),)
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    eager = create_backend("torch", model, example)
    ort = create_backend("onnxruntime", model, example, cache_key="two-heads")
    for a, b in zip(eager(x), ort(x), strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-5
    assert list((tmp_path / "onnx").glob("two-heads-*.onnx")), "export is cached by key"
    assert "onnxruntime" in ort.describe() and "torch" in eager.describe()


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'.*onnxruntime.*torch"):
        create_backend("tensorflow", TwoHeads(), (torch.zeros(1, 3, 8, 8),))


def test_missing_runtime_names_the_package_to_install():
    @register_backend
    class NeedsAbsentRuntime(InferenceBackend):
        name = "absent-runtime-for-test"
        requires = {"no_such_module_hand_pose": "no-such-package"}

        def __call__(self, *inputs):
            raise AssertionError("never constructed")

    with pytest.raises(BackendUnavailableError, match="pip install no-such-package"):
        create_backend("absent-runtime-for-test", TwoHeads(), (torch.zeros(1, 3, 8, 8),))
    assert "absent-runtime-for-test" not in available_backends()
    assert "torch" in available_backends()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_keyword_options_reach_the_backend_and_parameters_are_counted():
    model = TwoHeads().eval()
    backend = create_backend("torch", model, (torch.zeros(1, 3, 8, 8),), device="cpu",
                             precision="fp32")
    assert backend.device == "cpu"
    assert backend.num_parameters == sum(p.numel() for p in model.parameters()) == 4 * 27 + 4 + 10
    with pytest.raises(TypeError, match="no_such_option"):
        create_backend("torch", model, (torch.zeros(1, 3, 8, 8),), no_such_option=1)


def test_run_tensors_gives_the_numpy_call_results_as_tensors(tmp_path, monkeypatch):
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    model = TwoHeads().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for name in ("torch", "onnxruntime"):
        if name not in available_backends():
            continue
        backend = create_backend(name, model, (torch.zeros(1, 3, 8, 8),))
        from_numpy = backend(x.numpy())
        from_tensors = backend.run_tensors(x)
        for a, b in zip(from_numpy, from_tensors, strict=True):
            assert isinstance(b, torch.Tensor) and np.abs(a - b.cpu().numpy()).max() < 1e-6


def test_half_precision_on_cpu_is_refused_in_one_line():
    with pytest.raises(BackendUnavailableError, match="need device='cuda'") as error:
        create_backend("torch", TwoHeads(), (torch.zeros(1, 3, 8, 8),), precision="fp16")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="precision must be one of"):
        create_backend("torch", TwoHeads(), (torch.zeros(1, 3, 8, 8),), precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_device_without_a_gpu_is_unavailable_in_one_line():
    with pytest.raises(BackendUnavailableError, match="sees no CUDA GPU") as error:
        create_backend("torch", TwoHeads(), (torch.zeros(1, 3, 8, 8),), device="cuda")
    assert "\n" not in str(error.value)


def test_onnxruntime_without_its_cuda_provider_is_unavailable(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        create_backend("onnxruntime", TwoHeads(), (torch.zeros(1, 3, 8, 8),), device="cuda")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision, graphs, tolerance", [("fp32", False, 1e-4),
                                                           ("fp32", True, 1e-4),
                                                           ("fp16", True, 1e-2)])
def test_torch_cuda_matches_cpu(precision, graphs, tolerance):
    model = TwoHeads().eval()
    example = (torch.zeros(1, 3, 8, 8),)
    cpu = create_backend("torch", model, example)
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    expected = cpu(x)
    gpu = create_backend("torch", TwoHeads().eval(), example, device="cuda", precision=precision,
                         cuda_graphs=graphs)
    for _ in range(2):  # the second call replays the captured graph
        for a, b in zip(expected, gpu(x), strict=True):
            assert b.dtype == np.float32 and np.abs(a - b).max() < tolerance
    on_device = gpu.run_tensors(torch.from_numpy(x).cuda())
    assert all(t.is_cuda for t in on_device)
    assert "cuda" in gpu.describe()


def test_export_that_fixes_the_batch_size_is_refused_with_the_reason(tmp_path):
    pytest.importorskip("onnxscript")
    from hand_pose_ros.runtime.onnx_backend import export_onnx

    class BatchOfTwo(torch.nn.Module):
        def forward(self, x):
            return x + torch.ones(2, 3, 4, 4)  # broadcasts only for batch 2 (or 1)

    with pytest.raises(RuntimeError, match="static batch of 2.*depends on the batch size"):
        export_onnx(BatchOfTwo(), (torch.zeros(1, 3, 4, 4),), tmp_path / "net.onnx")
    assert not list(tmp_path.iterdir()), "no half-made file is left"
