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
