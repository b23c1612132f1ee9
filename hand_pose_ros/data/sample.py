"""The one sample type every data source yields, its part-segmentation classes, and .npz shards.

``HandSample`` is what the synthetic engine renders and what the FreiHAND, InterHand2.6M and RHD
readers load: an RGB image, the pinhole intrinsics of that image, and per hand (right first,
then left) 3D joints in the camera optical frame (x right, y down, z forward; metres), their
pixels, validity, handedness, optional mesh vertices, plus optional masks.

Part segmentation follows DFL (Decoupled Feature Learning, seed paper 001), which takes it from
Fan et al. 2021 (DIGIT): 33 classes = background + 16 parts per hand x 2 hands. DIGIT's 16 parts
are MANO's 16 skinning segments (the root/palm and three bones per finger). The open hand
model has exactly these 16 segments (``hand.mesh.PART_NAMES``: palm, then thumb metacarpal,
proximal, distal, then proximal, middle, distal of index, middle, ring, little), so the mapping
is one to one, with no subdivision:

    class 0                  background (and anything in front of a hand: occluders)
    class 1 + p  (1..16)     part p of the right hand
    class 17 + p (17..32)    part p of the left hand

Our part order is the canonical finger order (thumb, index, middle, ring, little); MANO's own
segment order is (palm, index, middle, little, ring, thumb): ``MANO_PART_ORDER`` maps ours to
it for anyone comparing with DIGIT/DFL label maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hand_pose_ros.hand.joints import NUM_JOINTS, Handedness
from hand_pose_ros.hand.mesh import PART_NAMES

NUM_PARTS = len(PART_NAMES)  # 16 per hand
NUM_SEGMENTATION_CLASSES = 1 + 2 * NUM_PARTS  # 33, as in DFL
BACKGROUND_CLASS = 0
# Segmentation class names, index = class id.
SEGMENTATION_CLASSES: tuple[str, ...] = ("background",) + tuple(
    f"{side}_{part}" for side in ("right", "left") for part in PART_NAMES
)
# MANO segment index of each of our parts (MANO: 0 palm, 1-3 index, 4-6 middle, 7-9 little,
# 10-12 ring, 13-15 thumb).
_MANO_FINGER_BASE = {0: 13, 1: 1, 2: 4, 3: 10, 4: 7}  # our finger index -> first MANO segment
MANO_PART_ORDER: tuple[int, ...] = (0,) + tuple(
    _MANO_FINGER_BASE[f] + level for f in range(5) for level in range(3)
)


def part_class(part: np.ndarray, side: Handedness | int) -> np.ndarray:
    """Segmentation class (1..32) of per-vertex part labels (0..15) of a hand of ``side``."""
    return 1 + np.asarray(part) + NUM_PARTS * int(Handedness(side))


@dataclass
class HandSample:
    """One image with up to two annotated hands (right first, then left).

    image: (H, W, 3) uint8 RGB.
    intrinsics: (3, 3) pinhole matrix of this image, pixels ((0, 0) the top-left pixel's centre).
    joints_3d: (n, 21, 3) camera optical frame, metres, canonical joint order.
    joints_2d: (n, 21, 2) image pixels (x = column, y = row).
    joint_valid: (n, 21) bool, False where the dataset has no annotation.
    handedness: (n,) ``Handedness`` values (0 right, 1 left), right hand first.
    vertices: (n, V, 3) mesh vertices in the camera frame (metres) or None; ``mesh`` names
        the topology ("open_hand" for the project's model, "mano" for MANO's 778 vertices).
    segmentation: (H, W) uint8 classes of ``SEGMENTATION_CLASSES`` or None.
    mask: (H, W) bool, True on visible hand pixels, or None.
    source: dataset name; key: the sample's id within it (file name, index).
    """

    image: np.ndarray
    intrinsics: np.ndarray
    joints_3d: np.ndarray
    joints_2d: np.ndarray
    joint_valid: np.ndarray
    handedness: np.ndarray
    vertices: np.ndarray | None = None
    mesh: str | None = None
    segmentation: np.ndarray | None = None
    mask: np.ndarray | None = None
    source: str = ""
    key: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.handedness)
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {self.image.shape} "
                             f"{self.image.dtype}")
        if self.joints_3d.shape != (n, NUM_JOINTS, 3) or self.joints_2d.shape != (n, NUM_JOINTS, 2):
            raise ValueError(f"joints must be ({n}, 21, 3) and ({n}, 21, 2), got "
                             f"{self.joints_3d.shape} and {self.joints_2d.shape}")
        if n == 2 and list(self.handedness) != [Handedness.RIGHT, Handedness.LEFT]:
            raise ValueError("two-hand samples hold the right hand first, then the left")
        if self.mask is None and self.segmentation is not None:
            self.mask = self.segmentation != BACKGROUND_CLASS

    @property
    def num_hands(self) -> int:
        return len(self.handedness)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image in pixels."""
        return self.image.shape[1], self.image.shape[0]


# --- .npz shards: N samples of one image size, hands padded to the shard's maximum ---

_SHARD_VERSION = 1


def write_shard(path: str | Path, samples: list[HandSample], compress: bool = True) -> Path:
    """Write samples (same image size) to one .npz file; returns its path.

    Arrays are stacked over samples; hand arrays are padded to the largest hand count in the
    shard (``num_hands`` says how many are real). Vertices and masks are kept when every
    sample has them.
    """
    if not samples:
        raise ValueError("write_shard needs at least one sample")
    sizes = {s.image.shape for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"a shard holds one image size, got {sorted(sizes)}")
    n_max = max(s.num_hands for s in samples)

    def padded(name: str, fill, dtype) -> np.ndarray:
        first = getattr(samples[0], name)
        out = np.full((len(samples), n_max, *first.shape[1:]), fill, dtype=dtype)
        for i, s in enumerate(samples):
            out[i, : s.num_hands] = getattr(s, name)
        return out

    arrays = {
        "version": np.array(_SHARD_VERSION),
        "image": np.stack([s.image for s in samples]),
        "intrinsics": np.stack([s.intrinsics for s in samples]).astype(np.float64),
        "num_hands": np.array([s.num_hands for s in samples], dtype=np.int8),
        "joints_3d": padded("joints_3d", 0.0, np.float32),
        "joints_2d": padded("joints_2d", 0.0, np.float32),
        "joint_valid": padded("joint_valid", False, bool),
        "handedness": padded("handedness", -1, np.int8),
        "source": np.array([s.source for s in samples]),
        "key": np.array([s.key for s in samples]),
    }
    if all(s.vertices is not None for s in samples) and len({s.mesh for s in samples}) == 1:
        arrays["vertices"] = padded("vertices", 0.0, np.float32)
        arrays["mesh"] = np.array(samples[0].mesh)
    if all(s.segmentation is not None for s in samples):
        arrays["segmentation"] = np.stack([s.segmentation for s in samples])
    elif all(s.mask is not None for s in samples):
        arrays["mask"] = np.stack([s.mask for s in samples])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path


def read_shard(path: str | Path) -> list[HandSample]:
    """Samples of a shard written by ``write_shard`` (metres, float64 arrays)."""
    with np.load(path, allow_pickle=False) as data:
        if int(data["version"]) != _SHARD_VERSION:
            raise ValueError(f"{path}: shard version {int(data['version'])}, this code reads "
                             f"{_SHARD_VERSION}; regenerate it with `hand-pose synth`")
        d = {k: data[k] for k in data.files}
    samples = []
    for i in range(len(d["image"])):
        n = int(d["num_hands"][i])
        samples.append(HandSample(
            image=d["image"][i],
            intrinsics=d["intrinsics"][i],
            joints_3d=d["joints_3d"][i, :n].astype(np.float64),
            joints_2d=d["joints_2d"][i, :n].astype(np.float64),
            joint_valid=d["joint_valid"][i, :n],
            handedness=d["handedness"][i, :n].astype(np.int64),
            vertices=d["vertices"][i, :n].astype(np.float64) if "vertices" in d else None,
            mesh=str(d["mesh"]) if "mesh" in d else None,
            segmentation=d["segmentation"][i] if "segmentation" in d else None,
            mask=d["mask"][i] if "mask" in d else None,
            source=str(d["source"][i]),
            key=str(d["key"][i]),
        ))
    return samples
