#!/usr/bin/env python3
"""EHPE's claim on our data: per-joint-group errors of stage 1 alone vs the two stages.

Usage:
    python scripts/ehpe_stages.py [--checkpoint PATH] [--limit 200] [--json F]

Runs ``hand_pose_ros.models.ehpe.compare_stages`` on the first ``--limit`` single-hand crops of
the synthetic test split (synthetic-test-v1) with the shipped realtime checkpoint (or
``--checkpoint``) and prints a Markdown table (mm, after Procrustes alignment of each hand) and,
with ``--json``, the numbers. The paper's claim: a baseline's error grows TIP > DIP > PIP > MCP >
wrist, and its two stages reduce it, most at the fingertips.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hand_pose_ros.models import ehpe
from hand_pose_ros.models.seed import checkpoint_path, load_state, read_checkpoint
from hand_pose_ros.train.data import eval_batches

GROUPS = ("TIP", "DIP", "PIP", "MCP", "W")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=checkpoint_path("ehpe", "realtime"))
    parser.add_argument("--limit", type=int, default=200, help="test crops (default 200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    ckpt = read_checkpoint(args.checkpoint, "ehpe")
    net = ehpe.build_net(ckpt["config"])
    load_state(net, ckpt, args.checkpoint)
    batches = eval_batches(net.input_size, args.limit)
    images = torch.cat([b["image"] for b in batches])
    joints = torch.cat([b["joints_3d"] for b in batches]).reshape(-1, 21, 3).numpy()
    result = ehpe.compare_stages(net, images, joints)
    mm = {stage: {k: 1000.0 * v for k, v in errors.items()} for stage, errors in result.items()}

    print(f"EHPE {ckpt['config']} ({args.checkpoint.name}), first {len(images)} crops of "
          f"synthetic-test-v1, mm after Procrustes alignment\n")
    print("| output | PA-MPJPE | " + " | ".join(GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for stage, label in (("stage1", "stage 1 (baseline)"), ("final", "two stages (final)")):
        cells = [f"{mm[stage]['PA-MPJPE']:.2f}"] + [f"{mm[stage][g]:.2f}" for g in GROUPS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    reduction = [f"{mm['stage1'][g] - mm['final'][g]:+.2f}" for g in ("PA-MPJPE", *GROUPS)]
    print("| reduction (stage 1 - final) | " + " | ".join(reduction) + " |")
    ordered = all(mm["stage1"][a] > mm["stage1"][b]
                  for a, b in zip(GROUPS, GROUPS[1:], strict=False))
    print("\nstage 1 ordering TIP > DIP > PIP > MCP > W:", "holds" if ordered else "does not hold")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "crops": len(images),
                                         "errors_mm": mm, "stage1_ordered": ordered}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
