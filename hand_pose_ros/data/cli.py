"""``hand-pose synth``: write synthetic shards, the fixed test split, a preview sheet, or measure
the engine's speed.

Modes (one per call):
- default: ``--out DIR --count N --seed S`` renders samples 0..N-1 of the stream (the same
  samples ``data.stream.SyntheticStream`` yields for that seed, config, kind and negative
  fraction) into ``DIR/shard-00000.npz ...`` (``sample.write_shard``) + ``DIR/manifest.json``;
- ``--split test``: the fixed, versioned test split (``synth.TEST_SPLITS``) into
  ``DIR/single/`` and ``DIR/two/`` + manifest (``--count`` writes only the first N of each);
- ``--bench``: samples/s of single-hand 256 px crops (``--size``) in one process and in
  ``--workers`` processes; prints a table and JSON naming the hardware;
- ``--preview PNG``: a contact sheet, each sample as the crop with its skeleton and the crop
  with its part segmentation, to look at.
Worker processes are started with "spawn": each makes its own OpenGL context.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class _ShardJob:
    """Samples ``indices`` of stream (seed, config, kind, negative_fraction) -> one shard."""

    path: str
    seed: int
    config: object  # SynthConfig (kept untyped: this module imports synth lazily)
    kind: str
    negative_fraction: float
    indices: tuple[int, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output folder for shards + manifest.json")
    parser.add_argument("--count", type=int, default=None,
                        help="samples to write (default 1000); with --split test: the first N "
                             "of each kind (default all); with --bench: samples per process "
                             "(default 300); with --preview: tiles (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--size", type=int, default=256, choices=(224, 256),
                        help="crop side in pixels (default 256)")
    parser.add_argument("--two-hand-fraction", type=float, default=0.0,
                        help="share of two-hand scenes (default 0: single hands only)")
    parser.add_argument("--negative-fraction", type=float, default=0.0,
                        help="share of hand-free crops (default 0)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="rendering processes (default: the usable CPU cores)")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard file")
    parser.add_argument("--split", choices=("test",),
                        help="write the fixed test split (synthetic-test-v1) instead of a stream")
    parser.add_argument("--bench", action="store_true", help="measure samples/s and exit")
    parser.add_argument("--json", type=Path, help="with --bench: also write the report here")
    parser.add_argument("--preview", type=Path, metavar="PNG",
                        help="save a contact sheet of samples with joints and segmentation")


def run(args: argparse.Namespace) -> int:
    from hand_pose_ros.data.synth import SynthConfig

    if args.workers < 1 or args.shard_size < 1 or (args.count is not None and args.count < 1):
        print("error: --workers, --shard-size and --count must be >= 1", file=sys.stderr)
        return 2
    try:
        config = SynthConfig(size=args.size, two_hand_fraction=args.two_hand_fraction)
        if not 0.0 <= args.negative_fraction < 1.0:
            raise ValueError(f"--negative-fraction must be in [0, 1), got "
                             f"{args.negative_fraction}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return _run_mode(args, config)
    except (ImportError, RuntimeError) as error:  # no moderngl / no EGL: the message says how
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run_mode(args: argparse.Namespace, config) -> int:
    if args.bench:
        report = bench(config, args.count or 300, args.workers)
        print(format_bench(report))
        print(json.dumps(report, indent=2))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    if args.preview:
        path = write_preview(args.preview, args.seed, config, args.count or 16,
                             args.negative_fraction)
        print(f"wrote {path}")
        return 0
    if args.out is None:
        print("error: give --out DIR (or --bench / --preview PNG)", file=sys.stderr)
        return 2
    if args.split == "test":
        manifest = write_test_split(args.out, args.count, args.workers, args.shard_size)
    else:
        manifest = write_stream(args.out, args.seed, config, args.count or 1000,
                                args.negative_fraction, args.workers, args.shard_size)
    print(f"wrote {manifest['count']} samples in {len(manifest['shards'])} shards to {args.out} "
          f"({manifest['counts']}), manifest {args.out / 'manifest.json'}")
    return 0


# --- shards ---

def stream_kind(config) -> str:
    """The scene kind of a stream with this config's two-hand fraction (0 -> "single",
    1 -> "two", else "mixed"), so a shard equals ``SyntheticStream`` of the same kind."""
    if config.two_hand_fraction == 0.0:
        return "single"
    return "two" if config.two_hand_fraction == 1.0 else "mixed"


def _render_shard(job: _ShardJob) -> dict:
    from hand_pose_ros.data.sample import write_shard
    from hand_pose_ros.data.synth import synthetic_sample

    samples = [synthetic_sample(job.seed, i, job.config, job.kind, job.negative_fraction)
               for i in job.indices]
    write_shard(job.path, samples)
    hands = [s.num_hands for s in samples]
    return {"file": Path(job.path).name, "first_index": job.indices[0], "count": len(samples),
            "counts": {"negative": hands.count(0), "single": hands.count(1),
                       "two": hands.count(2)}}


def _run_jobs(jobs: list[_ShardJob], workers: int) -> list[dict]:
    """Render and write the shards, in ``workers`` spawned processes (results in job order)."""
    if workers == 1 or len(jobs) == 1:
        results = []
        for job in jobs:
            results.append(_render_shard(job))
            print(f"  {job.path}", flush=True)
        return results
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        results = []
        for job, result in zip(jobs, pool.imap(_render_shard, jobs), strict=True):
            results.append(result)
            print(f"  {job.path}", flush=True)
        return results


def _jobs(folder: Path, seed: int, config, kind: str, negative_fraction: float,
          indices: list[int], shard_size: int) -> list[_ShardJob]:
    return [_ShardJob(str(folder / f"shard-{k:05d}.npz"), seed, config, kind, negative_fraction,
                      tuple(indices[start:start + shard_size]))
            for k, start in enumerate(range(0, len(indices), shard_size))]


def _manifest(shards: list[dict], **fields) -> dict:
    from hand_pose_ros import __version__
    from hand_pose_ros.data.sample import _SHARD_VERSION

    counts = {key: sum(s["counts"][key] for s in shards) for key in ("single", "two", "negative")}
    return {"format": "hand_pose_ros synthetic shards", "manifest_version": MANIFEST_VERSION,
            "shard_version": _SHARD_VERSION, "package_version": __version__, **fields,
            "count": sum(s["count"] for s in shards), "counts": counts, "shards": shards}


def write_stream(out: Path, seed: int, config, count: int, negative_fraction: float,
                 workers: int, shard_size: int) -> dict:
    """Samples 0..count-1 of the stream -> shards + manifest.json in ``out``; the manifest."""
    kind = stream_kind(config)
    jobs = _jobs(out, seed, config, kind, negative_fraction, list(range(count)), shard_size)
    shards = _run_jobs(jobs, workers)
    manifest = _manifest(shards, seed=seed, kind=kind, negative_fraction=negative_fraction,
                         config=asdict(config))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_test_split(out: Path, limit: int | None, workers: int, shard_size: int) -> dict:
    """The fixed test split (first ``limit`` of each kind, None: all) -> ``out/single``,
    ``out/two`` + manifest.json; the same samples as ``synth.test_split_samples``."""
    from hand_pose_ros.data.synth import DEFAULT_TEST_SPLIT, TEST_SPLITS

    split = TEST_SPLITS[DEFAULT_TEST_SPLIT]
    single = list(range(split.single_hand))[:limit]
    two = list(range(split.single_hand, split.single_hand + split.two_hand))[:limit]
    jobs = (_jobs(out / "single", split.seed, split.config, "single", 0.0, single, shard_size)
            + _jobs(out / "two", split.seed, split.config, "two", 0.0, two, shard_size))
    shards = _run_jobs(jobs, workers)
    for job, shard in zip(jobs, shards, strict=True):
        shard["file"] = str(Path(job.path).relative_to(out))
    manifest = _manifest(shards, split=split.name, seed=split.seed,
                         complete=limit is None or limit >= max(split.single_hand,
                                                                split.two_hand),
                         config=asdict(split.config))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- benchmark ---

def _cpu_seconds() -> float:
    """CPU time of this process, all threads (llvmpipe rasterises on helper threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bench_worker(config, count: int, first_index: int, barrier, results) -> None:
    """Warm up (GL context, shaders, caches), wait for the others, render ``count`` samples;
    report wall seconds, CPU seconds and the wall seconds spent inside the renderer (GL draw +
    readback)."""
    from hand_pose_ros.data.render import get_renderer
    from hand_pose_ros.data.synth import render_sample

    renderer = get_renderer()
    draw = renderer.render
    gl_seconds = [0.0]

    def timed_render(*args, **kwargs):
        start = time.perf_counter()
        try:
            return draw(*args, **kwargs)
        finally:
            gl_seconds[0] += time.perf_counter() - start

    renderer.render = timed_render  # this bench process only
    for i in range(10):
        render_sample(1, i, config, two_hands=False)
    gl_seconds[0] = 0.0
    barrier.wait()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    for i in range(first_index, first_index + count):
        render_sample(0, i, config, two_hands=False)
    results.put((time.perf_counter() - start, gl_seconds[0], _cpu_seconds() - cpu_start))


def _measure(config, count: int, workers: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    processes = [ctx.Process(target=_bench_worker,
                             args=(config, count, k * count, barrier, results))
                 for k in range(workers)]
    for process in processes:
        process.start()
    measured = [results.get() for _ in processes]
    for process in processes:
        process.join()
    wall = max(seconds for seconds, _, _ in measured)
    total = workers * count
    return {"workers": workers, "samples": total, "seconds": round(wall, 3),
            "samples_per_s": round(total / wall, 1),
            "ms_per_sample_per_process": round(1e3 * wall / count, 3),
            "renderer_ms_per_sample": round(1e3 * sum(g for _, g, _ in measured) / total, 3),
            "cpu_ms_per_sample": round(1e3 * sum(c for _, _, c in measured) / total, 3)}


def bench(config, count: int, workers: int) -> dict:
    """Single-hand samples/s at ``config.size`` in 1 process and in ``workers`` processes
    (each renders ``count`` samples after a warm-up; all start together)."""
    from hand_pose_ros.bench import cpu_model
    from hand_pose_ros.data.render import Renderer

    renderer = Renderer()  # only to name the GL implementation
    gl = renderer.ctx.info["GL_RENDERER"]
    renderer.release()
    load = os.getloadavg()
    runs = [_measure(config, count, 1)]
    if workers > 1:
        runs.append(_measure(config, count, workers))
    cores = len(os.sched_getaffinity(0))
    cpu_ms = runs[-1]["cpu_ms_per_sample"]
    return {
        "benchmark": "hand-pose synth --bench", "scene": "single hand",
        "size": config.size, "samples_per_process": count,
        "hardware": {"cpu": cpu_model(), "cores_available": len(os.sched_getaffinity(0)),
                     "gl_renderer": gl,
                     "load_average_before": [round(x, 2) for x in load]},
        "runs": runs,
        # What the cores could do if this job had them to itself: on a shared machine the
        # wall-clock rates above drop with others' load, CPU time per sample much less.
        "samples_per_s_all_cores_from_cpu_time": round(1e3 * cores / cpu_ms, 1),
    }


def format_bench(report: dict) -> str:
    hw = report["hardware"]
    lines = [f"synthetic data engine: {report['scene']} {report['size']}x{report['size']} crops",
             f"cpu {hw['cpu']}  cores {hw['cores_available']}  GL {hw['gl_renderer']}  "
             f"load average before {hw['load_average_before'][0]}",
             f"{'processes':>9} {'samples':>8} {'seconds':>8} {'samples/s':>10} "
             f"{'ms/sample/proc':>15} {'renderer ms':>12} {'CPU ms/sample':>14}"]
    for run in report["runs"]:
        lines.append(f"{run['workers']:>9} {run['samples']:>8} {run['seconds']:>8.2f} "
                     f"{run['samples_per_s']:>10.1f} {run['ms_per_sample_per_process']:>15.2f} "
                     f"{run['renderer_ms_per_sample']:>12.2f} {run['cpu_ms_per_sample']:>14.2f}")
    lines.append(f"all {hw['cores_available']} cores, from CPU time per sample: "
                 f"{report['samples_per_s_all_cores_from_cpu_time']:.0f} samples/s")
    return "\n".join(lines)


# --- preview ---

# RGB colour of each part (16 per hand): one hue per finger, lighter towards the tip; the
# left hand's parts darker than the right's.
def _part_palette() -> np.ndarray:
    from hand_pose_ros.data.sample import NUM_PARTS, NUM_SEGMENTATION_CLASSES
    from hand_pose_ros.viz import FINGER_COLOURS_RGB, PALM_COLOUR_RGB

    palette = np.zeros((NUM_SEGMENTATION_CLASSES, 3), np.float64)
    for side, dim in ((0, 1.0), (1, 0.6)):
        base = 1 + side * NUM_PARTS
        palette[base] = np.array(PALM_COLOUR_RGB) * dim
        for finger, colour in enumerate(FINGER_COLOURS_RGB):
            for level in range(3):
                lighten = 0.35 * level / 2
                rgb = np.array(colour) * (1 - lighten) + 255 * lighten
                palette[base + 1 + 3 * finger + level] = rgb * dim
    return palette.astype(np.uint8)


def write_preview(path: Path, seed: int, config, count: int, negative_fraction: float) -> Path:
    """A contact sheet of samples 0..count-1 (kind from ``config``): per sample the crop with
    its skeleton(s) and the crop blended with its part segmentation."""
    import cv2

    from hand_pose_ros.data.synth import synthetic_sample
    from hand_pose_ros.viz import draw_skeleton

    palette = _part_palette()
    kind = stream_kind(config)
    tiles = []
    for i in range(count):
        sample = synthetic_sample(seed, i, config, kind, negative_fraction)
        left = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
        for h, side in enumerate(sample.handedness):
            draw_skeleton(left, sample.joints_2d[h], "R" if side == 0 else "L")
        overlay = sample.image.copy()
        hand = sample.segmentation > 0
        overlay[hand] = (0.35 * overlay[hand] + 0.65 * palette[sample.segmentation[hand]])
        right = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
        cv2.putText(right, f"{seed}-{i}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([left, right], axis=1))
    columns = max(1, min(4, round(math.sqrt(count / 2))))
    rows = math.ceil(count / columns)
    blank = np.full_like(tiles[0], 40)
    tiles += [blank] * (rows * columns - count)
    gap = 4
    grid = [np.concatenate(sum(([t, np.full((t.shape[0], gap, 3), 255, np.uint8)]
                                for t in tiles[r * columns:(r + 1) * columns]), [])[:-1], axis=1)
            for r in range(rows)]
    sheet = np.concatenate(sum(([g, np.full((gap, g.shape[1], 3), 255, np.uint8)]
                                for g in grid), [])[:-1], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write {path} (is the extension .png?)")
    return path
