"""FreiHAND (Zimmermann et al., ICCV 2019) in its published layout, as ``HandSample``s.

Layout under the dataset root (FreiHAND_pub_v2, plus FreiHAND_pub_v2_eval for the evaluation
labels)::

    training_K.json  training_xyz.json  training_verts.json  [training_mano.json]
    training/rgb/%08d.jpg   training/mask/%08d.jpg
    evaluation_K.json  evaluation_xyz.json  evaluation_verts.json  [evaluation_mano.json]
    evaluation/rgb/%08d.jpg

Each JSON file is a list with one entry per unique sample: K (3, 3) pixels, xyz (21, 3) and
verts (778, 3) in metres in the camera frame, mano (1, 61). The training split has 32560
unique samples, each rendered in 4 versions (green screen and three background/colour
treatments): image ``i`` shows sample ``i % 32560``; masks exist once per unique sample.
Images are 224 x 224; every hand is a right hand.

Joint order: FreiHAND's is already the canonical one (wrist; thumb, index, middle, ring,
little from the palm out), so no remapping. Source: the FreiHAND toolbox,
github.com/lmb-freiburg/freihand ``utils/mano_utils.py`` (``get_keypoints_from_mesh_ch``: MANO
joints 13-15 -> 1-3 thumb, 1-3 -> 5-7 index, 4-6 -> 9-11 middle, 10-12 -> 13-15 ring,
7-9 -> 17-19 little; tips 4, 8, 12, 16, 20 from mesh vertices) and ``plot_hand`` there (bones
0-1-2-3-4, 0-5-6-7-8, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hand_pose_ros.data.datasets import as_array, load_json, project, read_label_image, read_rgb
from hand_pose_ros.data.sample import HandSample
from hand_pose_ros.hand.joints import NUM_JOINTS, Handedness
from hand_pose_ros.hand.mano import MANO_NUM_VERTICES

SPLITS = ("evaluation", "training")
# Number of image versions per unique training sample (the toolbox's ``sample_version``).
TRAINING_VERSIONS = 4


def _load_vertices(path: Path, count: int) -> np.ndarray:
    """(count, 778, 3) float32 vertices of a ``*_verts.json`` file.

    The training file is ~1.3 GB of JSON; ``json.load`` would build ~76 M Python floats
    (several GB), so the numbers are parsed straight into one array. The file is a bare
    nested list of numbers, so dropping the brackets and commas leaves exactly its numbers.
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found; check the dataset root and "
                                "that the archive was unpacked completely")
    text = path.read_bytes().translate(None, b"[],").decode("ascii", errors="replace")
    try:
        numbers = np.fromstring(text, dtype=np.float32, sep=" ")
    except ValueError as error:
        raise ValueError(f"{path} is not a JSON list of numbers ({error}); re-download "
                         "it") from error
    expected = count * MANO_NUM_VERTICES * 3
    if numbers.size != expected:
        raise ValueError(f"{path}: expected {count} x {MANO_NUM_VERTICES} x 3 = {expected} "
                         f"numbers (one mesh per entry of the K file), got {numbers.size}")
    if not np.isfinite(numbers).all():
        raise ValueError(f"{path}: holds non-finite values")
    return numbers.reshape(count, MANO_NUM_VERTICES, 3)


class FreiHand:
    """One FreiHAND split: ``samples()`` yields every image (one right hand each).

    Args:
        root: the directory holding ``<split>_K.json`` etc.
        split: "evaluation" or "training"; None picks evaluation when its files are there.
    """

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root = Path(root)
        if split is None:
            split = "evaluation" if (self.root / "evaluation_K.json").is_file() else "training"
        if split not in SPLITS:
            raise ValueError(f"FreiHAND split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.intrinsics = as_array(load_json(self.root / f"{split}_K.json"), (None, 3, 3),
                                   f"{split}_K.json")
        count = len(self.intrinsics)
        try:
            xyz = load_json(self.root / f"{split}_xyz.json")
        except FileNotFoundError as error:
            if split == "evaluation":
                raise FileNotFoundError(
                    f"{error}; the evaluation labels (evaluation_xyz.json, "
                    "evaluation_verts.json) come in FreiHAND_pub_v2_eval.zip") from error
            raise
        self.joints = as_array(xyz, (count, NUM_JOINTS, 3), f"{split}_xyz.json")
        self.vertices = _load_vertices(self.root / f"{split}_verts.json", count)
        mano_path = self.root / f"{split}_mano.json"
        self.mano = (as_array(load_json(mano_path), (count, 1, 61), mano_path.name)[:, 0]
                     if mano_path.is_file() else None)
        versions = 1
        if split == "training" and (self._image_path(TRAINING_VERSIONS * count - 1)).is_file():
            versions = TRAINING_VERSIONS
        self.num_images = versions * count

    def _image_path(self, index: int) -> Path:
        return self.root / self.split / "rgb" / f"{index:08d}.jpg"

    def __len__(self) -> int:
        return self.num_images

    def sample(self, index: int) -> HandSample:
        """Image ``index`` of the split with the labels of sample ``index % unique``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"FreiHAND {self.split} has {self.num_images} images, "
                             f"asked for {index}")
        label = index % len(self.intrinsics)
        # Copies: a consumer that edits a sample must not edit the reader's labels.
        k = self.intrinsics[label].copy()
        joints_3d = self.joints[label].copy()
        joints_2d, valid = project(joints_3d, k)
        mask_path = self.root / self.split / "mask" / f"{label:08d}.jpg"
        # The masks are JPEGs, so their edges hold grey levels: threshold at the middle.
        mask = read_label_image(mask_path) > 127 if mask_path.parent.is_dir() else None
        extras: dict = {"interacting": False, "label_index": label}
        if self.mano is not None:
            # The first 58 of MANO's 61 numbers: pose (48 axis-angle, global rotation first)
            # and shape (10). The last three are the toolbox's root uv + scale.
            extras["mano_pose"] = self.mano[label, :48].copy()
            extras["mano_shape"] = self.mano[label, 48:58].copy()
        return HandSample(
            image=read_rgb(self._image_path(index)),
            intrinsics=k,
            joints_3d=joints_3d[None],
            joints_2d=joints_2d[None],
            joint_valid=valid[None],
            handedness=np.array([int(Handedness.RIGHT)]),
            vertices=self.vertices[label][None].astype(np.float64),
            mesh="mano",
            mask=mask,
            source="freihand",
            key=f"{self.split}/{index:08d}",
            extras=extras,
        )

    def samples(self, limit: int | None = None) -> Iterator[HandSample]:
        """Images in index order, at most ``limit``."""
        for index in range(len(self) if limit is None else min(limit, len(self))):
            yield self.sample(index)
