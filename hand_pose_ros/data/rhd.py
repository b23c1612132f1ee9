"""Rendered Hand Pose Dataset, RHD (Zimmermann and Brox, ICCV 2017), as ``HandSample``s.

Layout under the dataset root (RHD_published_v2)::

    <split>/anno_<split>.pickle   {sample id: {'xyz': (42, 3) metres, camera frame,
                                                'uv_vis': (42, 3) pixels + visible flag,
                                                'K': (3, 3)}}
    <split>/color/%05d.png        320 x 320 RGB
    <split>/mask/%05d.png         part classes, see below
    <split>/depth/%05d.png        depth in metres coded as (R * 256 + G) / 65535 * 5

with split "training" or "evaluation". Keypoints (the dataset README and its
``view_samples.py``, which projects ``xyz`` with ``K`` to ``uv``): 0 left wrist, 1-4 left thumb
tip to palm, 5-8 left index, 9-12 middle, 13-16 ring, 17-20 pinky (each tip to palm),
21-41 the right hand in the same order. ``RHD_TO_CANONICAL`` remaps a hand, once.

Mask classes (README): 0 background, 1 person, 2-4 left thumb (tip to palm), 5-7 left index,
8-10 middle, 11-13 ring, 14-16 pinky, 17 left palm, 18-33 the right hand in the same order.
These are one to one the 16 parts per hand of our segmentation (palm + three bones per
finger), so masks become the 33-class ``segmentation`` (the person becomes background).

Hands: every image is rendered with both hands annotated, one of them usually out of view.
As the standard protocol (Zimmermann and Brox's reader, github.com/lmb-freiburg/hand3d), each
sample holds the dominant hand only: the one with more mask pixels (ties: more visible
keypoints). ``extras["visible"]`` (1, 21) keeps the visibility flags, ``extras["depth"]`` the
depth image (H, W) float32 metres when its file exists.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hand_pose_ros.data.datasets import as_array, project, read_label_image, read_rgb
from hand_pose_ros.data.sample import NUM_PARTS, HandSample, part_class
from hand_pose_ros.hand.joints import NUM_JOINTS, Handedness

SPLITS = ("evaluation", "training")
# Canonical joint k of a hand is RHD's per-hand keypoint RHD_TO_CANONICAL[k]: the wrist (0),
# then each finger from the palm out (thumb 4, 3, 2, 1; index 8, 7, 6, 5; ...).
RHD_TO_CANONICAL = np.array(
    (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17))
# First of a hand's 21 keypoints / first mask class of a hand's parts, in RHD.
_KEYPOINT_OFFSET = {Handedness.LEFT: 0, Handedness.RIGHT: NUM_JOINTS}
_CLASS_OFFSET = {Handedness.LEFT: 2, Handedness.RIGHT: 18}
_DEPTH_MAX_M = 5.0


def _segmentation_table() -> np.ndarray:
    """(256,) uint8: RHD mask class -> our segmentation class (``sample.SEGMENTATION_CLASSES``).

    RHD numbers a hand's classes finger by finger (thumb .. pinky), three bones tip to palm,
    then the palm; our parts are palm, then finger by finger with bones palm to tip.
    """
    table = np.zeros(256, dtype=np.uint8)
    for side, first in _CLASS_OFFSET.items():
        for finger in range(5):
            for tip_rank in range(3):
                part = 1 + 3 * finger + (2 - tip_rank)
                table[first + 3 * finger + tip_rank] = part_class(part, side)
        table[first + 15] = part_class(0, side)
    return table


SEGMENTATION_TABLE = _segmentation_table()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: an annotation file cannot run code."""

    # numpy's array/scalar reconstructors (numpy.core before numpy 2, numpy._core since) and
    # the bytes codec that protocol-2 pickles use for raw array data.
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an RHD annotation file")


def load_annotations(path: Path) -> dict:
    """The {sample id: annotation} dict of an ``anno_<split>.pickle`` file."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found; pass the RHD_published_v2 "
                                "directory that holds training/ and evaluation/")
    try:
        with path.open("rb") as f:
            # latin1: the published file may be a Python 2 pickle of numpy arrays.
            annotations = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is not a readable RHD annotation pickle ({error})") from error
    if not isinstance(annotations, dict):
        raise ValueError(f"{path} must hold a dict of sample id -> annotation, got "
                         f"{type(annotations).__name__}")
    return annotations


class RHD:
    """One RHD split: ``samples()`` yields each image with its dominant hand."""

    def __init__(self, root: str | Path, split: str = "evaluation") -> None:
        if split not in SPLITS:
            raise ValueError(f"RHD split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.folder = self.root / split
        self.annotations = load_annotations(self.folder / f"anno_{split}.pickle")
        self.ids = sorted(self.annotations)

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, index: int) -> HandSample:
        """The sample of the ``index``-th sample id (ids in increasing order)."""
        sample_id = self.ids[index]
        anno = self.annotations[sample_id]
        what = f"anno_{self.split}.pickle sample {sample_id}"
        try:
            xyz = as_array(anno["xyz"], (2 * NUM_JOINTS, 3), what + " xyz")
            uv_vis = as_array(anno["uv_vis"], (2 * NUM_JOINTS, 3), what + " uv_vis")
            intrinsics = as_array(anno["K"], (3, 3), what + " K")
        except (KeyError, TypeError) as error:
            raise ValueError(f"{what}: missing {error}") from error
        name = f"{sample_id:05d}.png"
        rhd_mask = read_label_image(self.folder / "mask" / name)
        segmentation = SEGMENTATION_TABLE[rhd_mask.astype(np.intp).clip(0, 255)]
        visible = uv_vis[:, 2] > 0

        def dominance(side: Handedness) -> tuple[int, int]:
            first = _KEYPOINT_OFFSET[side]
            pixels = np.count_nonzero((segmentation > 0)
                                      & ((segmentation - 1) // NUM_PARTS == int(side)))
            return pixels, int(visible[first:first + NUM_JOINTS].sum())

        side = max((Handedness.RIGHT, Handedness.LEFT), key=dominance)
        rows = _KEYPOINT_OFFSET[side] + RHD_TO_CANONICAL
        joints_3d = xyz[rows]
        joints_2d, projects = project(joints_3d, intrinsics)
        extras: dict = {"interacting": False, "visible": visible[rows][None]}
        depth_path = self.folder / "depth" / name
        if depth_path.is_file():
            coded = read_rgb(depth_path).astype(np.float32)
            extras["depth"] = (coded[..., 0] * 256 + coded[..., 1]) / 65535 * _DEPTH_MAX_M
        return HandSample(
            image=read_rgb(self.folder / "color" / name),
            intrinsics=intrinsics,
            joints_3d=joints_3d[None],
            joints_2d=joints_2d[None],
            joint_valid=projects[None],
            handedness=np.array([int(side)]),
            segmentation=segmentation,
            source="rhd",
            key=f"{self.split}/{sample_id:05d}",
            extras=extras,
        )

    def samples(self, limit: int | None = None) -> Iterator[HandSample]:
        """Samples in increasing sample id order, at most ``limit``."""
        for index in range(len(self) if limit is None else min(limit, len(self))):
            yield self.sample(index)
