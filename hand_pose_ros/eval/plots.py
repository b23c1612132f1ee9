"""Pictures of an evaluation (``hand-pose eval --plot DIR``): PNG files.

- ``samples.png``: model input crops with the ground-truth skeleton (white) under the predicted
  one (finger colours, ``viz.draw_skeleton``), and the predicted mesh (blue, translucent)
  placed at the ground-truth wrist and projected with the crop's intrinsics.
- ``joint_groups.png``: mean error per joint group (wrist, MCP, PIP, DIP, TIP), after
  Procrustes alignment and root-relative, as in EHPE's per-joint analysis.
- ``pck.png``: 3D PCK curves (0-50 mm), root-relative and Procrustes-aligned, with their AUC.

Matplotlib draws through its ``Figure`` object directly (no pyplot state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hand_pose_ros.eval.evaluate import JOINT_GROUPS, Evaluation, Example, pck_curves
from hand_pose_ros.hand.joints import BONES, Handedness
from hand_pose_ros.viz import draw_mesh, draw_skeleton

PANEL = 320  # side of one sample panel, pixels (crops are upscaled so lines stay readable)


def _faces(side: int) -> np.ndarray:
    from hand_pose_ros.hand.model import OpenHandModel

    return OpenHandModel(Handedness(side)).faces


def render_example(example: Example, size: int = PANEL) -> np.ndarray:
    """(size, size, 3) RGB: the crop with mesh, ground-truth and predicted skeletons."""
    scale = size / example.crop.shape[0]
    image = cv2.resize(example.crop, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    image = np.ascontiguousarray(image)  # BGR, what the viz helpers draw on

    def to_panel(points: np.ndarray) -> np.ndarray:
        # Crop pixel centres are integers; the upscaled panel's are too.
        return (points + 0.5) * scale - 0.5

    vertices = example.pred_vertices
    if vertices is not None and np.all(vertices[:, 2] > 1e-3):
        k = example.intrinsics
        pixels = vertices[:, :2] / vertices[:, 2:] * np.diag(k)[:2] + k[:2, 2]
        draw_mesh(image, to_panel(pixels), _faces(example.side), alpha=0.35)
    gt = np.round(to_panel(example.gt_2d)).astype(np.int32)
    for parent, child in BONES:
        cv2.line(image, tuple(gt[parent]), tuple(gt[child]), (255, 255, 255), 4, cv2.LINE_AA)
    draw_skeleton(image, to_panel(example.pred_2d))
    return image[:, :, ::-1]


def plot_samples(result: Evaluation, path: Path, columns: int = 4) -> Path:
    from matplotlib.figure import Figure

    examples = result.examples
    rows = -(-len(examples) // columns)
    fig = Figure(figsize=(3.2 * columns, 3.45 * rows), dpi=100)
    for i, example in enumerate(examples):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(render_example(example))
        side = Handedness(example.side).label
        ax.set_title(f"{side}, PA-MPJPE {example.pa_mpjpe_mm:.1f} mm, score {example.score:.2f}",
                     fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{result.model}: predicted (colours, mesh {result.mesh_source}) vs ground "
                 f"truth (white)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_joint_groups(report: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    groups = list(JOINT_GROUPS)
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    for offset, key, label in ((-0.2, "group_mm", "Procrustes-aligned"),
                               (0.2, "group_rr_mm", "root-relative")):
        values = [report[key][g] if report[key][g] is not None else np.nan for g in groups]
        bars = ax.bar(x + offset, values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, [g.upper() if g != "wrist" else "wrist" for g in groups])
    ax.set_ylabel("mean joint error (mm)")
    ax.set_title(f"{report['model']} on {report['data']}: error per joint group")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_pck(result: Evaluation, report: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    thresholds = np.linspace(0.0, 0.05, 101)
    aucs = {"root-relative": report["auc_0_50"], "Procrustes-aligned": report["pa_auc_0_50"]}
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for name, curve in pck_curves(result, thresholds).items():
        ax.plot(thresholds * 1e3, curve, label=f"{name} (AUC 0-50 mm {aucs[name]:.3f})")
    ax.set_xlabel("threshold (mm)")
    ax.set_ylabel("3D PCK")
    ax.set_xlim(0, 50)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"{report['model']} on {report['data']}: 3D PCK")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_plots(result: Evaluation, report: dict, directory: str | Path) -> list[Path]:
    """Write the three PNGs into ``directory`` (created); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [plot_joint_groups(report, directory / "joint_groups.png"),
             plot_pck(result, report, directory / "pck.png")]
    if result.examples:
        paths.insert(0, plot_samples(result, directory / "samples.png"))
    return paths
