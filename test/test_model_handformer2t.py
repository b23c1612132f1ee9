"""Handformer2T and the two-hand base: outputs, losses, training steps, the export (ONNX parity,
no RLE flow in it), checkpoints through the registry, parameter counts."""

import numpy as np
import pytest
import torch

from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.synth import SynthConfig, render_sample
from hand_pose_ros.models import handformer2t
from hand_pose_ros.models.base import create_model
from hand_pose_ros.models.seed import CheckpointError, save_checkpoint
from hand_pose_ros.models.twohand import TwoHandEstimator, root_offset_loss

SIZE = handformer2t.CONFIGS["realtime"]["input_size"]


def _count(net: torch.nn.Module, skip: str | None = None) -> int:
    return sum(p.numel() for n, p in net.named_parameters()
               if skip is None or not n.startswith(skip))


@pytest.fixture(scope="module")
def realtime_net():
    torch.manual_seed(0)
    return handformer2t.build_net("realtime").eval()


@pytest.fixture(scope="module")
def synthetic_batch():
    """Two rendered two-hand crops and one single-hand crop, as a two-hand training batch."""
    config = SynthConfig(size=SIZE, occluder_probability=0.0)
    samples = [render_sample(11, i, config, two_hands=i < 2) for i in range(3)]
    assert [s.num_hands for s in samples] == [2, 2, 1]
    return collate_batch(samples, hands=2)


def test_outputs_have_the_two_hand_keys_and_shapes(realtime_net):
    with torch.no_grad():
        out = realtime_net(torch.rand(3, 3, SIZE, SIZE))
    assert out["joints_3d"].shape == (3, 2, 21, 3)
    assert out["joints_2d"].shape == (3, 2, 21, 2)
    assert out["hand_logit"].shape == (3, 2)
    assert out["root_offset"].shape == (3, 3)
    stages = handformer2t.NUM_STAGES
    assert out["stage_pose"].shape == (3, stages, 2, 21, handformer2t.POSE_DIMS)
    assert out["stage_sigma"].shape == (3, stages, 2, 21)
    assert all(torch.isfinite(v).all() for v in out.values())
    # Each hand relative to its own wrist; 2D joints are the last stage's (u, v) in pixels.
    assert out["joints_3d"][:, :, 0].abs().max() < 1e-7
    uv = out["stage_pose"][:, -1, ..., :2]
    torch.testing.assert_close(out["joints_2d"], (uv + 1) * SIZE / 2 - 0.5)
    assert ((out["stage_sigma"] > 0) & (out["stage_sigma"] < 1.01)).all()


def test_full_model_parameter_counts_match_the_papers_table_5():
    # Full model (backbone, tokens, coarse predictor, refiners, score and root heads), without
    # the training-only RLE flows. Paper, Table 5 at token dim 256: ResNet-50 35.9 M,
    # ResNet-34 31.7 M; ours is stated in the module docstring.
    paper = handformer2t.build_net("paper")
    assert round(_count(paper, skip="flows") / 1e6, 1) == 35.3
    assert _count(paper, skip="flows") == pytest.approx(35.9e6, rel=0.03)
    r34 = handformer2t.Handformer2TNet("resnet34", 256, 256)
    assert _count(r34, skip="flows") == pytest.approx(31.7e6, rel=0.03)
    assert round(_count(handformer2t.build_net("realtime"), skip="flows") / 1e6, 2) == 10.49


def test_loss_is_finite_and_decreases_over_a_few_steps(synthetic_batch):
    torch.manual_seed(0)
    net = handformer2t.build_net("realtime").train()
    optimizer = torch.optim.Adam(net.parameters(), lr=handformer2t.TRAINING["lr"])
    losses = []
    for _ in range(6):
        loss, parts = net.training_loss(net(synthetic_batch["image"]), synthetic_batch)
        assert torch.isfinite(loss)
        assert {"hand_bce", "rle_0", "rle_1", "rle_2", "mmd", "root_offset_m"} <= parts.keys()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    # The flows are trained (they are part of the RLE loss).
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.flows.parameters())


def test_an_absent_hand_has_no_pose_loss_and_single_hands_no_root_loss(realtime_net,
                                                                        synthetic_batch):
    with torch.no_grad():
        out = realtime_net(synthetic_batch["image"])
        loss, parts = realtime_net.training_loss(out, synthetic_batch)
        # Sample 2 holds one hand; garbage in its empty slot's labels changes nothing.
        empty = int(np.flatnonzero(synthetic_batch["hand_present"][2].numpy() == 0)[0])
        noisy = {k: v.clone() for k, v in synthetic_batch.items()}
        noisy["joints_3d"][2, empty] = torch.randn(21, 3)
        noisy["joints_2d"][2, empty] = torch.rand(21, 2) * SIZE
        noisy["joint_valid"][2, empty] = True
        noisy["relative_root"][2] = torch.randn(3)
        same, _ = realtime_net.training_loss(out, noisy)
        assert float(same) == pytest.approx(float(loss), rel=1e-6)
        # The root offset loss is the mean Euclidean error on crops holding both hands.
        both = synthetic_batch["hand_present"].min(dim=1).values > 0.5
        expected = (out["root_offset"][both] - synthetic_batch["relative_root"][both]).norm(dim=1)
        assert parts["root_offset_m"] == pytest.approx(float(expected.mean()), rel=1e-5)


def test_root_offset_loss_is_zero_at_the_truth_with_a_finite_gradient():
    target = torch.tensor([[0.1, -0.02, 0.03]])
    pred = target.clone().requires_grad_(True)
    loss = root_offset_loss(pred, target)
    loss.backward()
    assert float(loss.detach()) < 1e-5 and torch.isfinite(pred.grad).all()


def test_mmd_is_zero_for_equal_sets_and_grows_with_a_shift():
    x = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    assert float(handformer2t.mmd_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(handformer2t.mmd_loss(x + 2.0, x)) > float(handformer2t.mmd_loss(x + 0.5, x))


@pytest.mark.slow
def test_onnxruntime_export_matches_torch_and_holds_no_rle_flow(realtime_net, tmp_path,
                                                                 monkeypatch):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    estimator = TwoHandEstimator("handformer2t", realtime_net, backend="onnxruntime",
                                 num_threads=2, cache_key="test")
    crops = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    estimate = estimator.estimate(crops)  # batch 3: the exported batch axis is dynamic
    with torch.no_grad():
        expected = realtime_net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    assert len(estimate) == 6 and estimate.num_crops == 3
    assert np.abs(estimate.per_crop("joints_3d") - expected["joints_3d"].numpy()).max() < 1e-3
    assert np.abs(estimate.per_crop("joints_2d") - expected["joints_2d"].numpy()).max() < 1e-3
    assert np.abs(estimate.root_offset - expected["root_offset"].numpy()).max() < 1e-3
    probability = torch.sigmoid(expected["hand_logit"]).numpy()
    assert np.abs(estimate.per_crop("scores") - probability).max() < 1e-3
    # The RLE flows are training only: no weight of theirs is in the exported graph.
    model = onnx.load(str(estimator.backend.path))
    names = [i.name for i in model.graph.initializer]
    assert not [n for n in names if "flows" in n]
    exported = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    flows = _count(realtime_net.flows)
    assert abs(exported - _count(realtime_net, skip="flows")) < flows / 10


def test_estimator_gives_two_hands_per_crop_right_first(realtime_net, tmp_path):
    path = save_checkpoint(tmp_path / "handformer2t-realtime.pt", realtime_net, "handformer2t",
                           "realtime", handformer2t.CONFIGS["realtime"], {"note": "test"})
    estimator = create_model("handformer2t", checkpoint=path, backend="torch", num_threads=1)
    assert estimator.hands_per_crop == 2 and estimator.input_size == SIZE
    crops = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    estimate = estimator.estimate(crops)
    assert estimate.joints_3d.shape == (4, 21, 3) and estimate.joints_2d.shape == (4, 21, 2)
    np.testing.assert_array_equal(estimate.right_hand, [1, 0, 1, 0])
    assert estimate.root_offset.shape == (2, 3)
    # roots_3d: per crop, the right wrist at the origin and the left one at the offset.
    np.testing.assert_allclose(estimate.per_crop("roots_3d")[:, 0], 0.0)
    np.testing.assert_allclose(estimate.per_crop("roots_3d")[:, 1], estimate.root_offset)
    with torch.no_grad():
        expected = realtime_net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(estimate.per_crop("joints_3d"), expected["joints_3d"].numpy(),
                               atol=1e-5)
    assert len(estimator.estimate(np.zeros((0, SIZE, SIZE, 3), np.uint8))) == 0
    with pytest.raises(ValueError, match="uint8"):
        estimator.estimate(crops.astype(np.float32))


def test_missing_or_foreign_checkpoints_and_configs_fail_clearly(realtime_net, tmp_path):
    with pytest.raises(CheckpointError, match="hand-pose train --model handformer2t"):
        create_model("handformer2t", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown handformer2t config"):
        create_model("handformer2t", config="huge")
    path = save_checkpoint(tmp_path / "x.pt", realtime_net, "handformer2t", "realtime", {}, {})
    with pytest.raises(CheckpointError, match="'realtime', not 'paper'"):
        create_model("handformer2t", config="paper", checkpoint=path)
