"""MANO (Romero et al. 2017) behind the ``HandModel`` interface, from a user-supplied file.

MANO's licence does not allow redistribution, so the project ships no MANO file: pass the path
of your ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (from https://mano.is.tue.mpg.de). The official
pickles hold chumpy objects; they are read without chumpy by mapping its classes to a small
stand-in that keeps the arrays.

Conventions follow the common MANO layers (smplx, manopth): pose is 15 axis-angle rotations in
MANO's joint order (index, middle, little, ring, thumb; three joints each), relative to the flat
hand (``flat_hand_mean=True``) or to MANO's mean pose; global_orient rotates about MANO's root
joint; transl is added last. Joints come out in the project's canonical order: MANO's 16
skeleton joints plus the five fingertip vertices used by smplx.
"""

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.model import (
    Array,
    HandModel,
    HandOutput,
    array_module,
    axis_angle_to_matrix,
)

# Fingertip vertex ids of MANO's mesh (thumb, index, middle, ring, little), as in smplx.
MANO_TIP_VERTICES = (744, 320, 443, 554, 671)
# Canonical joint k comes from row MANO_TO_CANONICAL[k] of [16 MANO joints, 5 tip vertices].
MANO_TO_CANONICAL = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
MANO_NUM_VERTICES, MANO_NUM_JOINTS = 778, 16
_REQUIRED_KEYS = ("v_template", "f", "J_regressor", "kintree_table", "weights", "posedirs",
                  "shapedirs")


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps its attributes."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __array__(self, dtype=None, copy=None):
        if "x" not in self.__dict__:
            raise ValueError("a chumpy object in the MANO file holds no plain array ('x')")
        return np.asarray(self.__dict__["x"], dtype=dtype)


class _ManoUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        return super().find_class(module, name)


def load_mano_file(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a MANO pickle as numpy (float64; faces and kinematic tree as int64).

    Raises:
        FileNotFoundError, ValueError: a missing file, or one without MANO's arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MANO file {path} not found; download MANO_RIGHT.pkl from https://mano.is.tue.mpg.de"
        )
    with path.open("rb") as f:
        # The official files are Python 2 pickles.
        raw = _ManoUnpickler(f, encoding="latin1").load()
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path} is not a MANO model file: missing {', '.join(missing)}")
    data = {}
    for key, value in raw.items():
        if scipy.sparse.issparse(value):
            value = value.toarray()
        if isinstance(value, _ChumpyStandIn | np.ndarray):
            data[key] = np.asarray(value)
    for key in ("f", "kintree_table"):
        data[key] = data[key].astype(np.int64)
    for key, value in data.items():
        if key not in ("f", "kintree_table"):
            data[key] = value.astype(np.float64)
    expected = {
        "v_template": (MANO_NUM_VERTICES, 3),
        "J_regressor": (MANO_NUM_JOINTS, MANO_NUM_VERTICES),
        "weights": (MANO_NUM_VERTICES, MANO_NUM_JOINTS),
        "posedirs": (MANO_NUM_VERTICES, 3, 9 * (MANO_NUM_JOINTS - 1)),
    }
    for key, shape in expected.items():
        if data[key].shape != shape:
            raise ValueError(f"{path}: MANO '{key}' should be {shape}, got {data[key].shape}")
    return data


class ManoModel(HandModel):
    """MANO from a user-supplied pickle; joints in the canonical order.

    Args:
        path: MANO_RIGHT.pkl or MANO_LEFT.pkl.
        side: which hand the file holds; by default guessed from the file name.
        flat_hand_mean: pose zero is the flat hand (True) or MANO's mean pose (False).
    """

    pose_shape = (MANO_NUM_JOINTS - 1, 3)

    def __init__(
        self, path: str | Path, side: Handedness | int | None = None, flat_hand_mean: bool = True
    ) -> None:
        data = load_mano_file(path)
        if side is None:
            side = Handedness.LEFT if "left" in Path(path).name.lower() else Handedness.RIGHT
        self.side = Handedness(side)
        self.faces = data["f"]
        self.num_shape = data["shapedirs"].shape[-1]
        parents = data["kintree_table"][0].copy()
        parents[0] = -1  # MANO stores the root's parent as 2**32 - 1
        self.parents = parents
        mean = np.zeros(45) if flat_hand_mean else data.get("hands_mean", np.zeros(45))
        self._arrays = {
            "v_template": data["v_template"],
            "shapedirs": data["shapedirs"],
            "posedirs": data["posedirs"].reshape(-1, data["posedirs"].shape[-1]).T,  # (135, V*3)
            "J_regressor": data["J_regressor"],
            "weights": data["weights"],
            "pose_mean": mean.reshape(15, 3),
            "eye": np.eye(3),
        }
        self._cache: dict = {}

    def _arrays_like(self, array: Array) -> dict:
        xp = array_module(array)
        if xp is np:
            return self._arrays
        key = (array.dtype, array.device)
        if key not in self._cache:
            self._cache[key] = {
                k: xp.as_tensor(v, dtype=array.dtype, device=array.device)
                for k, v in self._arrays.items()
            }
        return self._cache[key]

    def forward(self, pose, shape=None, global_orient=None, transl=None) -> HandOutput:
        """See ``HandModel.forward``; pose is (B, 15, 3) axis-angle in MANO's joint order."""
        xp = array_module(pose)
        if pose.ndim != 3 or tuple(pose.shape[1:]) != self.pose_shape:
            raise ValueError(f"MANO pose must be (B, 15, 3) axis-angle, got {tuple(pose.shape)}")
        a = self._arrays_like(pose)
        batch = pose.shape[0]
        if shape is None:
            shape = xp.zeros((batch, self.num_shape)) if xp is np else pose.new_zeros(
                (batch, self.num_shape)
            )
        if global_orient is None:
            global_orient = pose[:, 0] * 0
        v_shaped = a["v_template"] + xp.einsum("vcs,bs->bvc", a["shapedirs"], shape)
        rest_joints = a["J_regressor"] @ v_shaped  # (B, 16, 3)
        rotations = axis_angle_to_matrix(
            xp.concatenate([global_orient.reshape(batch, 1, 3), pose + a["pose_mean"]], 1)
        )  # (B, 16, 3, 3)
        pose_feature = (rotations[:, 1:] - a["eye"]).reshape(batch, -1)
        v_posed = v_shaped + (pose_feature @ a["posedirs"]).reshape(batch, -1, 3)
        # World transform of every joint along the kinematic tree.
        world_rot, world_pos = [rotations[:, 0]], [rest_joints[:, 0]]
        for j in range(1, MANO_NUM_JOINTS):
            p = self.parents[j]
            world_rot.append(world_rot[p] @ rotations[:, j])
            offset = rest_joints[:, j] - rest_joints[:, p]
            world_pos.append(world_pos[p] + (world_rot[p] @ offset[..., None])[..., 0])
        world_rot, world_pos = xp.stack(world_rot, 1), xp.stack(world_pos, 1)
        # Skinning maps: x -> R_j (x - J_j) + P_j, blended per vertex.
        offset = world_pos - (world_rot @ rest_joints[..., None])[..., 0]
        maps = xp.concatenate([world_rot.reshape(batch, MANO_NUM_JOINTS, 9), offset], -1)
        blended = a["weights"] @ maps  # (B, V, 12)
        linear = blended[..., :9].reshape(batch, -1, 3, 3)
        vertices = (linear * v_posed[:, :, None, :]).sum(-1) + blended[..., 9:]
        tips = vertices[:, list(MANO_TIP_VERTICES)]
        joints = xp.concatenate([world_pos, tips], 1)[:, list(MANO_TO_CANONICAL)]
        if transl is not None:
            joints = joints + transl.reshape(batch, 1, 3)
            vertices = vertices + transl.reshape(batch, 1, 3)
        return HandOutput(joints, vertices)

