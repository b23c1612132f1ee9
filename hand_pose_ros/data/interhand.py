"""InterHand2.6M (Moon et al., ECCV 2020), 5 fps release, H+M annotations, as ``HandSample``s.

Layout under the dataset root (v1.0; the first release's ``annotations/all/`` is read too)::

    annotations/<split>/InterHand2.6M_<split>_data.json      COCO style: images, annotations
    annotations/<split>/InterHand2.6M_<split>_camera.json    per capture: campos, camrot,
                                                             focal, princpt per camera
    annotations/<split>/InterHand2.6M_<split>_joint_3d.json  per capture, per frame:
                                                             world_coord (42, 3) mm
    images/<split>/<file_name of the image entry>            Capture*/<seq>/cam<id>/image<frame>.jpg

One annotation per image: ``hand_type`` "right", "left" or "interacting", ``joint_valid`` (42),
``hand_type_valid``, ``bbox`` (x, y, w, h pixels). World coordinates (mm) go to the camera
frame as ``camrot @ (world - campos)`` and then to metres; pixels are
``focal * (x / z, y / z) + princpt`` (as the official ``world2cam`` / ``cam2pixel``).

Joint order: InterHand2.6M keeps 0-20 for the right hand and 21-41 for the left; within a
hand each finger runs tip first (thumb4, thumb3, thumb2, thumb1, index4 ... pinky1) and the
wrist is last (20). Source: the dataset's ``annotations/skeleton.txt`` as reproduced in
mmpose's ``interhand3d`` dataset info (0 right_thumb4 ... 20 right_wrist) and the official
loader (github.com/facebookresearch/InterHand2.6M ``data/InterHand2.6M/dataset.py``:
``root_joint_idx = {'right': 20, 'left': 41}``). ``INTERHAND_TO_CANONICAL`` remaps it, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hand_pose_ros.data.datasets import as_array, load_json, project, read_rgb
from hand_pose_ros.data.sample import HandSample
from hand_pose_ros.hand.joints import NUM_JOINTS, Handedness

SPLITS = ("train", "val", "test")
# Canonical joint k of a hand is InterHand2.6M's per-hand joint INTERHAND_TO_CANONICAL[k]:
# wrist (20), then per finger base to tip (thumb1 3 ... thumb4 0, index1 7 ... index4 4, ...).
INTERHAND_TO_CANONICAL = np.array(
    (20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16))
# First of a hand's 21 rows in InterHand2.6M's 42-joint arrays.
_HAND_OFFSET = {Handedness.RIGHT: 0, Handedness.LEFT: NUM_JOINTS}
_HANDS_OF_TYPE = {
    "right": (Handedness.RIGHT,),
    "left": (Handedness.LEFT,),
    "interacting": (Handedness.RIGHT, Handedness.LEFT),
}
_MM = 1e-3


def _annotation_dir(root: Path, split: str) -> Path:
    """The folder holding the split's three JSON files (v1.0 layout first, then ``all``)."""
    candidates = [root / "annotations" / split, root / "annotations" / "all"]
    for folder in candidates:
        if (folder / f"InterHand2.6M_{split}_data.json").is_file():
            return folder
    raise FileNotFoundError(
        f"InterHand2.6M_{split}_data.json not found in {' or '.join(map(str, candidates))}; "
        "pass the dataset root that holds annotations/ and images/")


class InterHand:
    """One InterHand2.6M split: ``samples()`` yields one sample per annotated image, in the
    order of the data file, the right hand first, single-hand images with one hand."""

    def __init__(self, root: str | Path, split: str = "test") -> None:
        if split not in SPLITS:
            raise ValueError(f"InterHand2.6M split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        folder = _annotation_dir(self.root, split)
        self._data_name = f"InterHand2.6M_{split}_data.json"
        data = load_json(folder / self._data_name)
        if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
            raise ValueError(f"{folder / self._data_name} holds no COCO-style 'images' and "
                             "'annotations'")
        try:
            images = {image["id"]: image for image in data["images"]}
            self.records = [(ann, images[ann["image_id"]]) for ann in data["annotations"]]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{self._data_name}: an image or annotation lacks {error} "
                             "(or names an image that is not listed)") from error
        self.cameras = load_json(folder / f"InterHand2.6M_{split}_camera.json")
        self.joints = load_json(folder / f"InterHand2.6M_{split}_joint_3d.json")

    def __len__(self) -> int:
        return len(self.records)

    def _camera(self, image: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(camrot (3, 3), campos (3,) mm, intrinsics (3, 3) pixels) of an image's camera."""
        capture, camera = str(image["capture"]), str(image["camera"])
        what = f"InterHand2.6M_{self.split}_camera.json capture {capture} camera {camera}"
        try:
            params = self.cameras[capture]
            rotation = as_array(params["camrot"][camera], (3, 3), what + " camrot")
            position = as_array(params["campos"][camera], (3,), what + " campos")
            focal = as_array(params["focal"][camera], (2,), what + " focal")
            principal = as_array(params["princpt"][camera], (2,), what + " princpt")
        except (KeyError, TypeError) as error:
            raise ValueError(f"{what}: missing {error}") from error
        intrinsics = np.array([[focal[0], 0.0, principal[0]],
                               [0.0, focal[1], principal[1]],
                               [0.0, 0.0, 1.0]])
        return rotation, position, intrinsics

    def _world_joints(self, image: dict) -> np.ndarray:
        """(42, 3) world coordinates (mm) of an image's frame, InterHand2.6M order."""
        capture, frame = str(image["capture"]), str(image["frame_idx"])
        what = f"InterHand2.6M_{self.split}_joint_3d.json capture {capture} frame {frame}"
        try:
            world = self.joints[capture][frame]["world_coord"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{what}: missing {error}") from error
        return as_array(world, (2 * NUM_JOINTS, 3), what)

    def sample(self, index: int) -> HandSample:
        """The sample of annotation ``index`` (in data-file order)."""
        ann, image = self.records[index]
        hand_type = ann.get("hand_type")
        if hand_type not in _HANDS_OF_TYPE:
            raise ValueError(f"{self._data_name} annotation {ann.get('id')}: hand_type must be "
                             f"one of {sorted(_HANDS_OF_TYPE)}, got {hand_type!r}")
        rotation, position, intrinsics = self._camera(image)
        camera = (self._world_joints(image) - position) @ rotation.T * _MM
        try:
            valid_all = np.asarray(ann["joint_valid"], dtype=np.float64).reshape(-1) > 0
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{self._data_name} annotation {ann.get('id')}: no readable "
                             f"joint_valid ({error})") from error
        if valid_all.shape != (2 * NUM_JOINTS,):
            raise ValueError(f"{self._data_name} annotation {ann.get('id')}: joint_valid must "
                             f"hold 42 flags, got {valid_all.size}")
        sides = _HANDS_OF_TYPE[hand_type]
        rows = np.stack([_HAND_OFFSET[s] + INTERHAND_TO_CANONICAL for s in sides])
        joints_3d = camera[rows]
        joints_2d, projects = project(joints_3d, intrinsics)
        # As the official loader: a hand whose wrist is not valid has no valid root-relative
        # pose, so none of its joints counts.
        joint_valid = valid_all[rows] & valid_all[rows[:, :1]] & projects
        return HandSample(
            image=read_rgb(self.root / "images" / self.split / image["file_name"]),
            intrinsics=intrinsics,
            joints_3d=joints_3d,
            joints_2d=joints_2d,
            joint_valid=joint_valid,
            handedness=np.array([int(s) for s in sides]),
            source="interhand2.6m",
            key=str(image["file_name"]),
            extras={
                "interacting": hand_type == "interacting",
                "hand_type_valid": bool(ann.get("hand_type_valid", True)),
                "bbox": np.asarray(ann.get("bbox", np.zeros(4)), dtype=np.float64),
                "capture": image["capture"], "camera": image["camera"],
                "frame": image["frame_idx"],
            },
        )

    def samples(self, limit: int | None = None) -> Iterator[HandSample]:
        """Samples in data-file order, at most ``limit``."""
        for index in range(len(self) if limit is None else min(limit, len(self))):
            yield self.sample(index)
