"""HRNetV2-W18 / W32 (Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition", TPAMI 2020), as in the official HRNet code: stem of two stride-2 3x3 convs, one
stage of 4 bottlenecks, then stages of 2, 3 and 4 parallel branches (1, 4 and 3 modules of 4
basic blocks per branch) with repeated multi-resolution fusion.

Returns the 4 branch outputs of the last stage (strides 4, 8, 16, 32; channels W, 2W, 4W, 8W)
- "V2" keeps all resolutions at the end (the keypoint HRNetV1 keeps only the finest); heads
choose what they fuse. Parameter counts: 9.56 M (W18), 29.30 M (W32); the widely quoted
9.6 M of HRNetV2-W18 (face alignment) and 28.5 M of pose HRNet-W32 (no last-stage fusion of the
coarse outputs) bracket these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.models.backbones import no_pretrained_weights
from hand_pose_ros.models.backbones.common import Normalize, conv_bn, init_conv_weights
from hand_pose_ros.models.backbones.resnet import BasicBlock, Bottleneck, zero_init_residuals

MODULES_PER_STAGE = (1, 4, 3)  # stages 2, 3, 4 (same for every width)
BLOCKS_PER_BRANCH = 4


class FuseLayer(nn.Module):
    """Output branch ``i`` = ReLU(sum over input branches j of x_j resampled to branch i):
    coarser inputs by 1x1 conv + BN + nearest upsampling, finer ones by stride-2 3x3 convs."""

    def __init__(self, channels: tuple[int, ...], i: int):
        super().__init__()
        paths: list[nn.Module] = []
        for j, cj in enumerate(channels):
            if j == i:
                paths.append(nn.Identity())
            elif j > i:
                paths.append(conv_bn(cj, channels[i], 1, relu=False))
            else:  # (i - j) stride-2 convs; the last one maps to branch i's channels, no ReLU
                steps = [conv_bn(cj, cj, 3, 2) for _ in range(i - j - 1)]
                steps.append(conv_bn(cj, channels[i], 3, 2, relu=False))
                paths.append(nn.Sequential(*steps))
        self.paths = nn.ModuleList(paths)
        self.i = i

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[self.i]
        for j, (x, path) in enumerate(zip(xs, self.paths, strict=True)):
            if j == self.i:
                continue
            y = path(x)
            if j > self.i:
                y = F.interpolate(y, size=out.shape[-2:], mode="nearest")
            out = out + y
        return F.relu(out)


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then the fusion of all branches into all branches."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(BLOCKS_PER_BRANCH)))
            for c in channels)
        self.fuse = nn.ModuleList(FuseLayer(channels, i) for i in range(len(channels)))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        return [fuse(xs) for fuse in self.fuse]


class HRNet(nn.Module):
    """HRNetV2 trunk of width ``width``. Input (N, 3, H, W) RGB in [0, 1]."""

    def __init__(self, width: int):
        super().__init__()
        self.normalize = Normalize()
        self.stem = nn.Sequential(conv_bn(3, 64, 3, 2), conv_bn(64, 64, 3, 2))
        self.layer1 = nn.Sequential(Bottleneck(64, 64),
                                    *(Bottleneck(256, 64) for _ in range(3)))
        self.channels = tuple(width * 2 ** i for i in range(4))
        self.strides = (4, 8, 16, 32)
        # Stage s (2..4) has s branches; a transition makes the new, coarsest branch from the
        # previous stage's coarsest one (stage 2: both branches from layer1's 256 channels).
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for s, modules in zip((2, 3, 4), MODULES_PER_STAGE, strict=True):
            chans = self.channels[:s]
            if s == 2:
                self.transitions.append(nn.ModuleList(
                    [conv_bn(256, chans[0], 3), conv_bn(256, chans[1], 3, 2)]))
            else:
                self.transitions.append(nn.ModuleList(
                    [*(nn.Identity() for _ in range(s - 1)),
                     conv_bn(chans[-2], chans[-1], 3, 2)]))
            self.stages.append(nn.Sequential(*(HighResolutionModule(chans)
                                               for _ in range(modules))))
        init_conv_weights(self)
        zero_init_residuals(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.stem(self.normalize(x)))
        xs = [x]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            sources = [*xs, xs[-1]]  # the new branch grows from the coarsest one
            xs = stage([t(src) for t, src in zip(transition, sources, strict=True)])
        return xs


def hrnet_w18(pretrained: str | None = None) -> HRNet:
    no_pretrained_weights("hrnet_w18", pretrained)
    return HRNet(18)


def hrnet_w32(pretrained: str | None = None) -> HRNet:
    no_pretrained_weights("hrnet_w32", pretrained)
    return HRNet(32)
