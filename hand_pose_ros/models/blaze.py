"""MediaPipe's hand networks (BlazePalm detector, hand landmark net) rebuilt as PyTorch modules.

Design (timm's order: blocks, model classes, configs as data, factories):
- The architectures are written out as ordinary ``nn.Module``s. Their weights come from the
  ``.tflite`` files of the mediapipe wheel (``weights.py``): ``tflite_reader`` lists the graph's
  parameterised layers in order and copies them into our layers, checking every shape.
- TensorFlow's "SAME" padding is asymmetric for stride 2 (more after than before), which PyTorch
  convolutions cannot express: an explicit ``ZeroPad2d`` precedes those convolutions.
- Inputs are NCHW float32 RGB in [0, 1]; outputs keep the ``.tflite`` output order and meaning,
  so the reference interpreter can check them one to one (see test/test_mediapipe_parity.py).
- Both modules are plain tensor programs (no data-dependent control flow), so they export to ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.models.tflite_reader import load_layers, read_param_layers
from hand_pose_ros.models.weights import weights_path


def same_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """Convolution with TensorFlow's SAME padding (input sizes divisible by ``stride``)."""
    total = max(kernel - stride, 0)
    before, after = total // 2, total - total // 2
    if before == after:
        return nn.Conv2d(cin, cout, kernel, stride, padding=before, groups=groups)
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                         nn.Conv2d(cin, cout, kernel, stride, groups=groups))


def param_layers(module: nn.Module) -> list[nn.Module]:
    """Layers that carry parameters, in registration order (= the order of the TFLite graph)."""
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.PReLU))]


# ---------------------------------------------------------------------------------------------
# Palm detector (BlazePalm, 192x192 input, 2016 SSD anchors)


class BlazeBlock(nn.Module):
    """Depthwise 5x5 + pointwise conv with a residual, then PReLU. Stride 2 pools the shortcut
    (2x2 max) and zero-pads its channels up to ``cout``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.depthwise = same_conv(cin, cin, 5, stride, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)
        self.pool = nn.MaxPool2d(2) if stride == 2 else nn.Identity()
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.pool(x)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(self.pointwise(self.depthwise(x)) + shortcut)


def blaze_stage(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(BlazeBlock(channels, channels) for _ in range(count)))


class FpnUp(nn.Module):
    """Upsample x2 (bilinear, half-pixel centres), 1x1 conv + PReLU, add the skip feature."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return skip + self.act(self.conv(x))


class PalmDetector(nn.Module):
    """BlazePalm.

    Input: (N, 3, 192, 192) RGB in [0, 1] (the letterboxed image).
    Outputs: ``boxes`` (N, 2016, 18) raw anchor-relative regressions in input pixels
    (box centre offset, size, then 7 keypoints), ``scores`` (N, 2016, 1) logits. Anchors: first
    the 24x24 grid (2 per cell), then the 12x12 grid (6 per cell), as ``palm_anchors()``.
    """

    def __init__(self, blocks_per_stage: int = 4):
        super().__init__()
        n = blocks_per_stage
        self.stem = nn.Sequential(same_conv(3, 32, 5, 2), nn.PReLU(32))
        self.stage96 = blaze_stage(32, n)
        self.stage48 = nn.Sequential(BlazeBlock(32, 64, 2), blaze_stage(64, n))
        self.stage24 = nn.Sequential(BlazeBlock(64, 128, 2), blaze_stage(128, n))
        self.stage12 = nn.Sequential(BlazeBlock(128, 256, 2), blaze_stage(256, n))
        self.stage6 = nn.Sequential(BlazeBlock(256, 256, 2), blaze_stage(256, n))
        self.up12 = FpnUp(256, 256)
        self.blocks12 = blaze_stage(256, 2)
        self.scores12 = nn.Conv2d(256, 6, 1)
        self.boxes12 = nn.Conv2d(256, 6 * 18, 1)
        self.up24 = FpnUp(256, 128)
        self.blocks24 = blaze_stage(128, 2)
        self.scores24 = nn.Conv2d(128, 2, 1)
        self.boxes24 = nn.Conv2d(128, 2 * 18, 1)

    @staticmethod
    def _per_anchor(x: torch.Tensor, values: int) -> torch.Tensor:
        # NCHW -> (N, H*W*anchors_per_cell, values), the order of the TFLite reshape (NHWC).
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, values)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stage96(self.stem(x))
        f24 = self.stage24(self.stage48(x))
        f12 = self.stage12(f24)
        x = self.stage6(f12)
        x12 = self.blocks12(self.up12(x, f12))
        x24 = self.blocks24(self.up24(x12, f24))
        scores = torch.cat([self._per_anchor(self.scores24(x24), 1),
                            self._per_anchor(self.scores12(x12), 1)], dim=1)
        boxes = torch.cat([self._per_anchor(self.boxes24(x24), 18),
                           self._per_anchor(self.boxes12(x12), 18)], dim=1)
        return boxes, scores


# ---------------------------------------------------------------------------------------------
# Hand landmark network (MobileNetV2-style, 224x224 input)


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), depthwise kxk (ReLU6), 1x1 project; shortcut 'none', 'identity' or
    'maxpool' (2x2 max pool of the input, for a stride-2 block that keeps its channels)."""

    def __init__(self, cin: int, cexp: int, cout: int, kernel: int, stride: int, shortcut: str):
        super().__init__()
        self.expand = nn.Conv2d(cin, cexp, 1)
        self.depthwise = same_conv(cexp, cexp, kernel, stride, groups=cexp)
        self.project = nn.Conv2d(cexp, cout, 1)
        self.shortcut = {"none": None, "identity": nn.Identity(), "maxpool": nn.MaxPool2d(2)}[
            shortcut]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(F.relu6(self.depthwise(F.relu6(self.expand(x)))))
        return y if self.shortcut is None else y + self.shortcut(x)


@dataclass(frozen=True)
class LandmarkNetConfig:
    """Architecture of one hand landmark variant.

    blocks: (in, expanded, out, kernel, stride, shortcut) per inverted residual block.
    head: channels of the last expand + depthwise 3x3 before global average pooling.
    """

    blocks: tuple[tuple[int, int, int, int, int, str], ...]
    head: int


def _repeat(block: tuple, times: int) -> tuple:
    return (block,) * times


LANDMARK_CONFIGS: dict[str, LandmarkNetConfig] = {
    "full": LandmarkNetConfig(
        blocks=(
            (16, 64, 24, 3, 2, "none"), (24, 144, 24, 3, 1, "identity"),
            (24, 144, 40, 5, 2, "none"), (40, 240, 40, 5, 1, "identity"),
            (40, 240, 80, 3, 2, "none"), *_repeat((80, 480, 80, 3, 1, "identity"), 2),
            (80, 480, 112, 5, 1, "none"), *_repeat((112, 672, 112, 5, 1, "identity"), 2),
            (112, 672, 192, 5, 2, "none"), *_repeat((192, 1152, 192, 5, 1, "identity"), 3),
        ),
        head=1152,
    ),
    "lite": LandmarkNetConfig(
        blocks=(
            (16, 64, 16, 3, 2, "maxpool"), (16, 96, 16, 3, 1, "identity"),
            (16, 96, 24, 5, 2, "none"), (24, 144, 24, 5, 1, "identity"),
            (24, 144, 48, 3, 2, "none"), *_repeat((48, 288, 48, 3, 1, "identity"), 2),
            (48, 288, 64, 5, 1, "none"), *_repeat((64, 384, 64, 5, 1, "identity"), 2),
            (64, 384, 112, 5, 2, "none"), *_repeat((112, 672, 112, 5, 1, "identity"), 3),
        ),
        head=672,
    ),
}


class HandLandmarkNet(nn.Module):
    """MediaPipe hand landmark network.

    Input: (N, 3, 224, 224) RGB in [0, 1], the rotated hand crop.
    Outputs, in the ``.tflite`` order:
        landmarks (N, 63): 21 x (x, y, z) in crop pixels (z relative to the wrist, same scale as x);
        presence (N, 1): probability that the crop holds a hand;
        handedness (N, 1): probability of MediaPipe's label "Left" (label map: Left, Right),
            which assumes a mirrored (selfie) image: on an unmirrored camera image it is the
            probability of a RIGHT hand;
        world (N, 63): 21 x (x, y, z) metres, origin near the hand centre, axes of the crop
            (x right, y down, z away from the camera).
    """

    def __init__(self, config: LandmarkNetConfig):
        super().__init__()
        self.stem = nn.Sequential(same_conv(3, 24, 3, 2), nn.ReLU6(),
                                  same_conv(24, 24, 3, 1, groups=24), nn.ReLU6(),
                                  nn.Conv2d(24, 16, 1))
        self.blocks = nn.Sequential(*(InvertedResidual(*b) for b in config.blocks))
        last = config.blocks[-1][2]
        self.head = nn.Sequential(nn.Conv2d(last, config.head, 1), nn.ReLU6(),
                                  same_conv(config.head, config.head, 3, 1, groups=config.head),
                                  nn.ReLU6())
        # Graph order of the dense heads: handedness, presence, landmarks, world landmarks.
        self.handedness = nn.Linear(config.head, 1)
        self.presence = nn.Linear(config.head, 1)
        self.landmarks = nn.Linear(config.head, 63)
        self.world = nn.Linear(config.head, 63)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))
        return (self.landmarks(features), torch.sigmoid(self.presence(features)),
                torch.sigmoid(self.handedness(features)), self.world(features))


# ---------------------------------------------------------------------------------------------
# Factories: build a module and load its weights from the verified cache.

PALM_BLOCKS = {"full": 4, "lite": 3}


def _check_variant(variant: str, known) -> None:
    if variant not in known:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(known)}")


def build_palm_detector(variant: str = "full") -> PalmDetector:
    """BlazePalm with the weights of ``palm_detection_<variant>.tflite``, in eval mode."""
    _check_variant(variant, PALM_BLOCKS)
    model = PalmDetector(PALM_BLOCKS[variant])
    path = weights_path(f"palm_detection_{variant}.tflite")
    load_layers(param_layers(model), read_param_layers(path), path.name)
    return model.eval()


def build_hand_landmark_net(variant: str = "full") -> HandLandmarkNet:
    """Hand landmark net with the weights of ``hand_landmark_<variant>.tflite``, in eval mode."""
    _check_variant(variant, LANDMARK_CONFIGS)
    model = HandLandmarkNet(LANDMARK_CONFIGS[variant])
    path = weights_path(f"hand_landmark_{variant}.tflite")
    load_layers(param_layers(model), read_param_layers(path), path.name)
    return model.eval()
