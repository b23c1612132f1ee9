"""ReJSHand: outputs, losses, training steps, ONNX parity, checkpoints through the registry."""

import numpy as np
import pytest
import torch

from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.synth import SynthConfig, render_sample
from hand_pose_ros.hand.mesh_sampling import joint_regressor
from hand_pose_ros.models import rejshand
from hand_pose_ros.models.base import create_model, list_models
from hand_pose_ros.models.seed import (
    CheckpointError,
    ExportWrapper,
    checkpoint_path,
    save_checkpoint,
)
from hand_pose_ros.runtime import create_backend


@pytest.fixture(scope="module")
def realtime_net():
    torch.manual_seed(0)
    return rejshand.build_net("realtime").eval()


@pytest.fixture(scope="module")
def synthetic_batch():
    """Two rendered single-hand crops at 224 px as a training batch."""
    samples = [render_sample(7, i, SynthConfig(size=224, occluder_probability=0.0),
                             two_hands=False) for i in range(2)]
    return collate_batch(samples)


def _check_outputs(outputs: dict, n: int, size: int) -> None:
    assert outputs["joints_3d"].shape == (n, 21, 3)
    assert outputs["joints_2d"].shape == (n, 21, 2)
    assert outputs["vertices"].shape == (n, 776, 3)
    assert outputs["hand_logit"].shape == (n,) and outputs["right_logit"].shape == (n,)
    assert all(torch.isfinite(v).all() for v in outputs.values())
    # Root-relative: the wrist at the origin; joints are the regressor applied to the vertices.
    assert outputs["joints_3d"][:, 0].abs().max() < 1e-6
    regressed = torch.einsum("jv,nvc->njc", torch.from_numpy(joint_regressor()),
                             outputs["vertices"])
    torch.testing.assert_close(regressed, outputs["joints_3d"], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["joints_2d"], outputs["uv"] * (size - 1))


def test_realtime_outputs_have_the_standard_keys_and_shapes(realtime_net):
    with torch.no_grad():
        outputs = realtime_net(torch.rand(2, 3, 224, 224))
    _check_outputs(outputs, 2, 224)


def test_paper_config_outputs_have_the_standard_keys_and_shapes():
    net = rejshand.build_net("paper").eval()
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 46.32  # as stated
    with torch.no_grad():
        outputs = net(torch.rand(1, 3, 224, 224))
    _check_outputs(outputs, 1, 224)


def test_realtime_parameter_count_is_as_stated(realtime_net):
    # Full model (backbone + ReJSHand head + score head), stated in the module docstring.
    count = sum(p.numel() for p in realtime_net.parameters())
    assert round(count / 1e6, 2) == 8.49


def test_loss_is_finite_and_decreases_over_a_few_steps(synthetic_batch):
    torch.manual_seed(0)
    net = rejshand.build_net("realtime").train()
    optimizer = torch.optim.Adam(net.parameters(), lr=rejshand.TRAINING["lr"])
    losses = []
    for _ in range(6):
        loss, parts = net.training_loss(net(synthetic_batch["image"]), synthetic_batch)
        assert torch.isfinite(loss)
        assert {"l1_joints_2d", "l1_joints_3d", "l1_vertices"} <= parts.keys()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_pose_loss_uses_the_paper_weights(realtime_net, synthetic_batch):
    with torch.no_grad():
        outputs = realtime_net(synthetic_batch["image"])
        total, parts = realtime_net.pose_loss(outputs, synthetic_batch)
    expected = (parts["l1_joints_2d"] + 10 * parts["l1_joints_3d"]
                + 10 * parts["l1_vertices"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    # Without vertex labels (real datasets) the vertex term is left out.
    no_mesh = {k: v for k, v in synthetic_batch.items() if k != "vertices"}
    total, parts = realtime_net.pose_loss(outputs, no_mesh)
    assert "l1_vertices" not in parts
    assert torch.isfinite(total)


def test_onnxruntime_export_matches_torch(realtime_net, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    wrapper = ExportWrapper(realtime_net).eval()
    # A batch-2 example: torch.export treats an example batch of 1 as a static size.
    backend = create_backend("onnxruntime", wrapper, (torch.zeros(2, 3, 224, 224),),
                             num_threads=2)
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = wrapper(images)
    got = backend(images.numpy())
    assert len(got) == len(expected) == 5
    for g, e in zip(got, expected, strict=True):
        assert np.abs(g - e.numpy()).max() < 1e-3


def test_registered_and_missing_checkpoint_names_the_train_command(tmp_path):
    assert "rejshand" in list_models()
    with pytest.raises(CheckpointError, match="hand-pose train --model rejshand"):
        create_model("rejshand", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown rejshand config"):
        create_model("rejshand", config="huge")


def test_estimator_loads_a_checkpoint_and_estimates_crops(realtime_net, tmp_path):
    path = save_checkpoint(tmp_path / "rejshand-realtime.pt", realtime_net, "rejshand",
                           "realtime", rejshand.CONFIGS["realtime"], {"note": "test"})
    estimator = create_model("rejshand", checkpoint=path, backend="torch", num_threads=1)
    crops = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    estimate = estimator.estimate(crops)
    assert estimate.joints_3d.shape == (2, 21, 3)
    assert estimate.vertices.shape == (2, 776, 3)
    assert ((estimate.scores >= 0) & (estimate.scores <= 1)).all()
    with torch.no_grad():
        expected = realtime_net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(estimate.joints_3d, expected["joints_3d"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        estimator.estimate(crops.astype(np.float32))


def test_shipped_checkpoint_predictions_depend_on_the_image(synthetic_batch):
    """Guards against shipping a collapsed net (constant output for every crop)."""
    if not checkpoint_path("rejshand", "realtime").is_file():
        pytest.skip("no shipped rejshand-realtime checkpoint (hand-pose train ... --ship)")
    estimator = create_model("rejshand", backend="torch", num_threads=1)
    crops = (synthetic_batch["image"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    estimate = estimator.estimate(crops)
    assert np.abs(estimate.joints_2d[0] - estimate.joints_2d[1]).max() > 2.0  # pixels
    assert estimate.scores.min() > 0.5  # both crops hold a hand


@pytest.mark.usefixtures("mediapipe_weights")
def test_pretrained_realtime_net_starts_from_mediapipe_2d_presence_and_handedness():
    from hand_pose_ros.models.blaze import build_hand_landmark_net

    net = rejshand.build_net("realtime", pretrained="mediapipe").eval()
    landmark_net = build_hand_landmark_net("full").eval()
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outputs = net(images)
        landmarks, presence, handedness, _ = landmark_net(images)
    # MediaPipe's pixels have 0 at the image edge, ours at the first pixel centre.
    expected_2d = landmarks.view(2, 21, 3)[..., :2] - 0.5
    torch.testing.assert_close(outputs["joints_2d"], expected_2d, atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.sigmoid(outputs["hand_logit"]), presence.view(2),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.sigmoid(outputs["right_logit"]), handedness.view(2),
                               atol=1e-5, rtol=0)
    # From scratch nothing is copied: the 2D joints are not MediaPipe's.
    scratch = rejshand.build_net("realtime").eval()
    with torch.no_grad():
        assert not torch.allclose(scratch(images)["joints_2d"], expected_2d, atol=1.0)


def test_sampling_positions_get_no_gradient_from_the_3d_losses(realtime_net):
    images = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    outputs = realtime_net(images)
    generator = realtime_net.head.keypoints_2d.linear
    generator.zero_grad()
    outputs["joints_3d"].square().sum().backward()
    assert generator.weight.grad is None or not generator.weight.grad.any()
    generator.zero_grad()
    realtime_net(images)["joints_2d"].sum().backward()
    assert generator.weight.grad.abs().sum() > 0
    realtime_net.zero_grad()
