"""What the two-hand seed models (Handformer2T, DFL) share: the network base with its standard
outputs and losses, and the estimator that runs a trained network on crops holding both hands.

Design:
- ``TwoHandSeedNet`` (a ``SeedNet`` with ``hands_per_crop = 2``) takes (N, 3, S, S) RGB crops in
  [0, 1] around both hands and returns a dict with a hand axis, slot 0 the right hand and slot
  1 the left hand (``Handedness`` order; the slot *is* the handedness, so there is no
  ``right_logit``):

      joints_3d    (N, 2, 21, 3) metres, each hand relative to its own wrist, crop camera axes
                   (x right, y down, z forward)
      joints_2d    (N, 2, 21, 2) crop pixels (x column, y row; (0, 0) the top-left pixel centre)
      hand_logit   (N, 2)        per-hand presence logit (a crop may hold one hand only)
      root_offset  (N, 3)        metres, left wrist minus right wrist, crop camera axes (what
                                 MRRPE scores; papers give root-relative joints only, a
                                 bimanual teleoperation needs the hands' placement)
      vertices     (N, 2, V, 3)  metres, wrist-relative (mesh models only)

  and may add more keys (coarse stages, uncertainties) for its ``pose_loss``. Export note: take
  the batch size as ``images.shape[0]`` or reshape with -1, never ``len(images)`` (Python's
  ``len`` makes torch.export fix the batch of the ONNX graph to the example's).
- Training batches are ``data.batch.collate_batch(samples, hands=2)``: per-hand keys carry the
  same hand axis (``joints_3d`` (N, 2, 21, 3), ``joints_2d``, ``joint_valid`` (N, 2, 21),
  ``hand_present`` (N, 2), ``root_depth`` (N, 2)), plus ``relative_root`` (N, 3) (left wrist
  minus right wrist, zero unless both hands are present), ``image``, ``intrinsics``.
- ``training_loss`` = ``score_weight`` x per-hand presence BCE (all crops) + ``pose_loss`` on
  the crops holding at least one hand (a model masks per hand with ``hand_joint_mask``) +
  ``root_offset_weight`` x the MRRPE-style root-offset loss (mean Euclidean error of
  ``root_offset``, metres) on crops holding both hands.
- ``TwoHandEstimator.estimate(crops)`` returns a ``TwoHandEstimate``: a ``HandEstimate`` whose
  hand axis is flattened crop-major (entry ``2 c + h`` = hand ``h`` of crop ``c``; ``h`` = 0
  right, 1 left), so code written for ``HandEstimate`` (eval, fitting) reads it unchanged; it
  adds ``root_offset`` (N, 3) and ``roots_3d`` (2N, 3) (the right wrist at the origin of each
  crop, the left one at ``root_offset``). Callers tell it apart by the estimator's
  ``hands_per_crop == 2``.
- Checkpoints are the seed models' (``seed.save_checkpoint`` / ``read_checkpoint``);
  ``seed.load_seed_estimator(..., estimator_class=TwoHandEstimator)`` is the factory body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.models.base import HandEstimate
from hand_pose_ros.models.seed import (
    NUM_JOINTS,
    SeedEstimator,
    SeedNet,
    _sigmoid,
    select_crops,
)

HANDS = 2  # slots: 0 right, 1 left (Handedness order)
TWO_HAND_OUTPUTS = ("joints_3d", "joints_2d", "hand_logit", "root_offset")


# ---------------------------------------------------------------------------------------------
# Network base


class TwoHandScoreHead(nn.Module):
    """Per-hand presence logits from the coarsest backbone map: global average pooling, one
    linear layer to 2 logits (right, left), as ``seed.ScoreHead`` for one hand."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, HANDS)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> hand_logit (N, 2)."""
        return self.fc(feature_map.mean(dim=(2, 3)))


def hand_joint_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 2, 21) bool: joints with a label on hands present in the crop - the mask every
    per-hand joint loss uses (an absent hand's labels are zeros, not a pose)."""
    return batch["joint_valid"].bool() & (batch["hand_present"] > 0.5)[..., None]


def root_offset_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean error (metres) of (M, 3) root offsets: MRRPE as a loss. The epsilon keeps
    the gradient finite at a perfect prediction."""
    if len(pred) == 0:
        return pred.sum() * 0.0
    return torch.sqrt(((pred.float() - target.float()) ** 2).sum(-1) + 1e-12).mean()


class TwoHandSeedNet(SeedNet):
    """Base of every two-hand seed network (see the module docstring for outputs and batches).

    Class attributes a subclass sets: ``input_size``, ``num_vertices`` (as ``SeedNet``) and
    ``root_offset_weight`` (weight of the root-offset loss in ``training_loss``).
    ``pose_loss(outputs, batch)`` gets the crops holding at least one hand, with the hand axis,
    and must mask per hand (``hand_joint_mask``).
    """

    hands_per_crop: int = HANDS
    export_outputs = TWO_HAND_OUTPUTS
    root_offset_weight: float = 1.0

    def training_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                      score_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss = ``score_weight`` x per-hand presence BCE (all crops) + ``pose_loss``
        (crops with a hand) + ``root_offset_weight`` x root-offset loss (crops with both
        hands). Returns (loss, named parts for the training curves)."""
        present = batch["hand_present"].float()
        if present.ndim != 2 or present.shape[1] != HANDS:
            raise ValueError(f"a two-hand net needs two-hand batches (hand_present (N, 2), "
                             f"got {tuple(present.shape)}): collate with "
                             "data.batch.collate_batch(samples, hands=2)")
        hand_loss = F.binary_cross_entropy_with_logits(outputs["hand_logit"].float(), present)
        parts: dict[str, float] = {"hand_bce": float(hand_loss.detach())}
        total = score_weight * hand_loss
        any_hand = present.max(dim=1).values > 0.5
        if bool(any_hand.any()):
            sub_out, sub_batch = select_crops(outputs, any_hand), select_crops(batch, any_hand)
            pose, pose_parts = self.pose_loss(sub_out, sub_batch)
            total = total + pose
            parts.update(pose_parts, pose=float(pose.detach()))
        both = present.min(dim=1).values > 0.5
        if bool(both.any()):
            root = root_offset_loss(outputs["root_offset"][both], batch["relative_root"][both])
            total = total + self.root_offset_weight * root
            parts["root_offset_m"] = float(root.detach())
        parts["total"] = float(total.detach())
        return total, parts


# ---------------------------------------------------------------------------------------------
# Estimator


@dataclass
class TwoHandEstimate(HandEstimate):
    """A ``HandEstimate`` of 2N hands for N crops, crop-major: entry ``2 c + h`` is hand ``h``
    of crop ``c`` (0 right, 1 left); ``right_hand`` is 1 for slot 0 and 0 for slot 1.

    root_offset: (N, 3) metres, left wrist minus right wrist, crop camera axes.
    roots_3d: (2N, 3) wrist of every hand in metres with a per-crop origin at the right wrist
        (right: zeros, left: ``root_offset``); what eval's MRRPE reads.
    """

    root_offset: np.ndarray | None = None
    roots_3d: np.ndarray | None = None

    @property
    def num_crops(self) -> int:
        return len(self.scores) // HANDS

    def per_crop(self, name: str) -> np.ndarray:
        """Field ``name`` (a per-hand array) reshaped to (N, 2, ...)."""
        value = getattr(self, name)
        return value.reshape(self.num_crops, HANDS, *value.shape[1:])


class TwoHandEstimator(SeedEstimator):
    """Runs a trained ``TwoHandSeedNet`` behind any inference backend; crops holding both hands
    in, ``TwoHandEstimate`` (two hands per crop, right first) out. Construction as
    ``SeedEstimator``."""

    hands_per_crop = HANDS

    def estimate(self, crops: np.ndarray) -> TwoHandEstimate:
        """``crops``: (N, input_size, input_size, 3) uint8 RGB, each around both hands (or the
        one visible hand). Returns 2N hands, see ``TwoHandEstimate``.

        Raises:
            ValueError: wrong shape or dtype. FloatingPointError: non-finite network output.
        """
        v = self.net.num_vertices
        if len(crops) == 0:
            return TwoHandEstimate(
                np.zeros((0, NUM_JOINTS, 3)), np.zeros((0, NUM_JOINTS, 2)), np.zeros(0),
                np.zeros(0), np.zeros((0, NUM_JOINTS)), np.zeros((0, v, 3)) if v else None,
                root_offset=np.zeros((0, 3)), roots_3d=np.zeros((0, 3)))
        out = self._run(crops)
        n = len(crops)
        root_offset = out["root_offset"].reshape(n, 3).astype(np.float64)
        roots = np.zeros((n, HANDS, 3))
        roots[:, 1] = root_offset
        return self._checked(TwoHandEstimate(
            joints_3d=out["joints_3d"].reshape(n * HANDS, NUM_JOINTS, 3).astype(np.float64),
            joints_2d=out["joints_2d"].reshape(n * HANDS, NUM_JOINTS, 2).astype(np.float64),
            scores=_sigmoid(out["hand_logit"].reshape(n * HANDS)),
            right_hand=np.tile(np.array([1.0, 0.0]), n),
            joint_confidence=np.ones((n * HANDS, NUM_JOINTS)),
            vertices=(out["vertices"].reshape(n * HANDS, v, 3).astype(np.float64)
                      if "vertices" in out else None),
            root_offset=root_offset,
            roots_3d=roots.reshape(n * HANDS, 3),
        ), root_offset)
