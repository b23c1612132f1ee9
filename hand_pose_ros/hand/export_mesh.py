"""``hand-pose hand-model``: write the open hand model's mesh (template or a gesture) to a file.

For inspection in any mesh viewer (MeshLab, Blender): Wavefront .obj or ASCII .ply, metres,
model frame (x towards the fingers, z out of the palm), triangles counter-clockwise from outside.
"""

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", type=Path, help="file to write: .obj or .ply")
    parser.add_argument("--gesture", default="open", help="pose preset (default: open)")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    parser.add_argument("--scale", type=float, default=1.0, help="overall hand scale factor")


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as .obj or ASCII .ply (chosen by the file extension)."""
    suffix = path.suffix.lower()
    if suffix == ".obj":
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    elif suffix == ".ply":
        lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}",
                 "property float x", "property float y", "property float z",
                 f"element face {len(faces)}", "property list uchar int vertex_indices",
                 "end_header"]
        lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    else:
        raise ValueError(f"unsupported mesh format {suffix!r}: use .obj or .ply")
    path.write_text("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from hand_pose_ros.hand.joints import Handedness
    from hand_pose_ros.hand.model import OpenHandModel
    from hand_pose_ros.hand.poses import gesture
    from hand_pose_ros.hand.skeleton import NUM_SHAPE, SHAPE_SCALE

    if not args.scale > 0:
        raise SystemExit(f"--scale must be positive, got {args.scale}")
    try:
        pose = gesture(args.gesture)
    except KeyError as error:
        raise SystemExit(str(error.args[0])) from None
    model = OpenHandModel(Handedness[args.side.upper()])
    shape = np.zeros((1, NUM_SHAPE))
    shape[0, SHAPE_SCALE] = np.log(args.scale)
    out = model.forward(pose[None], shape)
    write_mesh(args.output, out.vertices[0], model.faces)
    print(f"wrote {args.output}: {model.num_vertices} vertices, {len(model.faces)} triangles "
          f"({args.side} hand, {args.gesture})")
    return 0
