"""``hand-pose compare-reference VIDEO``: our tracker against MediaPipe's own Python solution.

Design:
- The reference (``mediapipe==0.10.14``, ``mp.solutions.hands``) cannot live in our environment
  (it pins protobuf<5 and pulls jax), so it runs in a separate virtualenv, created on demand
  (default ``cache_dir()/venv-reference``), as a worker subprocess.
- This file is also the worker: run by the reference venv's Python as a plain script
  (``python compare_reference.py worker ...``), it imports only the standard library, numpy and
  mediapipe at module level; our package is imported lazily, in the parent only.
- Both sides see the same decoded frames: the parent decodes the video once; for every frame it
  runs our tracker, then sends the raw BGR frame to the worker's stdin and reads one JSON line
  back. The two sides alternate frame by frame, never run at the same time, and so share the
  same machine load; each times only its own per-frame call.
- Reported: frames where each side found a hand, per-frame detection agreement, handedness
  agreement, mean landmark distance in pixels, per-frame latency of both and the speed ratio
  (reference time / our time: of the means, and the median of per-frame ratios).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REFERENCE_PACKAGE = "mediapipe==0.10.14"


# ---------------------------------------------------------------------------------------------
# Worker side (runs inside the reference venv)


def worker_main(argv: list[str]) -> int:
    """Serve mp.solutions.hands: read one BGR frame of ``width`` x ``height`` from stdin, answer
    one JSON line on stdout (landmarks in pixels, P(label "Left"), seconds), until stdin ends."""
    parser = argparse.ArgumentParser(prog="compare_reference.py worker")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--max-hands", type=int, default=1)
    parser.add_argument("--model-complexity", type=int, default=1)
    args = parser.parse_args(argv)

    import mediapipe as mp  # only in the reference venv

    w, h = args.width, args.height
    frame_bytes = w * h * 3
    print(json.dumps({"version": mp.__version__}), flush=True)
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=args.max_hands,
                                  model_complexity=args.model_complexity,
                                  min_detection_confidence=0.5,
                                  min_tracking_confidence=0.5) as hands:
        while len(data := sys.stdin.buffer.read(frame_bytes)) == frame_bytes:
            rgb = np.frombuffer(data, np.uint8).reshape(h, w, 3)[:, :, ::-1].copy()
            start = time.perf_counter()
            result = hands.process(rgb)
            seconds = time.perf_counter() - start
            found = []
            for lms, side in zip(result.multi_hand_landmarks or [],
                                 result.multi_handedness or [], strict=True):
                top = side.classification[0]
                found.append({"landmarks": [(p.x * w, p.y * h) for p in lms.landmark],
                              "left": top.score if top.label == "Left" else 1.0 - top.score})
            print(json.dumps({"seconds": seconds, "hands": found}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side


def ensure_reference_venv(venv: Path) -> Path:
    """Python of a virtualenv holding the reference MediaPipe; created (pip) when absent."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import mediapipe"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating the reference environment {venv} ({REFERENCE_PACKAGE}, ~1 GB, once)",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    REFERENCE_PACKAGE], check=True)
    return python


def read_video(path: Path, max_frames: int | None) -> list[np.ndarray]:
    """Decoded BGR frames of a video file."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return frames


class ReferenceWorker:
    """The reference solution in its own venv, answering one frame at a time."""

    def __init__(self, python: Path, width: int, height: int, max_hands: int):
        cmd = [str(python), str(Path(__file__).resolve()), "worker", "--width", str(width),
               "--height", str(height), "--max-hands", str(max_hands)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.version = self._answer()["version"]

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reference worker exited (code {self.proc.poll()})")
        return json.loads(line)

    def process(self, frame: np.ndarray) -> dict:
        self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_both(python: Path, frames: list[np.ndarray], max_hands: int, backend: str,
             fps: float, mesh: bool = False) -> tuple[dict, dict, str]:
    """Run our tracker and the reference on each frame in turn (never at the same time, so
    both see the same machine load). Returns our arrays, the reference's, its version."""
    from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions

    h, w = frames[0].shape[:2]
    n = len(frames)
    ours = {"landmarks": np.full((n, max_hands, 21, 2), np.nan),
            "right": np.full((n, max_hands), np.nan), "seconds": np.zeros(n)}
    ref = {"landmarks": np.full((n, max_hands, 21, 2), np.nan),
           "left_label_score": np.full((n, max_hands), np.nan), "seconds": np.zeros(n)}
    # The video has no calibration; intrinsics only affect 3D, not the compared 2D landmarks.
    intrinsics = CameraIntrinsics.from_fov(w, h, 60.0)
    options = HandTrackerOptions(color_order="bgr", max_hands=max_hands, backend=backend,
                                 mesh=mesh)
    worker = ReferenceWorker(python, w, h, max_hands)
    with HandTracker(options) as tracker:
        tracker.process(frames[0], intrinsics, 0.0)  # warm-up (first-call allocations)
        tracker.reset()
        for i, frame in enumerate(frames):
            start = time.perf_counter()
            result = tracker.process(frame, intrinsics, i / fps)
            ours["seconds"][i] = time.perf_counter() - start
            for k, hand in enumerate(result.hands):
                ours["landmarks"][i, k] = hand.keypoints_image
                p = hand.handedness_score
                ours["right"][i, k] = p if hand.side == 0 else 1.0 - p
            answer = worker.process(frame)
            ref["seconds"][i] = answer["seconds"]
            for k, hand in enumerate(answer["hands"][:max_hands]):
                ref["landmarks"][i, k] = hand["landmarks"]
                ref["left_label_score"][i, k] = hand["left"]
    worker.close()
    return ours, ref, worker.version


def compare(ours: dict, ref: dict) -> dict:
    """Agreement and speed numbers (see module docstring); JSON-ready."""
    ours_found = ~np.isnan(ours["landmarks"][:, :, 0, 0])
    ref_found = ~np.isnan(ref["landmarks"][:, :, 0, 0])
    n_ours, n_ref = ours_found.sum(axis=1), ref_found.sum(axis=1)
    errors, side_agree = [], []
    for i in np.flatnonzero((n_ours > 0) & (n_ref > 0)):
        for k in np.flatnonzero(ref_found[i]):
            ref_lm = ref["landmarks"][i, k]
            # Match each reference hand to our nearest hand (by wrist).
            cands = np.flatnonzero(ours_found[i])
            j = cands[np.argmin([np.linalg.norm(ours["landmarks"][i, c, 0] - ref_lm[0])
                                 for c in cands])]
            errors.append(np.linalg.norm(ours["landmarks"][i, j] - ref_lm, axis=1).mean())
            # Reference "Left" (mirrored-image convention) is a right hand in an unmirrored video.
            ours_right = ours["right"][i, j] >= 0.5
            side_agree.append(ours_right == (ref["left_label_score"][i, k] >= 0.5))
    errors = np.array(errors)
    ours_ms, ref_ms = 1e3 * ours["seconds"], 1e3 * ref["seconds"]
    return {
        "frames": int(len(n_ours)),
        "frames_with_hand_ours": int((n_ours > 0).sum()),
        "frames_with_hand_reference": int((n_ref > 0).sum()),
        "detection_agreement": float((n_ours == n_ref).mean()),
        "handedness_agreement": float(np.mean(side_agree)) if side_agree else None,
        "landmark_px_mean": float(errors.mean()) if errors.size else None,
        "landmark_px_p95": float(np.percentile(errors, 95)) if errors.size else None,
        "landmark_px_max": float(errors.max()) if errors.size else None,
        "ours_ms_mean": float(ours_ms.mean()), "ours_ms_p50": float(np.median(ours_ms)),
        "reference_ms_mean": float(ref_ms.mean()), "reference_ms_p50": float(np.median(ref_ms)),
        "speed_ratio": float(ref_ms.mean() / ours_ms.mean()),
        # Per-frame ratios, robust to the machine's load drifting during the run.
        "speed_ratio_paired_median": float(np.median(ref_ms / ours_ms)),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file to run both pipelines on")
    parser.add_argument("--max-hands", type=int, default=1)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--backend", default="onnxruntime", help="our runtime backend")
    parser.add_argument("--mesh", action="store_true",
                        help="also fit our hand mesh to every hand (the reference has no mesh, so "
                             "by default both compute the same outputs)")
    parser.add_argument("--reference-venv", type=Path, default=None,
                        help="virtualenv for the reference mediapipe (default: "
                             "<cache>/venv-reference, created on first use)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")


def run(args: argparse.Namespace) -> int:
    import cv2

    from hand_pose_ros.paths import cache_dir

    venv = args.reference_venv or cache_dir() / "venv-reference"
    python = ensure_reference_venv(venv)
    frames = read_video(args.video, args.max_frames)
    fps = cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FPS) or 30.0
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames {w}x{h} from {args.video}", file=sys.stderr)
    ours, ref, version = run_both(python, frames, args.max_hands, args.backend, fps, args.mesh)
    report = {"video": str(args.video), "resolution": [w, h], "backend": args.backend,
              "our_mesh": args.mesh,
              "reference": f"mediapipe {version} solutions.hands (model_complexity=1)",
              **compare(ours, ref)}
    width = max(len(k) for k in report)
    for key, value in report.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    sys.exit(worker_main(sys.argv[2:]))
