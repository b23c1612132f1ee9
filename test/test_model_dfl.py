"""DFL: outputs at both configs, the 2.5D lifting, losses, training steps, ONNX parity, checkpoints
through the registry."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.sample import SEGMENTATION_CLASSES
from hand_pose_ros.data.synth import SynthConfig, render_sample
from hand_pose_ros.models import dfl
from hand_pose_ros.models.base import create_model
from hand_pose_ros.models.seed import CheckpointError, ExportWrapper, save_checkpoint
from hand_pose_ros.runtime import create_backend

REALTIME_SIZE = dfl.CONFIGS["realtime"]["input_size"]


@pytest.fixture(scope="module")
def realtime_net():
    torch.manual_seed(0)
    return dfl.build_net("realtime").eval()


@pytest.fixture(scope="module")
def two_hand_batch():
    """Two rendered two-hand crops at the realtime input size, with part segmentation."""
    config = SynthConfig(size=REALTIME_SIZE, occluder_probability=0.0)
    return collate_batch([render_sample(11, i, config, two_hands=True) for i in range(2)],
                         hands=2)


def _check_outputs(outputs: dict, n: int, size: int) -> None:
    assert outputs["joints_3d"].shape == (n, 2, 21, 3)
    assert outputs["joints_2d"].shape == (n, 2, 21, 2)
    assert outputs["hand_logit"].shape == (n, 2)
    assert outputs["root_offset"].shape == (n, 3)
    assert outputs["pose_25d"].shape == (n, 4, 2, 21, 3)  # 3 iterations + the refined pose
    assert outputs["segmentation"].shape == (n, 33, size // 4, size // 4)
    assert "right_logit" not in outputs  # the slot is the handedness
    assert all(torch.isfinite(v).all() for v in outputs.values())
    assert outputs["joints_3d"][:, :, 0].abs().max() < 1e-6  # each hand wrist-relative


def test_realtime_outputs_have_the_two_hand_keys_and_shapes(realtime_net):
    with torch.no_grad():
        outputs = realtime_net(torch.rand(2, 3, REALTIME_SIZE, REALTIME_SIZE))
    _check_outputs(outputs, 2, REALTIME_SIZE)


@pytest.mark.slow  # ResNet-50-FPN at 256 px: about 6 s on 2 cores
def test_paper_config_outputs_have_the_two_hand_keys_and_shapes():
    net = dfl.build_net("paper").eval()
    assert net.input_size == 256 and type(net.backbone.stages[0][0]).__name__ == "Bottleneck"
    # Full model (ResNet-50-FPN, segmentation, decoder, heads), stated in the module docstring.
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 39.20
    with torch.no_grad():
        outputs = net(torch.rand(1, 3, 256, 256))
    _check_outputs(outputs, 1, 256)


def test_realtime_parameter_count_is_as_stated_and_fits_a_50_mb_checkpoint(realtime_net):
    count = sum(p.numel() for p in realtime_net.parameters())
    assert round(count / 1e6, 2) == 12.19
    assert 4 * count < 50e6


def test_segmentation_head_predicts_the_33_part_classes(realtime_net):
    assert realtime_net.segment[-1].out_channels == len(SEGMENTATION_CLASSES) == 33


def test_iterations_read_the_scales_coarse_to_fine(realtime_net):
    # T = N - 1 = 3 iterations after the initialisation on the stride-32 map.
    assert realtime_net.scale_strides == (32, 16, 8, 4)
    assert len(realtime_net.joint_image) == len(realtime_net.joint_joint) == 3


def test_attention_relations_are_the_ablation_winners(realtime_net):
    assert realtime_net.init_attn.relation == "a"
    assert all(b.attn.relation == "p" for b in realtime_net.joint_joint)
    assert all(b.attn.relation == "ap" for b in realtime_net.joint_image)


def test_decoupled_attention_keeps_the_streams_apart():
    torch.manual_seed(0)
    attn = dfl.DecoupledAttention("p", (8, 8), (8, 8), 8, 2)
    queries = (torch.randn(1, 3, 8), torch.randn(1, 3, 8))
    keys = (torch.randn(1, 5, 8), torch.randn(1, 5, 8))
    out_a, out_p = attn(queries, keys)
    # A position relation: changing the appearance keys' content moves only the appearance
    # output, and only through the values (the weights stay those of the position stream).
    other = (keys[0] + torch.randn(1, 5, 8), keys[1])
    out_a2, out_p2 = attn(queries, other)
    torch.testing.assert_close(out_p2, out_p)
    assert not torch.allclose(out_a2, out_a)


def test_lifting_recovers_the_3d_pose_under_the_nominal_camera(realtime_net):
    """2.5D of a pose seen by the nominal crop camera + its scale -> the exact 3D pose."""
    s = realtime_net.input_size
    focal = dfl.NOMINAL_FOCAL * s
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.06, 0.06, (1, 2, 21, 3)) + np.array([0.0, 0.0, 0.5])
    joints[0, 1] += np.array([0.1, -0.02, 0.05])  # the left hand beside the right one
    pixels = joints[..., :2] / joints[..., 2:] * focal + (s - 1) / 2
    depth = joints[..., 2] - joints[..., :1, 2]
    pose = np.concatenate([(pixels + 0.5) * 2 / s - 1, depth[..., None] * dfl.DECIMETRE], -1)
    log_scale = np.log(joints[..., 0, 2] * s / focal)
    left_depth = joints[:, 1, 0, 2:] - joints[:, 0, 0, 2:]
    out = realtime_net.lift(*(torch.as_tensor(a, dtype=torch.float64)
                              for a in (pose, log_scale, left_depth)))
    rel, uv, wrists = (o.numpy() for o in out)
    np.testing.assert_allclose(rel, joints - joints[..., :1, :], atol=1e-9)
    np.testing.assert_allclose(uv, pixels, atol=1e-9)
    np.testing.assert_allclose(wrists[:, 1] - wrists[:, 0], joints[:, 1, 0] - joints[:, 0, 0],
                               atol=1e-9)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_dice_is_zero_when_perfect():
    torch.manual_seed(0)
    logits = torch.randn(2, 33, 4, 4)
    labels = torch.randint(0, 33, (2, 4, 4))
    torch.testing.assert_close(dfl.focal_loss(logits, labels, gamma=0.0),
                               F.cross_entropy(logits, labels))
    assert dfl.focal_loss(logits, labels) < F.cross_entropy(logits, labels)
    perfect = F.one_hot(labels, 33).permute(0, 3, 1, 2).float() * 1e4
    assert float(dfl.dice_loss(perfect, labels)) < 1e-6
    assert float(dfl.dice_loss(logits, labels)) > 0.3


def test_smooth_l1_is_eq_7():
    x = torch.tensor([-5.0, -1.0, 0.0, 2.0, 4.0])
    expected = torch.tensor([5.0 - 1.5, 1.0 / 6.0, 0.0, 4.0 / 6.0, 4.0 - 1.5])
    torch.testing.assert_close(dfl.smooth_l1(x, 3.0), expected)


def test_pose_loss_uses_the_paper_weights(realtime_net, two_hand_batch):
    with torch.no_grad():
        outputs = realtime_net(two_hand_batch["image"])
        total, parts = realtime_net.pose_loss(outputs, two_hand_batch)
    expected = (parts["loss_2d"] + 3 * parts["loss_25d"] + parts["focal"] + parts["dice"]
                + dfl.SCALE_WEIGHT * parts["log_scale"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    # Without segmentation labels (real datasets) the pixel-wise terms are left out.
    no_seg = {k: v for k, v in two_hand_batch.items() if k != "segmentation"}
    total, parts = realtime_net.pose_loss(outputs, no_seg)
    assert "focal" not in parts and torch.isfinite(total)


def test_losses_are_finite_and_decrease_over_a_few_steps():
    # A narrow DFL at 64 px (same modules and losses as the configs) keeps this test fast.
    config = SynthConfig(size=64, occluder_probability=0.0)
    batch = collate_batch([render_sample(11, i, config, two_hands=True) for i in range(2)],
                          hands=2)
    torch.manual_seed(0)
    net = dfl.DFLNet("resnet18", input_size=64, fpn_channels=32, dim=32, ffn_dim=64,
                     heads=2).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose time to a busy thread pool
    try:
        for _ in range(4):
            loss, parts = net.training_loss(net(batch["image"]), batch)
            assert torch.isfinite(loss)
            assert {"loss_2d", "loss_25d", "focal", "dice", "log_scale",
                    "root_offset_m"} <= parts.keys()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.8 * losses[0]


def test_a_crop_with_one_hand_masks_the_absent_hand(realtime_net):
    config = SynthConfig(size=REALTIME_SIZE, occluder_probability=0.0)
    batch = collate_batch([render_sample(11, 5, config, two_hands=False)], hands=2)
    with torch.no_grad():
        loss, parts = realtime_net.training_loss(realtime_net(batch["image"]), batch)
    assert torch.isfinite(loss) and "root_offset_m" not in parts


def test_onnxruntime_export_matches_torch(realtime_net, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    wrapper = ExportWrapper(realtime_net).eval()
    s = REALTIME_SIZE
    backend = create_backend("onnxruntime", wrapper, (torch.zeros(2, 3, s, s),), num_threads=2)
    for n in (1, 3):  # the batch stays dynamic
        images = torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            expected = wrapper(images)
        got = backend(images.numpy())
        assert len(got) == len(expected) == 4
        for g, e in zip(got, expected, strict=True):
            assert g.shape == tuple(e.shape)
            assert np.abs(g - e.numpy()).max() < 1e-3


def test_registered_model_loads_a_checkpoint_and_estimates_two_hands(realtime_net, tmp_path):
    path = save_checkpoint(tmp_path / "dfl-realtime.pt", realtime_net, "dfl", "realtime",
                           dfl.CONFIGS["realtime"], {"note": "untrained, for the test"})
    model = create_model("dfl", checkpoint=path, backend="torch")
    assert model.hands_per_crop == 2 and model.input_size == REALTIME_SIZE
    crops = np.random.default_rng(0).integers(0, 256, (3, REALTIME_SIZE, REALTIME_SIZE, 3),
                                              dtype=np.uint8)
    estimate = model.estimate(crops)
    assert estimate.joints_3d.shape == (6, 21, 3) and estimate.root_offset.shape == (3, 3)
    np.testing.assert_array_equal(estimate.right_hand, [1, 0] * 3)
    np.testing.assert_allclose(estimate.roots_3d[1::2], estimate.root_offset)
    assert np.all((estimate.scores > 0) & (estimate.scores < 1))
    assert not math.isnan(float(estimate.joints_2d.sum()))


def test_missing_checkpoint_names_the_train_command(tmp_path):
    with pytest.raises(CheckpointError, match="hand-pose train"):
        create_model("dfl", checkpoint=tmp_path / "absent.pt")


def test_shipped_checkpoint_estimates_finite_two_hand_poses():
    from hand_pose_ros.models.seed import checkpoint_path

    if not checkpoint_path("dfl", "realtime").is_file():
        pytest.skip("no shipped dfl-realtime checkpoint (train one with `hand-pose train "
                    "--model dfl --config realtime --ship`)")
    model = create_model("dfl", backend="torch")
    config = SynthConfig(size=REALTIME_SIZE, occluder_probability=0.0)
    crops = np.stack([render_sample(11, i, config, two_hands=True).image for i in range(2)])
    estimate = model.estimate(crops)
    assert estimate.joints_3d.shape == (4, 21, 3) and np.isfinite(estimate.joints_3d).all()
    # Two hands of a crop: hand-sized skeletons (wrist-relative extent below 30 cm).
    assert np.abs(estimate.joints_3d).max() < 0.3
