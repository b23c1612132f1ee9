"""Pieces shared by the backbone families."""

from __future__ import annotations

import torch
from torch import nn

# ImageNet statistics: the input normalisation these architectures were designed and tuned with
# (kept even without ImageNet weights, so their published hyper-parameters still apply).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std per RGB channel, for inputs in [0, 1]. Buffers, not parameters."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class StagedBackbone(nn.Module):
    """A ``normalize`` -> ``stem`` -> ``stages`` (ModuleList) trunk whose output is every
    stage's map, finest first (ResNet, FastViT); subclasses build the three modules."""

    normalize: nn.Module
    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(self.normalize(x))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same'-style padding kernel // 2) + BatchNorm [+ ReLU]."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_conv_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, unit BatchNorm: torchvision's ResNet/HRNet
    defaults, right for ReLU networks trained from scratch."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
