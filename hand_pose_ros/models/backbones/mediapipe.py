"""The MediaPipe hand landmark network's convolutional trunk as a backbone.

It is the only real-image pretrained network on these machines: ``pretrained="mediapipe"``
loads the trunk weights from the fetched ``hand_landmark_<variant>.tflite`` (run
``hand-pose fetch-weights`` once); ``pretrained=None`` is the same architecture from scratch,
the other half of the pretraining comparison of issue 6.

Maps: the last block output at strides 4, 8 and 16, and at stride 32 the net's head (1x1
expansion + depthwise 3x3, the features its dense heads pool), so the stride-32 map of the
pretrained trunk is exactly what MediaPipe's own landmark/world heads read.
Input: RGB in [0, 1], as the landmark net takes it (no further normalisation).
"""

from __future__ import annotations

import torch
from torch import nn

from hand_pose_ros.models.blaze import (
    LANDMARK_CONFIGS,
    HandLandmarkNet,
    InvertedResidual,
    build_hand_landmark_net,
)

RESIDUAL_INIT_GAIN = 0.1


class MediaPipeTrunk(nn.Module):
    """Stem, inverted residual blocks and head of ``HandLandmarkNet``, without its dense heads."""

    def __init__(self, variant: str = "full", pretrained: str | None = None):
        super().__init__()
        if pretrained not in (None, "mediapipe"):
            raise ValueError(f"backbone mediapipe offers pretrained=None or 'mediapipe', "
                             f"not {pretrained!r}")
        if pretrained == "mediapipe":
            net = build_hand_landmark_net(variant)
        else:
            net = HandLandmarkNet(LANDMARK_CONFIGS[variant])
            _init_from_scratch(net)
        net.train()
        self.stem, self.blocks, self.head = net.stem, net.blocks, net.head
        # MediaPipe's dense heads read the mean of the stride-32 map, as seed.ScoreHead and
        # ReJSHand's 2D generator do: kept (not as parameters) so those can start from them.
        self.dense_heads = None if pretrained is None else {
            name: (layer.weight.detach().clone(), layer.bias.detach().clone())
            for name, layer in (("landmarks", net.landmarks), ("presence", net.presence),
                                ("handedness", net.handedness))}
        config = LANDMARK_CONFIGS[variant]
        # Tap the last block of strides 4, 8 and 16: the one before each stride-2 block.
        self.taps = tuple(i - 1 for i, block in enumerate(config.blocks) if block[4] == 2)[1:]
        taps = self.taps
        self.channels = tuple(config.blocks[i][2] for i in taps) + (config.head,)
        self.strides = (4, 8, 16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                maps.append(x)
        maps.append(self.head(x))
        return maps


def _init_from_scratch(net: HandLandmarkNet) -> None:
    """He initialisation for the convolutions followed by ReLU6, unit-gain for the linear
    projections, scaled by ``RESIDUAL_INIT_GAIN`` in identity-shortcut blocks (each starts close
    to the identity, as in Fixup/SkipInit; not exactly zero, so exports keep distinct weights).

    Why: the network has no normalisation layers (MediaPipe folded them into the weights), so
    PyTorch's default init shrinks the signal at every block: at stride 32 the features of
    different images then agree to ~1e-8 and training cannot start from them."""
    for module in net.modules():
        if isinstance(module, InvertedResidual):
            nn.init.kaiming_normal_(module.expand.weight, nonlinearity="relu")
            depthwise = [m for m in module.depthwise.modules() if isinstance(m, nn.Conv2d)][0]
            nn.init.kaiming_normal_(depthwise.weight, nonlinearity="relu")
            nn.init.kaiming_normal_(module.project.weight, nonlinearity="linear")
            if module.shortcut is not None:
                module.project.weight.data.mul_(RESIDUAL_INIT_GAIN)
    for conv in [m for m in (*net.stem.modules(), *net.head.modules())
                 if isinstance(m, nn.Conv2d)]:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")


def mediapipe(pretrained: str | None = None) -> MediaPipeTrunk:
    """Trunk of hand_landmark_full (2.57 M parameters)."""
    return MediaPipeTrunk("full", pretrained)


def mediapipe_lite(pretrained: str | None = None) -> MediaPipeTrunk:
    """Trunk of hand_landmark_lite (0.93 M parameters)."""
    return MediaPipeTrunk("lite", pretrained)
