"""FastViT (Vasu et al., "FastViT: A fast hybrid vision transformer using structural
reparameterization", ICCV 2023): T8 (the real-time size) and MA36 (EHPE's and ReJSHand's
backbone), following Apple's released code.

- Stem: MobileOne blocks 3x3 stride 2, depthwise 3x3 stride 2, 1x1 (stride 4).
- Stages: RepMixer blocks (x + s * (BN(dwconv3x3(x)) - BN(x)), then a ConvFFN: depthwise
  7x7 + BN, 1x1 expansion, GELU, 1x1); MA36's last stage puts a conditional positional
  encoding (depthwise 7x7 residual) first and uses attention blocks (BN, multi-head self
  attention with 32-channel heads, ConvFFN).
- Between stages: a large-kernel patch embedding (7x7 depthwise with channel multiplier,
  stride 2, plus a parallel 3x3 branch) and a 1x1 MobileOne block.

Structural reparameterisation: the modules are built in their train-time form (parallel
conv+BN branches, BN "norm" branches, residual CPE). ``reparameterize(model)`` folds every one
of them into a single convolution in place - the same function in eval mode (BatchNorm with its
running statistics), fewer kernels - as the paper does for inference; ``SeedEstimator`` applies
it before building a runtime. Parameter counts are those of the train-time form without
classifier:
T8 3.17 M, MA36 42.6 M (timm's train-time counts, 4.0 M / 44.1 M, add the ~0.8 M / ~1.5 M
classifier head; the paper's 3.6 M / 42.7 M are of the reparameterised net with head).
"""

from __future__ import annotations

import torch
from torch import nn

from hand_pose_ros.models.backbones import no_pretrained_weights
from hand_pose_ros.models.backbones.common import Normalize, StagedBackbone, conv_bn


class MobileOneBlock(nn.Module):
    """Sum of a kxk conv+BN, a 1x1 conv+BN 'scale' branch (k > 1) and a BN identity branch
    (same shape in and out), then GELU (or nothing)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, scale_branch: bool = True, conv_branch: bool = True):
        super().__init__()
        self.shape = (cin, cout, kernel, stride, groups)
        self.conv = (conv_bn(cin, cout, kernel, stride, groups, relu=False) if conv_branch
                     else None)
        self.scale = (conv_bn(cin, cout, 1, stride, groups, relu=False)
                      if scale_branch and kernel > 1 else None)
        self.skip = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for branch in (self.conv, self.scale, self.skip):
            if branch is not None:
                out = out + branch(x)
        return self.act(out)


class LargeKernelConv(nn.Module):
    """GELU(BN(conv7x7(x)) + BN(conv3x3(x))), grouped by input channel, stride 2."""

    def __init__(self, cin: int, cout: int, kernel: int = 7, stride: int = 2):
        super().__init__()
        self.large = conv_bn(cin, cout, kernel, stride, groups=cin, relu=False)
        self.small = conv_bn(cin, cout, 3, stride, groups=cin, relu=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.large(x) + self.small(x))


class RepMixer(nn.Module):
    """x + s * (mixer(x) - norm(x)): depthwise-conv token mixing with a learnt residual."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.norm = MobileOneBlock(dim, dim, 3, groups=dim, act=False, scale_branch=False,
                                   conv_branch=False)
        self.mixer = MobileOneBlock(dim, dim, 3, groups=dim, act=False)
        self.scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * (self.mixer(x) - self.norm(x))


class ConvFFN(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.conv = conv_bn(dim, dim, 7, groups=dim, relu=False)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for m in (self.conv[0], self.fc1, self.fc2):
            nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class RepMixerBlock(nn.Module):
    def __init__(self, dim: int, ratio: float, layer_scale: float):
        super().__init__()
        self.mixer = RepMixer(dim, layer_scale)
        self.ffn = ConvFFN(dim, ratio)
        self.scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x)
        return x + self.scale * self.ffn(x)


class SelfAttention(nn.Module):
    """Multi-head self attention over the H*W tokens of a map, 32 channels per head."""

    def __init__(self, dim: int, head_dim: int = 32):
        super().__init__()
        self.heads = dim // head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        q, k, v = self.qkv(tokens).reshape(n, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # (N, heads, HW, head_dim)
        out = self.proj(out.transpose(1, 2).reshape(n, h * w, c))
        return out.transpose(1, 2).reshape(n, c, h, w)


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, ratio: float, layer_scale: float):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.attn = SelfAttention(dim)
        self.ffn = ConvFFN(dim, ratio)
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm(x))
        return x + self.scale2 * self.ffn(x)


class ConditionalPosEnc(nn.Module):
    """x + depthwise 7x7 conv of x (CPE, Chu et al. 2023)."""

    def __init__(self, dim: int):
        super().__init__()
        self.pe = nn.Conv2d(dim, dim, 7, 1, 3, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe(x)


class FastViT(StagedBackbone):
    """FastViT trunk. Input (N, 3, H, W) RGB in [0, 1]; maps at strides 4, 8, 16, 32."""

    def __init__(self, layers: tuple[int, ...], dims: tuple[int, ...], mlp_ratio: float,
                 mixers: tuple[str, ...], layer_scale: float):
        super().__init__()
        self.normalize = Normalize()
        self.channels = tuple(dims)
        self.strides = (4, 8, 16, 32)
        self.stem = nn.Sequential(MobileOneBlock(3, dims[0], 3, 2),
                                  MobileOneBlock(dims[0], dims[0], 3, 2, groups=dims[0]),
                                  MobileOneBlock(dims[0], dims[0], 1))
        stages = []
        for i, (count, dim, mixer) in enumerate(zip(layers, dims, mixers, strict=True)):
            parts: list[nn.Module] = []
            if i > 0:
                parts += [LargeKernelConv(dims[i - 1], dim), MobileOneBlock(dim, dim, 1)]
            if mixer == "attention":
                parts.append(ConditionalPosEnc(dim))
                parts += [AttentionBlock(dim, mlp_ratio, layer_scale) for _ in range(count)]
            else:
                parts += [RepMixerBlock(dim, mlp_ratio, layer_scale) for _ in range(count)]
            stages.append(nn.Sequential(*parts))
        self.stages = nn.ModuleList(stages)


def fastvit_t8(pretrained: str | None = None) -> FastViT:
    """FastViT-T8: RepMixer in every stage, dims 48-384, MLP ratio 3."""
    no_pretrained_weights("fastvit_t8", pretrained)
    return FastViT((2, 2, 4, 2), (48, 96, 192, 384), 3.0, ("repmixer",) * 4, 1e-5)


def fastvit_ma36(pretrained: str | None = None) -> FastViT:
    """FastViT-MA36: dims 76-608, 6/6/18/6 blocks, attention in the last stage."""
    no_pretrained_weights("fastvit_ma36", pretrained)
    return FastViT((6, 6, 18, 6), (76, 152, 304, 608), 4.0,
                   ("repmixer", "repmixer", "repmixer", "attention"), 1e-6)


# ---------------------------------------------------------------------------------------------
# Reparameterisation for inference


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of conv(``weight``, no bias) followed by ``bn`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _identity_kernel(channels: int, groups: int, kernel: int) -> torch.Tensor:
    """Kernel of the identity map as a (grouped) kxk convolution."""
    per_group = channels // groups
    weight = torch.zeros(channels, per_group, kernel, kernel)
    weight[torch.arange(channels), torch.arange(channels) % per_group, kernel // 2,
           kernel // 2] = 1.0
    return weight


def _pad_to(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    pad = (kernel - weight.shape[-1]) // 2
    return nn.functional.pad(weight, (pad, pad, pad, pad))


def _conv(cin: int, cout: int, kernel: int, stride: int, groups: int, weight: torch.Tensor,
          bias: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv


def _mobileone_kernel(block: MobileOneBlock) -> tuple[torch.Tensor, torch.Tensor]:
    cin, cout, kernel, _, groups = block.shape
    weight = torch.zeros(cout, cin // groups, kernel, kernel)
    bias = torch.zeros(cout)
    for branch in (block.conv, block.scale):
        if branch is not None:
            w, b = _fold_bn(branch[0].weight, branch[1])
            weight, bias = weight + _pad_to(w, kernel), bias + b
    if block.skip is not None:
        w, b = _fold_bn(_identity_kernel(cin, groups, kernel), block.skip)
        weight, bias = weight + w, bias + b
    return weight, bias


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """Fold every train-time multi-branch module of a FastViT (anywhere inside ``model``) into
    one convolution, in place; returns ``model``. Only for inference: the folded model can no
    longer be trained as the paper trains it, and must be in eval mode (BatchNorm statistics)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            folded = _fold(child)
            if folded is not None:
                setattr(parent, name, folded)
    return model


def _fold(module: nn.Module) -> nn.Module | None:
    """The single-conv equivalent of a foldable module, None for any other module."""
    if isinstance(module, MobileOneBlock):
        cin, cout, kernel, stride, groups = module.shape
        return nn.Sequential(_conv(cin, cout, kernel, stride, groups,
                                   *_mobileone_kernel(module)), module.act)
    if isinstance(module, LargeKernelConv):
        large, small = module.large[0], module.small[0]
        w1, b1 = _fold_bn(large.weight, module.large[1])
        w2, b2 = _fold_bn(small.weight, module.small[1])
        kernel = large.kernel_size[0]
        return nn.Sequential(_conv(large.in_channels, large.out_channels, kernel,
                                   large.stride[0], large.groups, w1 + _pad_to(w2, kernel),
                                   b1 + b2), module.act)
    if isinstance(module, RepMixer):
        # x + s (mixer(x) - norm(x)) = conv with kernel I + s (W_m - W_n), bias s (b_m - b_n).
        dim = module.scale.shape[0]
        wm, bm = _mobileone_kernel(module.mixer)
        wn, bn = _mobileone_kernel(module.norm)
        s = module.scale.view(-1)
        weight = _identity_kernel(dim, dim, 3) + s.view(-1, 1, 1, 1) * (wm - wn)
        return _conv(dim, dim, 3, 1, dim, weight, s * (bm - bn))
    if isinstance(module, ConditionalPosEnc):
        pe = module.pe
        dim = pe.in_channels
        return _conv(dim, dim, 7, 1, dim, _identity_kernel(dim, dim, 7) + pe.weight, pe.bias)
    if isinstance(module, ConvFFN):
        w, b = _fold_bn(module.conv[0].weight, module.conv[1])
        dim = w.shape[0]
        module.conv = _conv(dim, dim, 7, 1, dim, w, b)
    return None
