"""Image backbones for the seed models, built by name with ``create_backbone``.

Contract (shared by every backbone):
- input ``x``: (N, 3, H, W) float32 RGB in [0, 1]; a backbone that wants another range (e.g.
  ImageNet mean/std) normalises inside its ``forward``;
- output: a list of feature maps, finest first, map ``i`` of shape
  (N, ``channels[i]``, H / ``strides[i]``, W / ``strides[i]``) for H, W divisible by the
  coarsest stride.

Why the architectures are written here: torchvision and timm are not installable on these
machines without pulling a CUDA build of torch, and no ImageNet weights can be downloaded
anyway. The only real-image pretrained weights available are MediaPipe's hand landmark net,
offered as the ``mediapipe`` backbone with ``pretrained="mediapipe"``.

Families (one module each): ``resnet`` (He et al. 2016), ``hrnet`` (HRNetV2, Wang et al.
2020), ``fastvit`` (Vasu et al. 2023), ``metaformer`` (PoolFormer, Yu et al. 2022, and POTTER's
pooling-attention transformer PAT, Zheng et al. 2023 - CLIP-Hand's backbone), ``mediapipe``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

# Backbone name -> module defining a factory ``<name>(pretrained=None) -> nn.Module``.
BACKBONES: dict[str, str] = {
    "resnet18": "hand_pose_ros.models.backbones.resnet",
    "resnet34": "hand_pose_ros.models.backbones.resnet",
    "resnet50": "hand_pose_ros.models.backbones.resnet",
    "hrnet_w18": "hand_pose_ros.models.backbones.hrnet",
    "hrnet_w32": "hand_pose_ros.models.backbones.hrnet",
    "fastvit_t8": "hand_pose_ros.models.backbones.fastvit",
    "fastvit_ma36": "hand_pose_ros.models.backbones.fastvit",
    "poolformer_s12": "hand_pose_ros.models.backbones.metaformer",
    "poolformer_s24": "hand_pose_ros.models.backbones.metaformer",
    "pat_xs": "hand_pose_ros.models.backbones.metaformer",
    "pat_s12": "hand_pose_ros.models.backbones.metaformer",
    "pat_s24": "hand_pose_ros.models.backbones.metaformer",
    "mediapipe": "hand_pose_ros.models.backbones.mediapipe",
    "mediapipe_lite": "hand_pose_ros.models.backbones.mediapipe",
}


def list_backbones() -> list[str]:
    """Names accepted by ``create_backbone``."""
    return sorted(BACKBONES)


def create_backbone(name: str, pretrained: str | None = None) -> nn.Module:
    """Build backbone ``name`` with ``.channels`` and ``.strides`` (tuples, finest map first).

    Args:
        name: one of ``list_backbones()``.
        pretrained: None (random initialisation) or the name of a weight source the backbone
            offers (only ``"mediapipe"`` for the ``mediapipe*`` backbones).

    Raises:
        ValueError: unknown name, or a weight source the backbone does not offer.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {list_backbones()}")
    factory: Callable[..., nn.Module] = getattr(importlib.import_module(BACKBONES[name]), name)
    return factory(pretrained=pretrained)


def no_pretrained_weights(name: str, pretrained: str | None) -> None:
    """Raise for a backbone with no pretrained weights here when some were asked for."""
    if pretrained is not None:
        raise ValueError(
            f"backbone {name!r} has no {pretrained!r} weights here (no ImageNet weights can be "
            "downloaded on these machines); use pretrained=None, or the 'mediapipe' backbone "
            "with pretrained='mediapipe' for real-image pretrained features")


__all__ = ["BACKBONES", "create_backbone", "list_backbones"]
