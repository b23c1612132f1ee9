"""``hand-pose eval``: score a registered model on a data source; table, JSON and plots.

    hand-pose eval --model mediapipe --data synthetic:test --json out/eval.json --plot out/eval

What is measured and how crops are made: ``hand_pose_ros.eval.evaluate``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hand_pose_ros.eval.evaluate import Evaluation


def notes() -> dict[str, str]:
    """What the report's numbers mean (written into the JSON)."""
    from hand_pose_ros.eval.evaluate import (
        JOINT_BOX_SCALE,
        PCK2D_THRESHOLD,
        PRECROPPED_SOURCES,
        SCORE_THRESHOLD,
    )

    return {
        "units": "errors in mm; f5/f15, auc_*, pck*, fractions in [0, 1]; epe2d_px in image "
                 "pixels",
        "alignment": "mpjpe_mm, auc_*, pck3d_20mm, group_rr_mm: root-relative (wrist at "
                     "origin); pa_*, group_mm: similarity Procrustes per hand (joints and "
                     "vertices aligned separately)",
        "groups": "thumb CMC/MCP/IP/TIP counted as MCP/PIP/DIP/TIP (chain level, as in "
                  "Spurr et al. 2020 which EHPE follows)",
        "pck2d": f"2D joints within {PCK2D_THRESHOLD} x the ground-truth joint box's longer side",
        "crop": f"sources {sorted(PRECROPPED_SOURCES)} with one hand: the whole image; "
                f"otherwise a square of {JOINT_BOX_SCALE} x the ground-truth 2D joint box per "
                f"hand (both hands for two-hand models); resized to the model's input size",
        "missed": f"hands scored below {SCORE_THRESHOLD} presence; they are still scored",
        "mesh": "mesh_source 'fit': open hand model fitted to the predicted joints "
                "(HandFitter, ground-truth side); 'model': the model's mesh head",
        "mrrpe_lifted_mm": "relative root error when each hand is placed as the ROS node does "
                           "(predicted joints + pixels + image intrinsics, least squares)",
        "timing": "time_per_sample_ms: wall time / samples, including data loading/rendering "
                  "(data_ms_per_sample) and mesh fitting",
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model name (see `info`)")
    parser.add_argument("--data", required=True,
                        help="synthetic:test, synthetic:test-twohand, freihand:PATH, "
                             "interhand:PATH or rhd:PATH")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--plot", type=Path, default=None, help="write PNGs into this folder")
    parser.add_argument("--backend", default=None,
                        help="inference runtime (onnxruntime, torch, ...); default: the model's")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the runtime")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per model call")
    parser.add_argument("--examples", type=int, default=12, help="crops shown in samples.png")


def hardware() -> dict:
    import numpy
    import onnxruntime
    import torch

    from hand_pose_ros.bench import cpu_model

    return {"cpu": cpu_model(), "cores_available": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def make_report(result: Evaluation, metrics: dict, model, data: str) -> dict:
    """The JSON report: run description, timings, then the metrics."""
    from hand_pose_ros.eval.evaluate import JOINT_GROUPS

    backend = getattr(model, "backend", None)
    return {
        "model": result.model,
        "backend": backend.describe() if backend is not None else None,
        "data": data,
        "count": result.samples,
        "hands": result.hands,
        "interacting_samples": len({i for i, inter in zip(result.sample_index,
                                                           result.interacting, strict=True)
                                    if inter}),
        "input_size": result.input_size,
        "hands_per_crop": result.hands_per_crop,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "wall_time_s": result.wall_s,
        "time_per_sample_ms": 1e3 * result.wall_s / result.samples,
        "model_ms_per_hand": 1e3 * result.model_s / result.hands,
        "data_ms_per_sample": 1e3 * result.data_s / result.samples,
        "mesh_fit_ms_per_hand": 1e3 * result.fit_s / result.hands,
        **metrics,
        "joint_groups": {g: list(j) for g, j in JOINT_GROUPS.items()},
        "notes": notes(),
    }


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(report: dict) -> str:
    from hand_pose_ros.eval.evaluate import JOINT_GROUPS, PCK2D_THRESHOLD

    rows = [
        ("MPJPE (root-relative)", _fmt(report["mpjpe_mm"]), "mm"),
        ("PA-MPJPE", _fmt(report["pa_mpjpe_mm"]), "mm"),
        ("PA-MPVPE", _fmt(report["pa_mpvpe_mm"]), "mm"),
        ("F@5 mm", _fmt(report["f5"], 3), ""),
        ("F@15 mm", _fmt(report["f15"], 3), ""),
        ("AUC 0-50 mm", _fmt(report["auc_0_50"], 3), ""),
        ("AUC 20-50 mm", _fmt(report["auc_20_50"], 3), ""),
        ("PA AUC 0-50 mm", _fmt(report["pa_auc_0_50"], 3), ""),
        (f"2D PCK @ {PCK2D_THRESHOLD} box", _fmt(report["pck2d"], 3), ""),
        ("2D error", _fmt(report["epe2d_px"]), "px"),
    ]
    rows += [(f"  {g} (aligned / root-rel.)",
              f"{_fmt(report['group_mm'][g])} / {_fmt(report['group_rr_mm'][g])}", "mm")
             for g in JOINT_GROUPS]
    if "mpjpe_interacting_mm" in report:
        rows += [("MPJPE single", _fmt(report["mpjpe_single_mm"]), "mm"),
                 ("MPJPE interacting", _fmt(report["mpjpe_interacting_mm"]), "mm"),
                 ("MRRPE", _fmt(report["mrrpe_mm"]), "mm"),
                 ("MRRPE (node's lifting)", _fmt(report["mrrpe_lifted_mm"]), "mm")]
    rows += [("missed (score < 0.5)", f"{report['missed']} / {report['hands']}", "hands"),
             ("handedness accuracy", _fmt(report["handedness_accuracy"], 3), "")]
    head = (f"{report['model']} ({report['backend']}) on {report['data']}: {report['count']} "
            f"samples, {report['hands']} hands, mesh: {report['mesh_source']}")
    width = max(len(r[0]) for r in rows)
    lines = [head, "-" * len(head)]
    lines += [f"{name:<{width}}  {value:>15} {unit}".rstrip() for name, value, unit in rows]
    for key in ("vertex_reason", "single_reason", "mrrpe_reason"):
        if report.get(key):
            lines.append(f"note: {report[key]}")
    lines.append(f"time: {report['wall_time_s']:.1f} s wall, "
                 f"{report['time_per_sample_ms']:.1f} ms per sample "
                 f"(model {report['model_ms_per_hand']:.1f} ms per hand)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hand_pose_ros.data.datasets import open_dataset
    from hand_pose_ros.eval.evaluate import compute_metrics, evaluate
    from hand_pose_ros.models.base import create_model

    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    overrides = {"num_threads": args.threads}
    if args.backend is not None:
        overrides["backend"] = args.backend
    try:
        model = create_model(args.model, **overrides)
        result = evaluate(model, open_dataset(args.data, limit=args.limit),
                          batch_size=args.batch_size,
                          examples=args.examples if args.plot else 0)
    except (ValueError, FileNotFoundError) as error:  # bad name, spec, path or model output
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = make_report(result, compute_metrics(result), model, args.data)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        from hand_pose_ros.eval.plots import write_plots

        for path in write_plots(result, report, args.plot):
            print(f"wrote {path}")
    return 0
