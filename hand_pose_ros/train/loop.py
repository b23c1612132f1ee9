"""The training loop shared by every seed model.

Design:
- A model is trained from a ``ModelSpec``: its name and configuration, a ``build`` function
  returning a fresh ``SeedNet``, and the model module's ``TRAINING`` recipe (the paper's
  optimiser, learning rate, loss weights and schedule). The paper schedules are in epochs of
  FreiHAND; here every schedule point is a fraction of the step budget (``--steps``), so a
  short run keeps the paper's shape (e.g. lr / 10 at half of the run).
- One step = one batch of ``batch_size`` crops per process. ``torchrun`` launches DDP: each
  rank renders its own share of the synthetic stream (the stream's rank split), gradients are
  averaged, rank 0 writes every file.
- Mixed precision on CUDA only: bf16 autocast where the GPU supports it, else fp16 autocast
  with a ``GradScaler``.
- ``DIR/last.pt`` holds everything a resumed run needs (weights, optimizer, scheduler, scaler,
  step, RNG states); the data sources are functions of the sample index, so a resumed run sees
  the samples the uninterrupted one would have seen.
- Files: ``curves.jsonl`` (one JSON object per logged step and per evaluation), ``curves.png``,
  and at the end ``<model>-<config>.pt`` (``models.seed`` checkpoint with its model card) and
  the card as ``.md`` and ``.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hand_pose_ros.models.seed import SeedNet, save_checkpoint

log = logging.getLogger(__name__)

LAST = "last.pt"
CURVES = "curves.jsonl"
RESUME_FORMAT = 1


@dataclass
class ModelSpec:
    """What the loop needs of a model.

    name, config: registered model name and configuration name.
    config_values: the configuration's values (stored in the checkpoint and card).
    build: returns a fresh network (with its initial / pretrained weights).
    training: the model's ``TRAINING`` dict: optimizer ("adam" | "adamw" | "sgd"), lr,
        weight_decay, schedule ("step" with ``milestones`` as fractions of the run and
        ``gamma``, "cosine" or "constant"), optional warmup (fraction), grad_clip,
        score_weight (presence/handedness BCE weight, default 1).
    pretrained: the backbone's weight source (for the card).
    """

    name: str
    config: str
    config_values: dict
    build: Callable[[], SeedNet]
    training: dict
    pretrained: str | None = None


@dataclass
class TrainOptions:
    """How to run. ``steps``: optimizer steps; ``batch_size``: crops per step and process."""

    steps: int
    batch_size: int
    out: Path
    data: str = "synthetic"
    lr: float | None = None
    device: str = "cpu"
    amp: bool = False
    num_workers: int = 2
    seed: int = 1
    log_every: int = 10
    eval_every: int | None = None  # default: 5 evaluations per run
    eval_samples: int = 64
    checkpoint_every: int | None = None  # default: at every evaluation
    resume: Path | None = None
    # Stop early (saving last.pt, to be resumed) after this step or this much wall time: for
    # runs split over sessions with a time limit. The schedule still spans ``steps``.
    stop_after: int | None = None
    time_limit_s: float | None = None
    # Train everything but the (pretrained) backbone: no backward through the trunk, ~3x the
    # samples/s on CPU (ReJSHand realtime, 2 threads: 15 -> 40 crops/s).
    freeze_backbone: bool = False
    extra_card: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.eval_samples, self.log_every) < 1:
            raise ValueError(f"--steps, --batch-size, --eval-samples and --log-every must be "
                             f">= 1, got {self.steps}, {self.batch_size}, {self.eval_samples}, "
                             f"{self.log_every}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.data.startswith("synthetic:"):
            raise ValueError(f"--data {self.data}: the synthetic test splits are for "
                             "evaluation only; train on --data synthetic (a disjoint stream)")
        self.out = Path(self.out)
        if self.eval_every is None:
            self.eval_every = max(1, self.steps // 5)
        if self.checkpoint_every is None:
            self.checkpoint_every = self.eval_every


# ---------------------------------------------------------------------------------------------
# Pieces


def make_optimizer(params, training: dict, lr: float) -> torch.optim.Optimizer:
    name = training.get("optimizer", "adam")
    decay = float(training.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=decay)
    raise ValueError(f"unknown optimizer {name!r} in TRAINING; use adam, adamw or sgd")


def lr_factor(training: dict, steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at step ``s`` of ``steps``: the paper's schedule with its
    epoch milestones turned into fractions of the run, after an optional linear warmup."""
    schedule = training.get("schedule", "constant")
    warmup = int(float(training.get("warmup", 0.0)) * steps)
    milestones = [int(f * steps) for f in training.get("milestones", ())]
    gamma = float(training.get("gamma", 0.1))
    if schedule not in ("step", "cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r} in TRAINING; use step, cosine or "
                         "constant")

    def factor(step: int) -> float:
        value = 1.0
        if schedule == "step":
            value = gamma ** sum(step >= m for m in milestones)
        elif schedule == "cosine":
            value = 0.5 * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))
        if warmup and step < warmup:
            value *= (step + 1) / warmup
        return value

    return factor


def describe_hardware(device: torch.device) -> str:
    """One line: the accelerator or CPU model, and thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def _rng_state() -> dict:
    """Every global RNG's state as tensors and plain Python values (loadable with
    ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _train_mode(core: SeedNet, freeze_backbone: bool) -> None:
    """Training mode, except a frozen backbone, which stays in eval mode so that its
    normalisation statistics and dropout stay as pretrained."""
    core.train()
    if freeze_backbone:
        core.backbone.eval()


@torch.no_grad()
def quick_eval(net: SeedNet, batches: list[dict], device: torch.device) -> dict[str, float]:
    """PA-MPJPE and MPJPE (mm, wrist-relative) of the hands present, and presence accuracy,
    on held-out crops (one- or two-hand layout: the hand axis, if any, is flattened)."""
    from hand_pose_ros.eval.metrics import mpjpe, pa_mpjpe

    was_training = net.training
    net.eval()
    preds, gts, hand_hits, count = [], [], 0, 0
    for batch in batches:
        out = net(batch["image"].to(device))
        present = batch["hand_present"].reshape(-1) > 0.5
        pred = out["joints_3d"].float().cpu().reshape(-1, 21, 3)[present]
        preds.append(pred.numpy().astype(np.float64))
        gts.append(batch["joints_3d"].reshape(-1, 21, 3)[present].numpy().astype(np.float64))
        hand_hits += int(((out["hand_logit"].float().cpu().reshape(-1) > 0) == present).sum())
        count += len(present)
    net.train(was_training)
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    if not np.isfinite(pred).all():
        return {"eval_pa_mpjpe_mm": float("nan"), "eval_mpjpe_mm": float("nan"),
                "eval_presence_acc": hand_hits / count}
    return {"eval_pa_mpjpe_mm": 1000.0 * pa_mpjpe(pred, gt),
            "eval_mpjpe_mm": 1000.0 * mpjpe(pred, gt),
            "eval_presence_acc": hand_hits / count}


def _append_curve(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_curves(path: Path, step: int) -> None:
    """Drop records after ``step`` (written by an interrupted run after its last.pt)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


# ---------------------------------------------------------------------------------------------
# Distributed


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1), else single."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local)


# ---------------------------------------------------------------------------------------------
# The loop


def train(spec: ModelSpec, opts: TrainOptions) -> dict:
    """Train ``spec`` as ``opts`` says; returns the model card (also written to ``opts.out``).

    Raises:
        ValueError: bad options. FloatingPointError: the loss became non-finite.
        CheckpointError (models.seed): --resume names a missing or corrupt last.pt.
    """
    from hand_pose_ros.train.data import eval_batches, training_loader

    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible here; use --device cpu")
    if opts.amp and opts.device != "cuda":
        raise ValueError("--amp (mixed precision) needs --device cuda")
    dist = init_distributed(opts.device)
    device = torch.device(f"cuda:{dist.local_rank}" if opts.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
    out = opts.out
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    # Same initial weights on every rank (DDP also broadcasts them), distinct dropout streams.
    torch.manual_seed(opts.seed)
    core = spec.build().to(device)
    if opts.freeze_backbone:
        if spec.pretrained is None:
            raise ValueError("--freeze-backbone keeps the backbone's initial weights: it needs "
                             "--pretrained (a frozen random backbone cannot learn features)")
        core.backbone.requires_grad_(False)
    _train_mode(core, opts.freeze_backbone)
    training = dict(spec.training)
    base_lr = opts.lr if opts.lr is not None else float(training["lr"])
    optimizer = make_optimizer([p for p in core.parameters() if p.requires_grad], training,
                               base_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(training, opts.steps))
    amp_dtype = None
    if opts.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    score_weight = float(training.get("score_weight", 1.0))
    grad_clip = training.get("grad_clip")

    step, wall_before = 0, 0.0
    if opts.resume is not None:
        step, wall_before = _resume(opts.resume / LAST, spec, core, optimizer, scheduler,
                                    scaler, device)
        if dist.main:
            _truncate_curves(out / CURVES, step)
        if dist.rank > 0:  # last.pt holds rank 0's RNG; the other ranks draw their own
            torch.manual_seed(opts.seed + 1000 * dist.rank + step)
    else:
        torch.manual_seed(opts.seed + 1000 * dist.rank)
    if step >= opts.steps:
        raise ValueError(f"the run in {opts.resume} already did {step} steps; ask for more "
                         f"than that with --steps")

    net: nn.Module = core
    if dist.world_size > 1:
        # Unused parameters happen (e.g. CLIP-Hand without a CLIP checkpoint): let DDP cope.
        net = nn.parallel.DistributedDataParallel(
            core, device_ids=[dist.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=True)

    samples_per_step = opts.batch_size * dist.world_size
    hands = getattr(core, "hands_per_crop", 1)  # two-hand nets (models.twohand) say 2
    loader = training_loader(opts.data, core.input_size, opts.batch_size, opts.seed,
                             start_sample=step * samples_per_step,
                             num_workers=opts.num_workers, rank=dist.rank,
                             world_size=dist.world_size, pin_memory=device.type == "cuda",
                             hands=hands)
    held_out = eval_batches(core.input_size, opts.eval_samples, hands=hands) if dist.main else []
    started = time.perf_counter()
    interval_start, interval_parts, interval_steps = time.perf_counter(), {}, 0
    metrics: dict[str, float] = {}
    batches = iter(loader)
    while step < opts.steps:
        batch = _to_device(next(batches), device)
        autocast = (torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            outputs = net(batch["image"])
            loss, parts = core.training_loss(outputs, batch, score_weight=score_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {float(loss)} at step {step} ({parts}); lower --lr, or resume from "
                f"{out / LAST} with a smaller one")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(core.parameters(), float(grad_clip))
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        interval_steps += 1
        for k, v in parts.items():
            interval_parts[k] = interval_parts.get(k, 0.0) + v

        if dist.main and (step % opts.log_every == 0 or step == opts.steps):
            now = time.perf_counter()
            record = {"step": step, "lr": optimizer.param_groups[0]["lr"],
                      **{k: v / interval_steps for k, v in interval_parts.items()},
                      "samples_per_s": interval_steps * samples_per_step / (now - interval_start),
                      "wall_s": wall_before + now - started}
            _append_curve(out / CURVES, record)
            log.info("step %d/%d loss %.4g (%.1f samples/s)", step, opts.steps,
                     record["total"], record["samples_per_s"])
            interval_start, interval_parts, interval_steps = now, {}, 0
        paused = time.perf_counter()
        if dist.main and (step % opts.eval_every == 0 or step == opts.steps):
            metrics = quick_eval(core, held_out, device)
            _train_mode(core, opts.freeze_backbone)
            _append_curve(out / CURVES, {"step": step, **metrics})
            log.info("step %d eval %s", step, metrics)
        if dist.main and (step % opts.checkpoint_every == 0 or step == opts.steps):
            _save_last(out / LAST, spec, core, optimizer, scheduler, scaler, step,
                       wall_before + time.perf_counter() - started)
        # Training throughput excludes evaluation and checkpoint writing.
        interval_start += time.perf_counter() - paused
        if step < opts.steps and _should_stop(opts, step, started, dist, device):
            if dist.main:
                _save_last(out / LAST, spec, core, optimizer, scheduler, scaler, step,
                           wall_before + time.perf_counter() - started)
            if dist.world_size > 1:
                torch.distributed.barrier()
            log.info("stopped at step %d of %d; continue with --resume %s", step, opts.steps, out)
            return {"stopped": True, "steps": step}

    wall = wall_before + time.perf_counter() - started
    card = {}
    if dist.main:
        card = _finish(spec, opts, core, device, dist, step, wall, metrics)
    if dist.world_size > 1:
        torch.distributed.barrier()
    return card


def _should_stop(opts: TrainOptions, step: int, started: float, dist: Dist,
                 device: torch.device) -> bool:
    stop = opts.stop_after is not None and step >= opts.stop_after
    if opts.time_limit_s is not None:
        over = time.perf_counter() - started > opts.time_limit_s
        if dist.world_size > 1:  # every rank must stop at the same step: rank 0 decides
            flag = torch.tensor([float(over)], device=device)
            torch.distributed.broadcast(flag, 0)
            over = bool(flag.item())
        stop = stop or over
    return stop


def _save_last(path: Path, spec: ModelSpec, core: nn.Module, optimizer, scheduler, scaler,
               step: int, wall: float) -> None:
    state = {"format": RESUME_FORMAT, "model": spec.name, "config": spec.config, "step": step,
             "wall_s": wall, "model_state": core.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "rng": _rng_state()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash while saving leaves the previous last.pt intact


def _resume(path: Path, spec: ModelSpec, core: nn.Module, optimizer, scheduler, scaler,
            device: torch.device) -> tuple[int, float]:
    from hand_pose_ros.models.seed import CheckpointError

    if not path.is_file():
        raise CheckpointError(f"--resume: no {LAST} in {path.parent}; start a new run instead")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"--resume: {path} is corrupt ({error}); start a new run or use "
                              "an earlier copy") from error
    if state.get("format") != RESUME_FORMAT or (state.get("model"), state.get("config")) != (
            spec.name, spec.config):
        raise CheckpointError(f"--resume: {path} is a run of {state.get('model')!r} "
                              f"{state.get('config')!r}, not {spec.name!r} {spec.config!r}")
    core.load_state_dict(state["model_state"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:  # another set of trained parameters
        raise CheckpointError(f"--resume: {path} was trained with another --freeze-backbone "
                              f"setting ({error}); resume with the run's own options") from error
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["step"]), float(state["wall_s"])


def _finish(spec: ModelSpec, opts: TrainOptions, core: nn.Module, device: torch.device,
            dist: Dist, step: int, wall: float, metrics: dict) -> dict:
    from hand_pose_ros.train.report import plot_curves, write_card

    params = sum(p.numel() for p in core.parameters())
    card = {
        "model": spec.name, "config": spec.config, "config_values": spec.config_values,
        "pretrained": spec.pretrained, "parameters": params,
        "data": opts.data, "steps": step, "batch_size": opts.batch_size,
        "world_size": dist.world_size, "samples_seen": step * opts.batch_size * dist.world_size,
        "optimizer": spec.training.get("optimizer", "adam"),
        "lr": opts.lr if opts.lr is not None else spec.training["lr"],
        "schedule": {k: spec.training[k] for k in ("schedule", "milestones", "gamma", "warmup")
                     if k in spec.training},
        "backbone_frozen": opts.freeze_backbone,
        "amp": opts.amp, "hardware": describe_hardware(device),
        "wall_time_s": round(wall, 1), "torch": str(torch.__version__),
        "metrics": {"split": f"synthetic-test-v1 "
                             f"{'single' if getattr(core, 'hands_per_crop', 1) == 1 else 'mixed'}"
                             f", first {opts.eval_samples} crops",
                    **{k: round(v, 3) for k, v in metrics.items()}},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **opts.extra_card,
    }
    path = opts.out / f"{spec.name}-{spec.config}.pt"
    save_checkpoint(path, core, spec.name, spec.config, spec.config_values, card)
    write_card(path.with_suffix(".md"), path.with_suffix(".json"), card)
    plot_curves(opts.out / CURVES, opts.out / "curves.png")
    return card
