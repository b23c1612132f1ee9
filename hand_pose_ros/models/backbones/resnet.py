"""ResNet-18/34/50 trunks (He et al. 2016), layer for layer as torchvision's ``resnet*``
(v1.5: the stride of a bottleneck sits on its 3x3 convolution), without the classifier.

Returns the outputs of ``layer1..layer4`` (strides 4, 8, 16, 32). Parameter counts equal
torchvision's minus the 1000-class ``fc``: 11.18 M (18), 21.28 M (34), 23.51 M (50).
"""

from __future__ import annotations

import torch
from torch import nn

from hand_pose_ros.models.backbones import no_pretrained_weights
from hand_pose_ros.models.backbones.common import (
    Normalize,
    StagedBackbone,
    conv_bn,
    init_conv_weights,
)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(conv_bn(cin, planes, 3, stride),
                                  conv_bn(planes, cout, 3, relu=False))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride, relu=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(conv_bn(cin, planes, 1), conv_bn(planes, planes, 3, stride),
                                  conv_bn(planes, cout, 1, relu=False))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride, relu=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def zero_init_residuals(module: nn.Module) -> None:
    """Zero the last BatchNorm scale of every residual branch (Goyal et al. 2017): each block
    starts as the identity, which makes training from scratch markedly more stable."""
    for m in module.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            nn.init.zeros_(m.body[-1][1].weight)


class ResNet(StagedBackbone):
    """ResNet trunk. Input (N, 3, H, W) RGB in [0, 1]; output 4 maps at strides 4..32."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int]):
        super().__init__()
        self.normalize = Normalize()
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, count in enumerate(layers):
            planes = 64 * 2 ** i
            blocks = [block(cin, planes, 1 if i == 0 else 2)]
            cin = planes * block.expansion
            blocks += [block(cin, planes) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(64 * 2 ** i * block.expansion for i in range(4))
        self.strides = (4, 8, 16, 32)
        init_conv_weights(self)
        zero_init_residuals(self)


def resnet18(pretrained: str | None = None) -> ResNet:
    no_pretrained_weights("resnet18", pretrained)
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet34(pretrained: str | None = None) -> ResNet:
    no_pretrained_weights("resnet34", pretrained)
    return ResNet(BasicBlock, (3, 4, 6, 3))


def resnet50(pretrained: str | None = None) -> ResNet:
    no_pretrained_weights("resnet50", pretrained)
    return ResNet(Bottleneck, (3, 4, 6, 3))
