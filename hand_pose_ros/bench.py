"""``hand-pose bench``: latency of the hand tracker, per stage and end to end, on fixed frames.
``--matrix`` (bench_matrix.py) measures every model x backend x device x batch instead, and
``--compare`` adds the reference comparisons; ``--e2e`` (bench_e2e.py) measures through ROS.

Design: the benchmark calls the public ``HandTracker.process`` (what the ROS node calls) and
reads its per-stage ``timings_ms``. Two modes over the same frames:
- tracking: the tracker runs as in production (detector only when no hand is tracked);
  statistics over the frames where the detector did not run;
- detection: the tracker is reset before every frame, so the palm detector runs every time.
Frames: the real test video (``<checkout>/../shared/data/human_hand_video.mp4``, not shipped to
users) centre-cropped to 4:3 and resized to the requested size; without it, generated frames
(no hand in them: then only the detector stage is exercised, and the report says so).
The report names the CPU, core count and runtime versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from hand_pose_ros.bench_e2e import add_e2e_arguments, run_e2e
from hand_pose_ros.bench_matrix import add_matrix_arguments, run_matrix_cli

STAGES = ("preprocess", "detection", "landmarks", "lifting", "mesh", "total")


def default_video() -> Path | None:
    """The project's real test video, when this is a source checkout that has it."""
    from hand_pose_ros.paths import source_checkout_root

    root = source_checkout_root()
    if root is None:
        return None
    path = root.parent / "shared" / "data" / "human_hand_video.mp4"
    return path if path.is_file() else None


def load_frames(video: Path | None, count: int, width: int, height: int) -> tuple[list, str]:
    """``count`` BGR frames of ``width`` x ``height``, and a description of their source."""
    import cv2

    frames = []
    if video is not None:
        capture = cv2.VideoCapture(str(video))
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            # Centre crop to the target aspect ratio, then resize: no distortion of the hand.
            crop_w = min(w, round(h * width / height))
            crop_h = min(h, round(w * height / width))
            x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
            frames.append(cv2.resize(frame[y0:y0 + crop_h, x0:x0 + crop_w], (width, height),
                                     interpolation=cv2.INTER_AREA))
        capture.release()
    if frames:
        return frames, f"video {video.name} ({len(frames)} frames)"
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8),
                      (width, height), interpolation=cv2.INTER_CUBIC)
    frames = [np.roll(base, 4 * i, axis=1) for i in range(count)]
    return frames, f"generated ({count} frames, no hand: landmark stage not exercised)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_report(tracker) -> dict:
    import cv2
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cores_available": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "estimator_runtime": tracker.estimator.backend.describe(),
        "detector_runtime": tracker.detector.backend.describe(),
    }


def summarize(timings: list[dict[str, float]]) -> dict:
    """Per stage: latency_ms_p50 / p99 / mean over the frames that ran it; fps end to end."""
    out = {"frames": len(timings)}
    for stage in STAGES:
        values = np.array([t[stage] for t in timings if stage in t])
        if values.size:
            out[stage] = {"latency_ms_p50": float(np.percentile(values, 50)),
                          "latency_ms_p99": float(np.percentile(values, 99)),
                          "latency_ms_mean": float(values.mean())}
    if "total" in out:
        out["fps"] = 1e3 / out["total"]["latency_ms_mean"]
    return out


def run_bench(model: str, backend: str, frames: list[np.ndarray], threads: int,
              repeats: int = 1, backend_options: dict | None = None) -> tuple[dict, dict]:
    """Run both modes; returns (modes report, hardware report). ``backend_options`` go to
    the runtime (e.g. ``{"device": "cuda", "precision": "fp16", "cuda_graphs": True}``)."""
    from hand_pose_ros.pipeline import CameraIntrinsics, HandTracker, HandTrackerOptions

    h, w = frames[0].shape[:2]
    intrinsics = CameraIntrinsics.from_fov(w, h, 60.0)
    options = HandTrackerOptions(color_order="bgr", model=model, backend=backend,
                                 num_threads=threads, max_hands=1,
                                 backend_options=backend_options or {})
    with HandTracker(options) as tracker:
        for i in range(5):  # warm-up: first calls allocate
            tracker.process(frames[i % len(frames)], intrinsics, i / 30.0)
        tracking, detection = [], []
        found = 0
        for r in range(repeats):
            tracker.reset()
            for i, frame in enumerate(frames):
                result = tracker.process(frame, intrinsics, (r * len(frames) + i) / 30.0)
                found += bool(result.hands)
                if not result.detector_ran:
                    tracking.append(result.timings_ms)
        for _ in range(repeats):
            for i, frame in enumerate(frames):
                tracker.reset()
                detection.append(tracker.process(frame, intrinsics, i / 30.0).timings_ms)
        hardware = hardware_report(tracker)
    modes = {"tracking": summarize(tracking), "detection": summarize(detection),
             "frames_with_hand": found / (repeats * len(frames))}
    return modes, hardware


def format_table(report: dict) -> str:
    lines = [f"model {report['model']}  backend {report['backend']}  input {report['input']}",
             f"cpu {report['hardware']['cpu']}  cores {report['hardware']['cores_available']}",
             f"runtime {report['hardware']['estimator_runtime']}",
             f"frames with a hand: {100 * report['modes']['frames_with_hand']:.0f}%", "",
             f"{'mode':<10} {'stage':<11} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'frames':>7}"]
    for mode in ("tracking", "detection"):
        stats = report["modes"][mode]
        for stage in STAGES:
            if stage in stats:
                s = stats[stage]
                lines.append(f"{mode:<10} {stage:<11} {s['latency_ms_p50']:8.2f} "
                             f"{s['latency_ms_p99']:8.2f} {s['latency_ms_mean']:8.2f} "
                             f"{stats['frames']:7d}")
        if "fps" in stats:
            lines.append(f"{mode:<10} {'fps':<11} {stats['fps']:8.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="mediapipe",
                        help="estimator: 'mediapipe' (full) or 'mediapipe_lite'")
    parser.add_argument("--backend", default="onnxruntime",
                        help="onnxruntime, torch or tensorrt")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the networks run (cuda: --precision, CUDA graphs with torch)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--frames", type=int, default=200, help="number of test frames")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the frames")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--video", type=Path, default=None,
                        help="video to take frames from (default: the project's test video "
                             "when present, else generated frames)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")
    e2e = parser.add_argument_group("end to end through ROS (--e2e)")
    e2e.add_argument("--e2e", action="store_true",
                     help="measure image-stamp -> HandArray latency of a running hand_pose_node "
                          "over loopback instead of the tracker in this process")
    add_e2e_arguments(e2e)
    add_matrix_arguments(parser.add_argument_group("model x backend x device x batch (--matrix)"))


def run(args: argparse.Namespace) -> int:
    from hand_pose_ros.bench_matrix import backend_options
    from hand_pose_ros.runtime import BackendUnavailableError

    if args.e2e:
        return run_e2e(args)
    if args.matrix:
        return run_matrix_cli(args)
    video = args.video or default_video()
    frames, source = load_frames(video, args.frames, args.width, args.height)
    options = backend_options(args.backend, args.device, args.precision,
                              not args.no_cuda_graphs, max_batch=1)
    try:
        modes, hardware = run_bench(args.model, args.backend, frames, args.threads,
                                    args.repeats, options)
    except BackendUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = {"model": args.model, "backend": args.backend, "device": args.device,
              "input": f"{args.width}x{args.height}, {source}", "hardware": hardware,
              "modes": modes}
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
