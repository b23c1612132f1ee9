"""Training batches: ``HandSample`` lists -> dicts of tensors (the format of the seed models).

``collate_batch(samples)`` (single-hand models; every sample holds at most one hand):

    image         (N, 3, S, S) float32  RGB in [0, 1]
    joints_3d     (N, 21, 3)   float32  metres, relative to the wrist (joint 0), crop camera axes
                                        (x right, y down, z forward)
    joints_2d     (N, 21, 2)   float32  crop pixels (x column, y row; (0, 0) top-left centre)
    joint_valid   (N, 21)      bool
    vertices      (N, V, 3)    float32  metres, relative to the wrist; only when every sample
                                        has vertices of one topology (synthetic: V = 776)
    right         (N,)         float32  1 for a right hand, 0 for a left hand (and negatives)
    hand_present  (N,)         float32  0 for hand-free crops (negatives)
    intrinsics    (N, 3, 3)    float32  the crop's pinhole matrix, pixels
    root_depth    (N,)         float32  wrist depth z in metres
    segmentation  (N, S, S)    int64    33 classes (``data.sample.SEGMENTATION_CLASSES``); only
                                        when every sample has one

Hand-free samples get zero labels and ``joint_valid`` False, so a loss masked by
``joint_valid`` / ``hand_present`` ignores them. Root-relative labels need the wrist: a hand
whose wrist is not annotated gets ``joint_valid`` False for every joint, and unannotated
joints hold zeros.

``collate_batch(samples, hands=2)`` (two-hand models) gives every per-hand key a hand axis of
size 2, slot 0 the right hand and slot 1 the left hand (``Handedness`` order), whatever the
sample holds (a lone left hand fills slot 1, slot 0 is then absent):

    joints_3d (N, 2, 21, 3), joints_2d (N, 2, 21, 2), joint_valid (N, 2, 21),
    vertices (N, 2, V, 3), hand_present (N, 2), root_depth (N, 2) - each hand relative to its
    own wrist, as above; plus
    relative_root (N, 3) float32  left wrist minus right wrist, metres (zero unless both hands
                                  are present), the quantity MRRPE scores;
    image, intrinsics, segmentation as above; no ``right`` (the slot says it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hand_pose_ros.data.sample import HandSample
from hand_pose_ros.hand.joints import NUM_JOINTS, Handedness


def _check_sizes(samples: Sequence[HandSample]) -> None:
    if not samples:
        raise ValueError("collate_batch needs at least one sample")
    sizes = {s.image.shape for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"a batch holds crops of one size, got {sorted(sizes)}; resize the "
                         "crops to the model's input size first")


def _common(samples: Sequence[HandSample]) -> dict[str, torch.Tensor]:
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    batch = {
        "image": images.permute(0, 3, 1, 2).contiguous().float().div_(255.0),
        "intrinsics": torch.from_numpy(
            np.stack([s.intrinsics for s in samples]).astype(np.float32)),
    }
    if all(s.segmentation is not None for s in samples):
        batch["segmentation"] = torch.from_numpy(
            np.stack([s.segmentation for s in samples]).astype(np.int64))
    return batch


def _num_vertices(samples: Sequence[HandSample]) -> int | None:
    """Vertex count when every sample has vertices of one topology, else None."""
    if any(s.vertices is None for s in samples) or len({s.mesh for s in samples}) != 1:
        return None
    counts = {s.vertices.shape[1] for s in samples}
    return counts.pop() if len(counts) == 1 else None


def collate_batch(samples: Sequence[HandSample], hands: int = 1) -> dict[str, torch.Tensor]:
    """Stack samples into a training batch (see the module docstring for keys and units).

    Args:
        samples: crops of one size; with ``hands=1`` each holds zero or one hand.
        hands: 1 for single-hand models, 2 for the two-hand layout (hand axis, right first).
    """
    if hands not in (1, 2):
        raise ValueError(f"hands must be 1 or 2, got {hands}")
    _check_sizes(samples)
    if hands == 1:
        many = [s.key or str(i) for i, s in enumerate(samples) if s.num_hands > 1]
        if many:
            raise ValueError(f"samples {many[:3]} hold two hands; a single-hand batch needs "
                             "one-hand crops (kind='single') or collate_batch(..., hands=2)")
    n, slots = len(samples), hands
    num_vertices = _num_vertices(samples)
    joints_3d = np.zeros((n, slots, NUM_JOINTS, 3), np.float32)
    joints_2d = np.zeros((n, slots, NUM_JOINTS, 2), np.float32)
    joint_valid = np.zeros((n, slots, NUM_JOINTS), bool)
    present = np.zeros((n, slots), np.float32)
    right = np.zeros((n, slots), np.float32)
    roots = np.zeros((n, slots, 3), np.float64)
    vertices = None if num_vertices is None else np.zeros((n, slots, num_vertices, 3), np.float32)
    for i, s in enumerate(samples):
        for h, side in enumerate(s.handedness):
            slot = 0 if hands == 1 else int(side)
            valid = s.joint_valid[h] & s.joint_valid[h, 0]
            present[i, slot] = 1.0
            right[i, slot] = float(side == Handedness.RIGHT)
            joint_valid[i, slot] = valid
            # Unannotated joints stay zero (datasets may hold NaN there).
            joints_2d[i, slot][valid] = s.joints_2d[h][valid]
            if not valid[0]:
                continue
            root = s.joints_3d[h, 0]
            roots[i, slot] = root
            joints_3d[i, slot][valid] = s.joints_3d[h][valid] - root
            if vertices is not None:
                vertices[i, slot] = s.vertices[h] - root
    batch = _common(samples)
    per_hand = {
        "joints_3d": joints_3d, "joints_2d": joints_2d, "joint_valid": joint_valid,
        "hand_present": present, "root_depth": roots[..., 2].astype(np.float32),
    }
    if vertices is not None:
        per_hand["vertices"] = vertices
    if hands == 1:
        per_hand["right"] = right
        batch.update({k: torch.from_numpy(np.ascontiguousarray(v[:, 0]))
                      for k, v in per_hand.items()})
    else:
        batch.update({k: torch.from_numpy(v) for k, v in per_hand.items()})
        both = present.all(axis=1)[:, None]
        batch["relative_root"] = torch.from_numpy(
            np.where(both, roots[:, 1] - roots[:, 0], 0.0).astype(np.float32))
    return batch
