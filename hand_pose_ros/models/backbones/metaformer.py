"""MetaFormer backbones with pooling token mixers (4 stages, strides 4-32, channels
64/128/320/512; S12 has (2, 2, 6, 2) blocks, S24 (4, 4, 12, 4)).

- ``poolformer_*``: PoolFormer (Yu et al., "MetaFormer is actually what you need for vision",
  CVPR 2022): token mixer = 3x3 average pooling minus the input.
- ``pat_*``: POTTER's Pooling Attention Transformer (Zheng et al., CVPR 2023), the backbone
  CLIP-Hand names ("PAT module with layer sizes (2, 2, 6, 2) / (4, 4, 12, 4)"): the same
  MetaFormer with the pooling-attention mixer - a patch-wise attention map from two
  axis-pooled copies of the map (H x 4 times 4 x W), plus an embedding-wise one computed the
  same way over the channels split into 32 groups, each through a depthwise 3x3, summed,
  normalised and projected by a depthwise 3x3 (as in POTTER's released code).

Block: x + s1 * mixer(GN(x)), then x + s2 * MLP(GN(x)) (GroupNorm with one group, layer scale
init 1e-5, MLP ratio 4, GELU). Stem: 7x7 stride-4 conv; between stages a 3x3 stride-2 conv.
POTTER's high-resolution stream is part of CLIP-Hand's HFA module and lives with that model.
Parameter counts without classifier: PoolFormer-S12 11.4 M, S24 20.8 M (published 11.9 M /
21.4 M include the 0.5 M-parameter ImageNet classifier).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from hand_pose_ros.models.backbones import no_pretrained_weights
from hand_pose_ros.models.backbones.common import Normalize

EMBED_DIMS = (64, 128, 320, 512)
LAYERS = {"s12": (2, 2, 6, 2), "s24": (4, 4, 12, 4)}
EMBED_GROUPS = 32  # POTTER splits the channels into 32 groups for embedding-wise attention


def group_norm(dim: int) -> nn.GroupNorm:
    """GroupNorm with one group: LayerNorm over (C, H, W), MetaFormer's norm for conv maps."""
    return nn.GroupNorm(1, dim)


class Pooling(nn.Module):
    """PoolFormer's mixer: average of the 3x3 neighbourhood minus the token itself."""

    def __init__(self, dim: int):
        super().__init__()
        del dim
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


@functools.lru_cache(maxsize=64)
def _adaptive_average(length: int, bins: int) -> np.ndarray:
    """(length, bins) matrix M with x @ M = adaptive average pooling of x's last axis to
    ``bins`` (the bins of ``nn.AdaptiveAvgPool1d``: [floor(i L / b), ceil((i + 1) L / b))).
    Cached as numpy, never as a tensor: a tensor made while tracing (export) is a fake one."""
    matrix = np.zeros((length, bins), np.float32)
    for i in range(bins):
        start, end = (i * length) // bins, -((-(i + 1) * length) // bins)
        matrix[start:end, i] = 1.0 / (end - start)
    return matrix


def pool_last(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling of the last axis to ``bins`` values, as a matmul with a
    constant: ``nn.AdaptiveAvgPool2d`` does not export to ONNX when it must upsample (an axis
    shorter than ``bins``, e.g. PAT's 2-channel groups), a matmul always does."""
    return x @ torch.as_tensor(_adaptive_average(x.shape[-1], bins), dtype=x.dtype,
                               device=x.device)


def pool_rows(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling of the second-to-last axis to ``bins`` values."""
    return torch.as_tensor(_adaptive_average(x.shape[-2], bins).T, dtype=x.dtype,
                           device=x.device) @ x


class PoolAttention(nn.Module):
    """POTTER's pooling attention: cost linear in the number of tokens (no softmax)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % EMBED_GROUPS:
            raise ValueError(f"pooling attention needs channels divisible by {EMBED_GROUPS}")
        self.norm = group_norm(dim)
        self.proj_patch = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj_embed = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj_out = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        patch = self.proj_patch(pool_last(x, 4) @ pool_rows(x, 4))  # (N, C, H, W)
        tokens = x.flatten(2).transpose(1, 2).reshape(n, h * w, EMBED_GROUPS, c // EMBED_GROUPS)
        embed = pool_last(tokens, 4) @ pool_rows(tokens, 4)  # (N, HW, 32, C / 32)
        # contiguous(): a depthwise conv on the strided view makes torch.export guard on the
        # batch size, which breaks the dynamic-batch ONNX export.
        embed = embed.reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w).contiguous()
        embed = self.proj_embed(embed)
        return self.proj_out(self.norm(patch + embed))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MetaFormerBlock(nn.Module):
    def __init__(self, dim: int, mixer: type[nn.Module], mlp_ratio: float = 4.0,
                 layer_scale: float = 1e-5):
        super().__init__()
        self.norm1, self.mixer = group_norm(dim), mixer(dim)
        self.norm2, self.mlp = group_norm(dim), Mlp(dim, mlp_ratio)
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.mixer(self.norm1(x))
        return x + self.scale2 * self.mlp(self.norm2(x))


class PoolAttnBlock(MetaFormerBlock):
    """POTTER's PAT block (pooling-attention MetaFormer block), also used by heads (e.g.
    CLIP-Hand's high-resolution aggregation)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, layer_scale: float = 1e-5):
        super().__init__(dim, PoolAttention, mlp_ratio, layer_scale)


class MetaFormer(nn.Module):
    """4-stage MetaFormer trunk. Input (N, 3, H, W) RGB in [0, 1]; maps at strides 4..32."""

    def __init__(self, layers: tuple[int, ...], mixer: type[nn.Module],
                 dims: tuple[int, ...] = EMBED_DIMS):
        super().__init__()
        self.normalize = Normalize()
        self.channels = tuple(dims)
        self.strides = (4, 8, 16, 32)
        self.downsamples = nn.ModuleList(
            [nn.Conv2d(3, dims[0], 7, 4, 2)]
            + [nn.Conv2d(dims[i - 1], dims[i], 3, 2, 1) for i in range(1, 4)])
        self.stages = nn.ModuleList(
            nn.Sequential(*(MetaFormerBlock(dim, mixer) for _ in range(count)))
            for dim, count in zip(dims, layers, strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(x)
        maps = []
        for down, stage in zip(self.downsamples, self.stages, strict=True):
            x = stage(down(x))
            maps.append(x)
        return maps


def poolformer_s12(pretrained: str | None = None) -> MetaFormer:
    no_pretrained_weights("poolformer_s12", pretrained)
    return MetaFormer(LAYERS["s12"], Pooling)


def poolformer_s24(pretrained: str | None = None) -> MetaFormer:
    no_pretrained_weights("poolformer_s24", pretrained)
    return MetaFormer(LAYERS["s24"], Pooling)


def pat_s12(pretrained: str | None = None) -> MetaFormer:
    """POTTER PAT-S12: CLIP-Hand-cls-S12's backbone."""
    no_pretrained_weights("pat_s12", pretrained)
    return MetaFormer(LAYERS["s12"], PoolAttention)


def pat_xs(pretrained: str | None = None) -> MetaFormer:
    """A real-time PAT of ours (not in POTTER): half widths (32, 64, 160, 256), blocks
    (1, 1, 3, 1) - about a tenth of PAT-S12's compute."""
    no_pretrained_weights("pat_xs", pretrained)
    return MetaFormer((1, 1, 3, 1), PoolAttention, dims=(32, 64, 160, 256))


def pat_s24(pretrained: str | None = None) -> MetaFormer:
    """POTTER PAT-S24: CLIP-Hand-cls-S24's backbone (the paper's best configuration)."""
    no_pretrained_weights("pat_s24", pretrained)
    return MetaFormer(LAYERS["s24"], PoolAttention)
