"""CLIP-Hand: output keys and shapes per configuration, losses, the gesture-template attention,
the training-only CLIP module, ONNX parity and parameter counts."""

import numpy as np
import pytest
import torch

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import GESTURES, random_poses
from hand_pose_ros.models import cliphand
from hand_pose_ros.models.seed import ExportWrapper, SeedEstimator

N_VERTICES = 776


def _batch(n: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch in the ``collate_batch`` format built straight from the hand model: random
    valid hands in front of a pinhole crop camera (the image is noise; labels are exact)."""
    rng = np.random.default_rng(seed)
    right = rng.random(n) < 0.5
    joints, vertices = [], []
    for i in range(n):
        side = Handedness.RIGHT if right[i] else Handedness.LEFT
        out = OpenHandModel(side).forward(random_poses(1, rng),
                                          global_orient=rng.normal(0, 0.6, (1, 3)))
        joints.append(out.joints[0])
        vertices.append(out.vertices[0])
    joints, vertices = np.stack(joints), np.stack(vertices)
    root = joints[:, :1]
    depth = rng.uniform(0.4, 0.6, n)
    focal = size * 2.0
    k = np.array([[focal, 0, size / 2 - 0.5], [0, focal, size / 2 - 0.5], [0, 0, 1]])
    camera = joints - root + np.stack([np.zeros(n), np.zeros(n), depth], -1)[:, None]
    joints_2d = (camera @ k.T)[..., :2] / (camera @ k.T)[..., 2:]
    image = rng.random((n, 3, size, size))
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return {
        "image": as_t(image), "joints_3d": as_t(joints - root), "joints_2d": as_t(joints_2d),
        "joint_valid": torch.ones(n, 21, dtype=torch.bool),
        "vertices": as_t(vertices - root), "right": as_t(right),
        "hand_present": torch.ones(n), "intrinsics": as_t(np.repeat(k[None], n, 0)),
        "root_depth": as_t(depth),
        "segmentation": torch.as_tensor(rng.integers(0, 2, (n, size, size)), dtype=torch.int64),
    }


@pytest.fixture(scope="module")
def realtime_net():
    torch.manual_seed(0)
    return cliphand.build_net("realtime")


def _check_outputs(net, n: int) -> dict[str, torch.Tensor]:
    s = net.input_size
    with torch.no_grad():
        out = net.eval()(torch.rand(n, 3, s, s))
    assert out["joints_3d"].shape == (n, 21, 3)
    assert out["joints_2d"].shape == (n, 21, 2)
    assert out["vertices"].shape == (n, N_VERTICES, 3)
    assert out["hand_logit"].shape == (n,) and out["right_logit"].shape == (n,)
    assert out["coarse_vertices"].shape == (n, 194, 3)
    assert out["joint_heatmaps"].shape == (n, 21, s // 4, s // 4)
    assert out["gesture_weights"].shape == (n, 2 * len(GESTURES))
    assert all(torch.isfinite(v).all() for v in out.values())
    # Wrist-relative outputs: the wrist of the final joints is the origin.
    assert torch.allclose(out["joints_3d"][:, 0], torch.zeros(n, 3), atol=1e-7)
    return out


def test_realtime_config_returns_standard_keys_and_shapes(realtime_net):
    assert realtime_net.input_size == cliphand.CONFIGS["realtime"]["input_size"]
    _check_outputs(realtime_net, 2)


def test_paper_config_returns_standard_keys_and_shapes():
    net = cliphand.build_net("paper")
    assert net.input_size == 224
    _check_outputs(net, 1)


def test_paper_config_matches_the_papers_parameter_count():
    # CLIP-Hand-cls-S24: 40.20 M parameters (Table 3). Full-model count: backbone, HFA, MHF,
    # MTED, PJ, heads and the small trainable part of the CLIP module.
    net = cliphand.build_net("paper")
    total = sum(p.numel() for p in net.parameters())
    assert abs(total - 40.20e6) / 40.20e6 < 0.05, total


def test_realtime_config_is_small(realtime_net):
    total = sum(p.numel() for p in realtime_net.parameters())
    backbone = sum(p.numel() for p in realtime_net.backbone.parameters())
    assert 2e6 < total < 6e6 and backbone < total / 2, (total, backbone)


def test_unknown_config_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        cliphand.build_net("huge")


def test_loss_is_finite_and_decreases_on_a_few_synthetic_samples():
    torch.manual_seed(0)
    net = cliphand.build_net("realtime").train()
    batch = _batch(2, net.input_size, seed=1)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-4)
    losses = []
    for _ in range(15):
        loss, parts = net.training_loss(net(batch["image"]), batch)
        assert torch.isfinite(loss)
        assert {"j3d", "j2d", "vert", "heatmap"} <= set(parts)
        assert "contrastive" not in parts  # no CLIP checkpoint: the CLIP term is off
        optimiser.zero_grad()
        loss.backward()
        # Every trainable weight takes part (DDP waits for a gradient of each).
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_heatmap_loss_is_lowest_at_the_labelled_position():
    points = torch.tensor([[[21.5, 41.5]]])  # crop pixels -> heatmap pixel (5, 10)
    at_label = torch.full((1, 1, 16, 16), -10.0)
    at_label[0, 0, 10, 5] = 10.0
    elsewhere = torch.full((1, 1, 16, 16), -10.0)
    elsewhere[0, 0, 2, 12] = 10.0
    assert cliphand._heatmap_kl(at_label, points) < cliphand._heatmap_kl(elsewhere, points)


def test_gesture_templates_are_the_hand_models_canonical_gestures():
    names, templates = cliphand.gesture_templates()
    k = len(GESTURES)
    assert names[:k] == [f"right:{g}" for g in GESTURES]
    assert templates.shape == (2 * k, 21, 3)
    # Each template is the right hand model in that gesture, in its own palm frame: seen from a
    # rotated, scaled copy of the same hand the palm-frame coordinates are the same.
    poses = np.stack(list(GESTURES.values()))
    joints = OpenHandModel().forward(poses, global_orient=np.tile([[0.3, -1.1, 0.7]], (k, 1)),
                                     with_vertices=False).joints * 1.3
    joints = torch.as_tensor(joints - joints[:, :1], dtype=torch.float32)
    rotation, length = cliphand._palm_frame(joints)
    assert torch.allclose(joints @ rotation / length, templates[:k], atol=1e-5)
    # The left templates are the mirrored model: the palm-normal coordinate changes sign.
    assert torch.allclose(templates[k:], templates[:k] * torch.tensor([1.0, 1.0, -1.0]),
                          atol=1e-5)
    # Real, distinct gestures: a fist's index tip is much closer to the wrist than an open hand's.
    fist, open_hand = names.index("right:fist"), names.index("right:open")
    assert templates[fist, 8].norm() < 0.7 * templates[open_hand, 8].norm()


def test_gesture_attention_weights_are_a_distribution_over_the_templates(realtime_net):
    pj = realtime_net.pj
    assert torch.equal(pj.templates, cliphand.gesture_templates()[1])
    joints = torch.as_tensor(_batch(3, 32)["joints_3d"])
    refined, weights = pj(joints)
    assert weights.shape == (3, 2 * len(GESTURES))
    assert torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-6)
    # Zero-initialised refinement: an untrained PJ returns the joints it was given.
    assert torch.allclose(refined, joints, atol=1e-6)


def test_prompts_name_the_gesture_and_background_colour(realtime_net):
    k = len(GESTURES)
    poses = np.stack([GESTURES["fist"], GESTURES["open"]])
    joints = OpenHandModel().forward(poses, with_vertices=False).joints
    batch = {"joints_3d": torch.as_tensor(joints - joints[:, :1], dtype=torch.float32),
             "right": torch.ones(2),
             "image": torch.stack([torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 8, 8),
                                   torch.zeros(3, 8, 8)]),
             "segmentation": torch.zeros(2, 8, 8, dtype=torch.int64)}
    assert realtime_net.prompts(batch) == [
        "an image of a hand on a red background in a gesture that means fist",
        "an image of a hand on a black background in a gesture that means open"]
    assert len(cliphand.clip_prompts()) == len(cliphand.BACKGROUND_COLORS) * k


def test_missing_clip_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="TorchScript CLIP encoder"):
        cliphand.build_net("realtime", clip_checkpoint=tmp_path / "clip.pt")


def test_a_file_that_is_not_a_clip_encoder_is_a_clear_error(tmp_path):
    path = tmp_path / "clip.pt"
    path.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        cliphand.build_net("realtime", clip_checkpoint=path)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ValueError, match="lacks encode_image, encode_text"):
        cliphand.build_net("realtime", clip_checkpoint=path)


class _TinyClip(torch.nn.Module):
    """A user-style CLIP encoder with the documented interface (no CLIP weights exist here):
    image colour statistics and prompt lengths, projected to 512."""

    def __init__(self):
        super().__init__()
        self.image = torch.nn.Linear(3, 512)
        self.text = torch.nn.Linear(1, 512)

    @torch.jit.export
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images.mean(dim=(2, 3)))

    @torch.jit.export
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        lengths = torch.tensor([[float(len(t))] for t in texts])
        return self.text(lengths / 100.0)


def test_clip_module_adds_the_contrastive_loss_and_stays_out_of_the_inference_graph(tmp_path):
    path = tmp_path / "clip.pt"
    torch.jit.save(torch.jit.script(_TinyClip()), str(path))
    torch.manual_seed(0)
    net = cliphand.build_net("realtime", clip_checkpoint=path).train()
    batch = _batch(3, net.input_size)
    loss, parts = net.training_loss(net(batch["image"]), batch)
    assert torch.isfinite(loss) and parts["contrastive"] > 0
    # The frozen CLIP is no part of the weights a checkpoint saves.
    assert not any("clip" in k for k in net.state_dict())
    # Inference (what the export traces) never runs the CLIP module.
    calls = []
    net.contrastive.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        ExportWrapper(net.eval())(batch["image"])
    assert not calls


@pytest.mark.slow
def test_onnxruntime_export_matches_torch(realtime_net, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    # A cache key keeps the exported file (in tmp_path) for the graph check below.
    estimator = SeedEstimator("cliphand", realtime_net.eval(), backend="onnxruntime",
                              num_threads=2, cache_key="cliphand-test")
    graph = onnx.load(str(estimator.backend.path)).graph
    assert not [i.name for i in graph.initializer if "contrastive" in i.name]
    s = realtime_net.input_size
    images = np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32)
    with torch.no_grad():
        expected = estimator.wrapper(torch.from_numpy(images))
    for key, want, got in zip(estimator.keys, expected, estimator.backend(images), strict=True):
        assert np.abs(want.numpy() - got).max() < 1e-3, key
    crops = (np.random.default_rng(1).random((1, s, s, 3)) * 255).astype(np.uint8)
    result = estimator.estimate(crops)
    assert result.vertices.shape == (1, N_VERTICES, 3)
