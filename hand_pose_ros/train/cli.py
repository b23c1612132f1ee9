"""``hand-pose train``: train a seed model on synthetic data or a dataset, write curves, a
checkpoint and its model card; ``--ship`` copies the checkpoint into the package.

Examples:
    hand-pose train --model rejshand --config realtime --steps 20000 --batch-size 32 --out DIR
    hand-pose train --model ehpe --data freihand:/data/FreiHAND --device cuda --amp ...
    torchrun --nproc-per-node 2 -m hand_pose_ros.cli train --model cliphand --device cuda ...
    hand-pose train --model rejshand --steps 40000 --resume DIR     (continue DIR's run)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
from functools import partial
from pathlib import Path

# Models trainable here: a module ``hand_pose_ros.models.<name>`` with CONFIGS, build_net and
# TRAINING.
SEED_MODELS = ("rejshand", "ehpe", "cliphand", "handformer2t", "dfl")
SHIP_LIMIT_BYTES = 50 * 1024 * 1024  # the repository takes checkpoints up to 50 MB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=f"one of {', '.join(SEED_MODELS)}")
    parser.add_argument("--config", default="realtime", help="model configuration (default "
                        "realtime; 'paper' is the paper's backbone and sizes)")
    parser.add_argument("--pretrained", default=None, choices=["mediapipe"],
                        help="backbone initialisation (default: random); 'mediapipe' needs a "
                        "config whose backbone is the MediaPipe trunk")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (rendered on the fly) or a dataset spec, e.g. "
                        "freihand:PATH")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per step and process")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (default: "
                        "the paper's, from the model's TRAINING)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="train all but the --pretrained backbone (no backward through it: "
                        "~3x faster on CPU); pass it again with --resume")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes rendering / reading data (0: the "
                        "training process does it). One worker renders roughly 30-50 crops/s: "
                        "on a GPU use most CPU cores")
    parser.add_argument("--seed", type=int, default=1, help="data stream and init seed")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between quick evaluations (default: 5 per run)")
    parser.add_argument("--eval-samples", type=int, default=64,
                        help="synthetic test crops in each quick evaluation")
    parser.add_argument("--log-every", type=int, default=10, help="steps per curves record")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue the run in this folder (its last.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the --resume folder, else "
                        "out/train/MODEL-CONFIG)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                        help="stop at this step (last.pt saved; continue with --resume); the "
                        "schedule still spans --steps")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                        help="stop (as --stop-after) once training ran this long, for sessions "
                        "with a time limit")
    parser.add_argument("--ship", action="store_true",
                        help="copy the final checkpoint and card to hand_pose_ros/models/"
                        "checkpoints/ (refused above 50 MB)")


def model_spec(model: str, config: str, pretrained: str | None):
    """The ``loop.ModelSpec`` of a seed model, from its module's CONFIGS / build_net /
    TRAINING."""
    from hand_pose_ros.train.loop import ModelSpec

    if model not in SEED_MODELS:
        raise ValueError(f"--model {model!r} cannot be trained here; choose one of "
                         f"{', '.join(SEED_MODELS)}")
    module = importlib.import_module(f"hand_pose_ros.models.{model}")
    if config not in module.CONFIGS:
        raise ValueError(f"unknown {model} config {config!r}; choose one of "
                         f"{sorted(module.CONFIGS)}")
    return ModelSpec(name=model, config=config, config_values=dict(module.CONFIGS[config]),
                     build=partial(module.build_net, config, pretrained=pretrained),
                     training=dict(module.TRAINING), pretrained=pretrained)


def ship(checkpoint: Path) -> Path:
    """Copy ``checkpoint`` (+ its .md card) into the package's checkpoint folder.

    Raises:
        ValueError: the file is larger than the repository takes.
    """
    from hand_pose_ros.models.seed import CHECKPOINT_DIR

    size = checkpoint.stat().st_size
    if size > SHIP_LIMIT_BYTES:
        raise ValueError(f"{checkpoint} is {size / 2**20:.0f} MB, more than the "
                         f"{SHIP_LIMIT_BYTES // 2**20} MB a shipped checkpoint may have; ship "
                         "a smaller config (e.g. realtime) and keep this one outside the repo")
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    target = CHECKPOINT_DIR / checkpoint.name
    shutil.copyfile(checkpoint, target)
    shutil.copyfile(checkpoint.with_suffix(".md"), target.with_suffix(".md"))
    return target


def run(args: argparse.Namespace) -> int:
    import torch

    from hand_pose_ros.models.seed import CheckpointError
    from hand_pose_ros.train.loop import TrainOptions, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    out = args.out or args.resume or Path("out/train") / f"{args.model}-{args.config}"
    try:
        spec = model_spec(args.model, args.config, args.pretrained)
        opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, out=out,
                            data=args.data, lr=args.lr, device=args.device, amp=args.amp,
                            num_workers=args.workers, seed=args.seed,
                            log_every=args.log_every, eval_every=args.eval_every,
                            eval_samples=args.eval_samples, resume=args.resume,
                            stop_after=args.stop_after, freeze_backbone=args.freeze_backbone,
                            time_limit_s=None if args.time_limit is None
                            else 60.0 * args.time_limit)
        card = train(spec, opts)
    except (ValueError, CheckpointError) as error:
        raise SystemExit(f"hand-pose train: {error}") from error
    if not card:  # a DDP rank other than 0
        return 0
    if card.get("stopped"):
        print(f"stopped at step {card['steps']} of {args.steps}; continue with: hand-pose train "
              f"--model {args.model} --config {args.config} --steps {args.steps} --resume {out}"
              f"{' --pretrained ' + args.pretrained if args.pretrained else ''}"
              f"{' --freeze-backbone' if args.freeze_backbone else ''}")
        return 0
    checkpoint = out / f"{args.model}-{args.config}.pt"
    print(f"wrote {checkpoint} (+ .md, .json card), {out / 'curves.png'}; quick eval: "
          f"{card['metrics']}")
    if args.ship:
        try:
            print(f"shipped {ship(checkpoint)}")
        except ValueError as error:
            raise SystemExit(f"hand-pose train --ship: {error}") from error
    return 0
