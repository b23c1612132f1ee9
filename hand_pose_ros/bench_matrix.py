"""``hand-pose bench --matrix``: every registered model x backend x device x batch, measured the
same way; ``--compare`` adds our pipeline vs the reference MediaPipe and our retargeting vs
dex-retargeting, in the same run and report.

Design:
- One measurement = one ``HandEstimator.estimate`` call on N crops of a real frame (N = batch,
  hands per call), timed in three stages: pre-process (the N rotation-aware crop warps from the
  decoded frame: cv2 on CPU, or ``runtime.preprocess`` on the GPU when the network runs there),
  network (the backend call: the estimator's backend is wrapped in a timer; with numpy inputs
  it includes the host<->device copies) and post-process (the rest of ``estimate``: the
  estimator's input conversion, outputs to host memory, decoding into a ``HandEstimate``).
  Every estimator is driven only through the common interface, so a newly registered model is
  benchmarked with no change here.
- Latency p50/p99 per call, throughput in hands/s (batch x hands per crop x calls/s: a two-hand
  model sees both hands in one crop), peak memory: on CPU the
  peak RSS (VmHWM, reset through /proc/self/clear_refs) above the RSS before the model was
  built; on CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the model.
  Parameters: the model's network (``InferenceBackend.num_parameters``).
- A combination that cannot run here (runtime not installed, no GPU, missing checkpoint) is
  listed with its one-line reason instead of failing the run.
- The report names the hardware (CPU, cores, GPU) and the runtime versions, with the date.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hand_pose_ros.runtime import BackendUnavailableError

MATRIX_STAGES = ("preprocess", "network", "postprocess", "total")
# What a model that cannot be built here raises: listed as unavailable, with the reason.
UNAVAILABLE_ERRORS = (BackendUnavailableError, FileNotFoundError, ImportError, RuntimeError,
                      ValueError)


@dataclass
class Combination:
    """One cell of the matrix."""

    model: str
    backend: str
    device: str
    batch: int
    options: dict = field(default_factory=dict)
    untrained: bool = False  # a seed model without checkpoint: time it with random weights

    def label(self) -> str:
        return f"{self.model} / {self.backend} / {self.device} / batch {self.batch}"


def backend_options(backend: str, device: str, precision: str, cuda_graphs: bool,
                    max_batch: int) -> dict:
    """Runtime options of one cell: CPU runs fp32; a GPU runs ``precision`` (and torch CUDA
    graphs when asked); a TensorRT engine's profile covers the largest batch measured."""
    if device == "cpu":
        return {"device": "cpu"}
    options = {"device": device}
    if backend == "torch":
        options.update(precision=precision, cuda_graphs=cuda_graphs)
    elif backend == "tensorrt":
        options.update(precision=precision, max_batch=max_batch)
    return options


class TimedBackend:
    """Wraps an estimator's backend: adds the seconds spent in network calls to ``seconds``."""

    def __init__(self, backend, synchronize):
        self.backend = backend
        self.synchronize = synchronize
        self.seconds = 0.0

    def __call__(self, *inputs):
        start = time.perf_counter()
        outputs = self.backend(*inputs)  # numpy outputs: already synchronised
        self.seconds += time.perf_counter() - start
        return outputs

    def run_tensors(self, *inputs):
        start = time.perf_counter()
        outputs = self.backend.run_tensors(*inputs)
        self.synchronize()
        self.seconds += time.perf_counter() - start
        return outputs

    def __getattr__(self, name):
        return getattr(self.backend, name)


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def release_freed_memory() -> None:
    """Return memory freed by earlier cells to the OS (glibc ``malloc_trim``), so that the next
    cell's RSS growth is its own rather than hidden by reuse of the freed heap."""
    # Not glibc: nothing to trim (the peak may then be underestimated).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False if not
    possible (the peak then may come from earlier work)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bench_rois(batch: int, width: int, height: int):
    """``batch`` distinct hand-sized ROIs (different places, sizes and rotations) in a frame."""
    from hand_pose_ros.pipeline.roi import Roi

    side = 0.45 * min(width, height)
    return [Roi(width * (0.3 + 0.4 * i / max(batch - 1, 1)), height * 0.5,
                side * (1.0 - 0.05 * i), side * (1.0 - 0.05 * i), 0.3 * i - 0.4)
            for i in range(batch)]


def untrained_seed_estimator(name: str, backend: str, threads: int, options: dict):
    """A seed model's real-time network with fixed random weights (seed 0), for timing before
    a checkpoint exists: speed does not depend on the weights' values.

    Raises:
        ValueError: ``name`` is not a seed model (no ``build_net`` in its module)."""
    import importlib

    import torch

    from hand_pose_ros.models.seed import SeedEstimator
    from hand_pose_ros.models.twohand import TwoHandEstimator

    try:
        module = importlib.import_module(f"hand_pose_ros.models.{name}")
    except ImportError:
        module = None
    if not hasattr(module, "build_net"):
        raise ValueError(f"{name} is not a seed model: --untrained does not apply")
    torch.manual_seed(0)
    net = module.build_net("realtime", pretrained=None)
    estimator_class = TwoHandEstimator if getattr(net, "hands_per_crop", 1) == 2 else SeedEstimator
    return estimator_class(name, net, backend=backend, num_threads=threads,
                           cache_key=f"{name}-realtime-untrained-seed0", **options)


def measure(combo: Combination, frames: list[np.ndarray], iterations: int, warmup: int,
            threads: int) -> dict:
    """Build the model for ``combo`` and time ``iterations`` estimate calls (see module
    docstring). Raises one of ``UNAVAILABLE_ERRORS`` when the combination cannot be built."""
    import torch

    from hand_pose_ros.models import create_model
    from hand_pose_ros.models.seed import CheckpointError
    from hand_pose_ros.pipeline.tracker import crop_rgb
    from hand_pose_ros.runtime.preprocess import crop_batch, frame_to_device

    cuda = combo.device == "cuda"
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    gc.collect()
    release_freed_memory()
    if cuda and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        memory_before = torch.cuda.memory_allocated()
    peak_reset = reset_peak_rss()  # first: the peak then starts at the RSS read next
    rss_before = _status_kb("VmRSS")

    try:
        estimator = create_model(combo.model, backend=combo.backend, num_threads=threads,
                                 **combo.options)
        weights = "shipped"
    except CheckpointError:
        if not combo.untrained:
            raise
        estimator = untrained_seed_estimator(combo.model, combo.backend, threads, combo.options)
        weights = "untrained (timing only)"
    timed = TimedBackend(estimator.backend, synchronize)
    estimator.backend = timed
    size = estimator.input_size
    hands_per_crop = getattr(estimator, "hands_per_crop", 1)  # two-hand models: both in a crop
    device_crops = getattr(estimator, "accepts_tensors", False) and timed.device == "cuda"
    h, w = frames[0].shape[:2]
    rois = bench_rois(combo.batch, w, h)

    stages = {stage: [] for stage in MATRIX_STAGES}
    for i in range(warmup + iterations):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        if device_crops:
            crops = crop_batch(frame_to_device(frame, "cuda"), rois, size, is_bgr=True)
            synchronize()
        else:
            crops = np.stack([crop_rgb(frame, True, roi, size) for roi in rois])
        cropped = time.perf_counter()
        timed.seconds = 0.0
        estimate = estimator.estimate(crops)
        done = time.perf_counter()
        if len(estimate) != combo.batch * hands_per_crop:
            raise RuntimeError(f"{combo.label()}: {len(estimate)} hands for {combo.batch} crops "
                               f"of {hands_per_crop} hand(s)")
        if i < warmup:
            continue
        stages["preprocess"].append(cropped - start)
        stages["network"].append(timed.seconds)
        stages["postprocess"].append(done - cropped - timed.seconds)
        stages["total"].append(done - start)

    result = {"model": combo.model, "backend": combo.backend, "device": combo.device,
              "batch": combo.batch, "options": combo.options, "runtime": timed.describe(),
              "parameters": int(timed.num_parameters), "iterations": iterations,
              "weights": weights, "hands_per_crop": hands_per_crop}
    for stage, seconds in stages.items():
        ms = 1e3 * np.array(seconds)
        result[f"{stage}_ms_p50"] = float(np.percentile(ms, 50))
        if stage == "total":
            result["latency_ms_p50"] = float(np.percentile(ms, 50))
            result["latency_ms_p99"] = float(np.percentile(ms, 99))
            result["latency_ms_mean"] = float(ms.mean())
    result["hands_per_s"] = combo.batch * hands_per_crop * 1e3 / result["latency_ms_mean"]
    if cuda:
        result["peak_memory_mb"] = (torch.cuda.max_memory_allocated() - memory_before) / 2**20
        result["peak_memory_kind"] = "torch.cuda.max_memory_allocated above the start"
    else:
        peak = _status_kb("VmHWM")
        if peak is not None and rss_before is not None:
            result["peak_memory_mb"] = (peak - rss_before) / 1024
            result["peak_memory_kind"] = ("peak RSS above the start" if peak_reset else
                                          "process peak RSS above the start (peak not reset)")
    del estimator, timed
    gc.collect()
    return result


def hardware() -> dict:
    """CPU, cores, GPU and runtime versions of this machine."""
    import cv2
    import torch

    from hand_pose_ros.bench import cpu_model

    info = {"cpu": cpu_model(), "cores_available": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "torch": torch.__version__}
    for package in ("onnxruntime", "tensorrt"):
        if importlib.util.find_spec(package) is not None:
            try:
                info[package] = __import__(package).__version__
            except ImportError as error:
                info[package] = f"unusable: {error}"
    return info


def run_matrix(models: list[str], backends: list[str], devices: list[str], batches: list[int],
               frames: list[np.ndarray], *, iterations: int, warmup: int, threads: int,
               precision: str, cuda_graphs: bool,
               untrained: bool = False) -> tuple[list[dict], list[dict]]:
    """Measure every combination; returns (results, combinations that could not be built or
    failed, each with a one-line reason). Progress goes to stderr, one line per cell."""
    results, unavailable = [], []
    for model in models:
        for backend in backends:
            for device in devices:
                options = backend_options(backend, device, precision, cuda_graphs, max(batches))
                for batch in batches:
                    combo = Combination(model, backend, device, batch, options, untrained)
                    try:
                        result = measure(combo, frames, iterations, warmup, threads)
                    except UNAVAILABLE_ERRORS as error:
                        reason = _first_line(error)
                        unavailable.append({"model": model, "backend": backend,
                                            "device": device, "reason": reason})
                        _progress(f"unavailable: {model} / {backend} / {device}: {reason}")
                        break  # the other batch sizes fail the same way
                    except Exception as error:
                        # One failing cell must not end the run: reported with its error.
                        reason = (f"failed at batch {batch}: {type(error).__name__}: "
                                  f"{_first_line(error)}")
                        unavailable.append({"model": model, "backend": backend,
                                            "device": device, "reason": reason})
                        _progress(f"unavailable: {model} / {backend} / {device}: {reason}")
                        continue
                    results.append(result)
                    _progress(f"{combo.label()}: p50 {result['latency_ms_p50']:.2f} ms, "
                        f"{result['hands_per_s']:.0f} hands/s")
    return results, unavailable


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def format_matrix(report: dict) -> str:
    """The report as a table for people."""
    hw = report["hardware"]
    lines = [f"{report['date']}  cpu {hw['cpu']} ({hw['cores_available']} cores)  "
             f"gpu {hw['gpu'] or 'none'}  input {report['input']}", "",
             f"{'model':<16} {'backend':<12} {'device':<6} {'batch':>5} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'hands/s':>8} {'pre ms':>7} {'net ms':>7} {'post ms':>7} "
             f"{'peak MB':>8} {'params M':>8}"]
    for r in report["results"]:
        lines.append(
            f"{r['model']:<16} {r['backend']:<12} {r['device']:<6} {r['batch']:>5} "
            f"{r['latency_ms_p50']:8.2f} {r['latency_ms_p99']:8.2f} {r['hands_per_s']:8.0f} "
            f"{r['preprocess_ms_p50']:7.2f} {r['network_ms_p50']:7.2f} "
            f"{r['postprocess_ms_p50']:7.2f} {r.get('peak_memory_mb', math.nan):8.1f} "
            f"{r['parameters'] / 1e6:8.2f}")
    for u in report["unavailable"]:
        lines.append(f"unavailable: {u['model']} / {u['backend']} / {u['device']}: "
                     f"{u['reason']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Comparisons (--compare)


def compare_with_reference(video: Path | None, frames: int, venv: Path) -> dict:
    """Our tracker vs the reference MediaPipe solution on the same frames
    (``compare_reference``), or {"skipped": reason}. Never creates the reference venv."""
    import subprocess

    from hand_pose_ros.compare_reference import compare, read_video, run_both

    python = venv / "bin" / "python"
    if video is None:
        return {"skipped": "no video (pass --video)"}
    if not python.is_file() or subprocess.run([str(python), "-c", "import mediapipe"],
                                              capture_output=True).returncode != 0:
        return {"skipped": f"reference MediaPipe not installed in {venv} (hand-pose "
                           "compare-reference creates it)"}
    decoded = read_video(video, frames)
    ours, ref, version = run_both(python, decoded, 1, "onnxruntime", 30.0)
    return {"video": str(video), "reference": f"mediapipe {version} solutions.hands",
            **compare(ours, ref)}


def compare_retargeting(robot: str, methods: list[str], frames: int) -> dict:
    """Our retargeting vs dex-retargeting (``retarget.bench``) on the synthetic sequence; the
    peer part is skipped (with the reason) when dex-retargeting is not installed."""
    from hand_pose_ros.hand.joints import Handedness
    from hand_pose_ros.retarget.bench import bench_method, find_peer_python
    from hand_pose_ros.retarget.synthetic import synthetic_sequence

    peer = find_peer_python(None)
    keypoints = synthetic_sequence(frames, Handedness.RIGHT, 0, 0.002)
    out = {"robot": robot, "frames": frames, "methods": {
        method: bench_method(robot, "right", method, keypoints, [20], peer)
        for method in methods}}
    if peer is None:
        out["peer_skipped"] = ("dex-retargeting not installed (hand-pose retarget-bench "
                               "--setup-peers creates it)")
    return out


def comparison_lines(comparisons: dict) -> list[str]:
    """One sentence per comparison (no bullet, no full stop): for the terminal and, through
    scripts/results_table.py, for README."""
    lines = []
    ref = comparisons.get("reference")
    if ref is not None and "skipped" in ref:
        lines.append(f"Reference MediaPipe: not run ({ref['skipped']})")
    elif ref is not None:
        px = ref.get("landmark_px_mean")
        lines.append(
            f"Ours vs {ref['reference']} on {ref['frames']} video frames: per-frame p50 "
            f"{ref['ours_ms_p50']:.1f} ms vs {ref['reference_ms_p50']:.1f} ms (paired speed "
            f"ratio {ref['speed_ratio_paired_median']:.2f}x), detection agreement "
            f"{100 * ref['detection_agreement']:.0f}%, mean landmark distance "
            f"{'n/a' if px is None else f'{px:.2f} px'}")
    retarget = comparisons.get("retarget")
    if retarget is not None:
        for method, r in retarget["methods"].items():
            line = (f"Retargeting {retarget['robot']} {method}: ours {r['ours_ms_p50']:.2f} "
                    f"ms/frame, fingertip error {r['ours_tip_error_mm']:.1f} mm")
            if "peer_ms_p50" in r:
                line += (f"; dex-retargeting {r['peer_ms_p50']:.2f} ms, "
                         f"{r['peer_tip_error_mm']:.1f} mm ({r['ratio']:.1f}x)")
            lines.append(line)
        if "peer_skipped" in retarget:
            lines.append(f"dex-retargeting: skipped ({retarget['peer_skipped']})")
    return lines


def format_comparisons(comparisons: dict) -> str:
    return "\n".join(comparison_lines(comparisons))


# ---------------------------------------------------------------------------------------------
# CLI (options are added to `hand-pose bench` by bench.add_arguments)


def add_matrix_arguments(parser) -> None:
    parser.add_argument("--matrix", action="store_true",
                        help="benchmark every model x backend x device x batch (estimator "
                             "calls on crops of real frames) instead of the tracker")
    parser.add_argument("--models", default="all",
                        help="comma-separated registered models, or 'all' (default)")
    parser.add_argument("--backends", default="onnxruntime,torch,tensorrt",
                        help="comma-separated runtimes (default: onnxruntime,torch,tensorrt)")
    parser.add_argument("--devices", default="cpu,cuda",
                        help="comma-separated devices (default: cpu,cuda)")
    parser.add_argument("--batch", default="1,4", help="hands per call, comma-separated")
    parser.add_argument("--iterations", type=int, default=30, help="timed calls per cell")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                        help="precision on GPUs (CPU runs fp32)")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="torch on CUDA without CUDA graphs")
    parser.add_argument("--untrained", action="store_true",
                        help="time a seed model whose checkpoint is missing with random "
                             "weights (realtime config); marked in the report")
    parser.add_argument("--compare", action="store_true",
                        help="with --matrix: also our pipeline vs the reference MediaPipe and "
                             "our retargeting vs dex-retargeting (skipped where not installed)")
    parser.add_argument("--compare-frames", type=int, default=100,
                        help="frames of both comparisons (video frames for the reference, "
                             "synthetic keypoint frames for retargeting, at least 30)")
    parser.add_argument("--robot", default="allegro", help="robot of the retargeting comparison")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run_matrix_cli(args: argparse.Namespace) -> int:
    from hand_pose_ros.bench import default_video, load_frames
    from hand_pose_ros.models import list_models
    from hand_pose_ros.paths import cache_dir

    models = list_models() if args.models == "all" else _split(args.models)
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; registered: "
              f"{', '.join(list_models())}", file=sys.stderr)
        return 2
    try:
        batches = [int(b) for b in _split(args.batch)]
    except ValueError:
        print(f"error: --batch takes comma-separated integers, got {args.batch!r}",
              file=sys.stderr)
        return 2
    if not batches or min(batches) < 1:
        print(f"error: batch sizes must be >= 1, got {args.batch!r}", file=sys.stderr)
        return 2
    video = args.video or default_video()
    frames, source = load_frames(video, min(args.frames, 60), args.width, args.height)
    results, unavailable = run_matrix(
        models, _split(args.backends), _split(args.devices), batches, frames,
        iterations=args.iterations, warmup=5, threads=args.threads, precision=args.precision,
        cuda_graphs=not args.no_cuda_graphs, untrained=args.untrained)
    report = {"kind": "bench-matrix",
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "hardware": hardware(), "input": f"{args.width}x{args.height}, {source}",
              "threads": args.threads, "results": results, "unavailable": unavailable}
    print(format_matrix(report))
    if args.compare:
        report["comparisons"] = {
            "reference": compare_with_reference(video, args.compare_frames,
                                                cache_dir() / "venv-reference"),
            # The synthetic sequence's exact pinch is frame 20: keep at least 30 frames.
            "retarget": compare_retargeting(args.robot, ["vector", "dexpilot"],
                                            max(args.compare_frames, 30)),
        }
        print()
        print(format_comparisons(report["comparisons"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
