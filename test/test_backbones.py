"""Backbones: map shapes / strides / channels, parameter counts against published numbers,
MediaPipe's pretrained trunk against the full landmark net, ONNX export of pooling attention."""

import numpy as np
import pytest
import torch
from torch import nn

from hand_pose_ros.models.backbones import create_backbone, list_backbones
from hand_pose_ros.models.backbones.metaformer import pool_last, pool_rows

SIZE = 64  # divisible by the coarsest stride (32)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_maps_have_declared_channels_and_strides(name):
    torch.manual_seed(0)
    backbone = create_backbone(name).eval()
    assert len(backbone.channels) == len(backbone.strides) >= 1
    assert list(backbone.strides) == sorted(backbone.strides)  # finest first
    x = torch.rand(2, 3, SIZE, SIZE + 32)  # non-square: height and width handled separately
    with torch.no_grad():
        maps = backbone(x)
    assert len(maps) == len(backbone.channels)
    for feature, channels, stride in zip(maps, backbone.channels, backbone.strides, strict=True):
        assert feature.shape == (2, channels, SIZE // stride, (SIZE + 32) // stride)
        assert torch.isfinite(feature).all()


# Published parameter counts without the ImageNet classifier: torchvision's resnet* minus its
# fc layer (exact); PoolFormer's 11.9 M / 21.4 M minus the 0.51 M head; HRNetV2-W18's 9.6 M
# (face-alignment backbone) and HRNet-W32's 28.5 M (keypoint net, which drops the coarse-branch
# fusion at the end that HRNetV2 keeps).
PUBLISHED = {
    "resnet18": (11_176_512, 0.0),
    "resnet34": (21_284_672, 0.0),
    "resnet50": (23_508_032, 0.0),
    "poolformer_s12": (11_915_000 - 513_000 - 1_024, 0.01),
    "poolformer_s24": (21_389_000 - 513_000 - 1_024, 0.01),
    "hrnet_w18": (9_600_000, 0.02),
    "hrnet_w32": (28_500_000, 0.04),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name):
    expected, tolerance = PUBLISHED[name]
    assert abs(n_params(create_backbone(name)) - expected) <= tolerance * expected


def test_pat_adds_pooling_attention_parameters_to_poolformer():
    # Same MetaFormer skeleton; the PAT mixer has 3 depthwise 3x3 convs + a norm per block.
    poolformer, pat = create_backbone("poolformer_s12"), create_backbone("pat_s12")
    per_block = {d: 3 * (9 * d + d) + 2 * d for d in (64, 128, 320, 512)}
    extra = sum(n * per_block[d] for n, d in zip((2, 2, 6, 2), (64, 128, 320, 512), strict=True))
    assert n_params(pat) - n_params(poolformer) == extra


def test_fastvit_ma36_is_the_paper_size_and_t8_the_small_one():
    # Train-time form (branches not folded): MA36 about 42.6 M, T8 about 3.2 M.
    assert 40e6 < n_params(create_backbone("fastvit_ma36")) < 45e6
    assert 2.5e6 < n_params(create_backbone("fastvit_t8")) < 4e6


@pytest.mark.parametrize("length", [1, 2, 5, 7, 16, 40])
def test_matmul_pooling_equals_adaptive_average_pooling(length):
    x = torch.rand(2, 3, length, length + 3)
    assert torch.allclose(pool_last(x, 4), nn.AdaptiveAvgPool2d((None, 4))(x), atol=1e-6)
    assert torch.allclose(pool_rows(x, 4), nn.AdaptiveAvgPool2d((4, None))(x), atol=1e-6)


def test_unknown_backbone_and_missing_weights_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet101")
    with pytest.raises(ValueError, match="no 'imagenet' weights"):
        create_backbone("resnet50", pretrained="imagenet")
    with pytest.raises(ValueError, match="pretrained=None or 'mediapipe'"):
        create_backbone("mediapipe", pretrained="imagenet")


def _landmark_net_or_skip(variant):
    from hand_pose_ros.models.blaze import build_hand_landmark_net
    from hand_pose_ros.models.weights import WeightsError

    try:
        return build_hand_landmark_net(variant)
    except WeightsError as error:
        pytest.skip(f"MediaPipe weights not fetched ({error})")


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_mediapipe_pretrained_trunk_reproduces_the_landmark_net(variant):
    net = _landmark_net_or_skip(variant)
    name = "mediapipe" if variant == "full" else "mediapipe_lite"
    trunk = create_backbone(name, pretrained="mediapipe").eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        maps = trunk(x)
        landmarks, _, _, world = net(x)
        pooled = maps[-1].mean(dim=(2, 3))  # what the net's dense heads read
        np.testing.assert_allclose(net.landmarks(pooled), landmarks, atol=1e-4)
        np.testing.assert_allclose(net.world(pooled), world, atol=1e-5)
    scratch = create_backbone(name, pretrained=None)
    assert not torch.equal(next(scratch.parameters()), next(trunk.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pat_xs"])  # pooling attention needed export fixes
def test_backbone_exports_to_onnx_with_dynamic_batch(name):
    pytest.importorskip("onnxruntime")
    from hand_pose_ros.runtime import create_backend

    class Tuple(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return tuple(self.backbone(x))

    torch.manual_seed(0)
    module = Tuple(create_backbone(name)).eval()
    backend = create_backend("onnxruntime", module, (torch.zeros(2, 3, 96, 96),), num_threads=1)
    for batch in (1, 3):
        x = torch.rand(batch, 3, 96, 96)
        with torch.no_grad():
            expected = module(x)
        for got, want in zip(backend(x.numpy()), expected, strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-3)


def test_fastvit_reparameterisation_keeps_the_function():
    import copy

    from hand_pose_ros.models.backbones.fastvit import reparameterize

    torch.manual_seed(0)
    backbone = create_backbone("fastvit_t8").train()
    with torch.no_grad():  # non-trivial BatchNorm statistics and layer scales to fold
        for _ in range(2):
            backbone(torch.rand(4, 3, 64, 64))
        for name, p in backbone.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.5, 1.5)
    backbone.eval()
    folded = reparameterize(copy.deepcopy(backbone))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert n_params(folded) < n_params(backbone)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        for got, want in zip(folded(x), backbone(x), strict=True):
            assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))


def test_mediapipe_trunk_from_scratch_gives_image_dependent_features():
    # Without its folded-in normalisation the trunk's default init shrank the signal until
    # every image gave the same stride-32 features (spread ~1e-8): nothing to train from.
    torch.manual_seed(0)
    trunk = create_backbone("mediapipe", pretrained=None).eval()
    with torch.no_grad():
        maps = trunk(torch.rand(4, 3, 224, 224))
    for features in maps:
        assert torch.isfinite(features).all()
        assert features.std(dim=0).mean() > 1e-2 * features.abs().mean()
