"""One entry point to every evaluation/training data source: ``open_dataset(SPEC)``.

SPEC forms (what ``hand-pose eval --data`` and ``hand-pose train`` accept):

    synthetic:test            the fixed single-hand synthetic test split (one hand per crop)
    synthetic:test-twohand    the fixed two-hand synthetic test split, "mixed" kind: single-hand
                              scenes and interacting two-hand scenes interleaved (as
                              InterHand2.6M's test set holds both), so that MPJPE single /
                              interacting / all can be reported from one source
    freihand:PATH[#SPLIT]     FreiHAND root: its evaluation split if present, else training
    interhand:PATH[#SPLIT]    InterHand2.6M (5 fps) root; SPLIT test (default), val or train
    rhd:PATH[#SPLIT]          RHD root; SPLIT evaluation (default) or training

Every source yields ``HandSample`` (right hand first; joints in the camera optical frame,
metres, canonical order) with ``extras["interacting"]`` (bool) on every sample: True for
scenes of two interacting hands, False otherwise (always False for single-hand sources).

The readers (``freihand``, ``interhand``, ``rhd``) load and check their annotation files when
opened, so that a wrong path fails at once; images load lazily, one sample at a time. The small
helpers they share (JSON loading with clear errors, image reading, projection) live here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from hand_pose_ros.data.sample import HandSample

SPEC_FORMS = (
    "synthetic:test",
    "synthetic:test-twohand",
    "freihand:PATH[#evaluation|training]",
    "interhand:PATH[#test|val|train]",
    "rhd:PATH[#evaluation|training]",
)


class Reader(Protocol):
    """What every dataset reader offers: its size and its samples in a fixed order."""

    def __len__(self) -> int: ...

    def samples(self, limit: int | None = None) -> Iterator[HandSample]: ...


class _SyntheticSplit:
    """A fixed synthetic test split as a ``Reader``; marks two-hand scenes as interacting
    (``synth`` places the two hands of a scene together by construction)."""

    def __init__(self, kind: str) -> None:
        from hand_pose_ros.data.synth import DEFAULT_TEST_SPLIT, TEST_SPLITS

        self.kind = kind
        split = TEST_SPLITS[DEFAULT_TEST_SPLIT]
        # "mixed" interleaves single and two-hand scenes pairwise (``synth.test_split_samples``).
        self._size = (2 * min(split.single_hand, split.two_hand) if kind == "mixed"
                      else split.single_hand)

    def __len__(self) -> int:
        return self._size

    def samples(self, limit: int | None = None) -> Iterator[HandSample]:
        from hand_pose_ros.data.synth import test_split_samples

        for sample in test_split_samples(kind=self.kind, limit=limit):
            sample.extras["interacting"] = sample.num_hands == 2
            yield sample


def _root_and_split(spec: str, rest: str) -> tuple[Path, str | None]:
    """(root directory, split or None) of 'PATH[#SPLIT]'."""
    path, _, split = rest.partition("#")
    if not path:
        raise ValueError(f"data spec {spec!r} names no path; valid forms: {', '.join(SPEC_FORMS)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"data spec {spec!r}: directory {root} does not exist; valid forms: "
                         f"{', '.join(SPEC_FORMS)}")
    return root, split or None


def open_reader(spec: str) -> Reader:
    """The reader of the source named by ``spec`` (see the module docstring).

    Raises:
        ValueError: an unknown form or a missing directory (the message lists the valid
            forms), an unknown split, malformed annotation files.
        FileNotFoundError: an annotation file of the chosen split is missing.
    """
    kind, sep, rest = spec.partition(":")
    if kind == "synthetic" and rest in ("test", "test-twohand"):
        return _SyntheticSplit("single" if rest == "test" else "mixed")
    if sep and kind == "freihand":
        from hand_pose_ros.data.freihand import FreiHand

        return FreiHand(*_root_and_split(spec, rest))
    if sep and kind == "interhand":
        from hand_pose_ros.data.interhand import InterHand

        root, split = _root_and_split(spec, rest)
        return InterHand(root, split or "test")
    if sep and kind == "rhd":
        from hand_pose_ros.data.rhd import RHD

        root, split = _root_and_split(spec, rest)
        return RHD(root, split or "evaluation")
    raise ValueError(f"unknown data spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}")


def open_dataset(spec: str, limit: int | None = None) -> Iterator[HandSample]:
    """The samples of the source named by ``spec``, in its fixed order, at most ``limit``.

    Annotation files are read and checked here (errors as ``open_reader``); images are read
    as the iterator advances.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    return open_reader(spec).samples(limit)


def describe(spec: str) -> str:
    """One line naming the source and its number of samples (reads its annotations)."""
    return f"{spec}: {len(open_reader(spec))} samples"


# --- helpers shared by the readers ---


def load_json(path: Path) -> Any:
    """The parsed JSON file at ``path``.

    Raises:
        FileNotFoundError: no such file (the message names the dataset layout to check).
        ValueError: the file is not valid JSON.
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found; check the dataset root and "
                                "that the archive was unpacked completely")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-download or re-extract "
                         "it") from error


def as_array(value: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (None: any size), or a ValueError
    naming ``what`` (file and field) and the problem."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: expected numbers of shape {shape}, got {error}") from error
    if array.ndim != len(shape) or any(s is not None and s != a
                                       for s, a in zip(shape, array.shape, strict=True)):
        raise ValueError(f"{what}: expected shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: holds non-finite values")
    return array


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB; FileNotFoundError if it is missing or
    unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"image {path} is missing or not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_image(path: Path) -> np.ndarray:
    """A single-channel label/mask image (first channel if it was saved with three), as
    stored (uint8 or uint16); FileNotFoundError if it is missing or unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"label image {path} is missing or not a readable image")
    return image if image.ndim == 2 else image[..., 0]


def project(points: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (..., 2) of camera-frame points (..., 3) under pinhole ``intrinsics`` (3, 3),
    and a (...,) bool mask of the points that project (finite, in front of the camera);
    the pixels of the others are 0, so nothing non-finite leaves a reader."""
    points = np.asarray(points, dtype=np.float64)
    ok = np.isfinite(points).all(-1) & (points[..., 2] > 1e-6)
    safe = np.where(ok[..., None], points, [0.0, 0.0, 1.0])
    uvw = safe @ np.asarray(intrinsics, dtype=np.float64).T
    pixels = uvw[..., :2] / uvw[..., 2:]
    return np.where(ok[..., None], pixels, 0.0), ok
