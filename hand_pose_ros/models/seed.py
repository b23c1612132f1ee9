"""What the seed models (ReJSHand, EHPE, CLIP-Hand, ...) share: the network base class with its
standard outputs and score losses, checkpoints, and the estimator that runs a trained network.

Design:
- ``SeedNet`` is an ``nn.Module`` taking (N, 3, S, S) RGB crops in [0, 1] and returning a dict
  with the standard keys (``STANDARD_OUTPUTS``; more keys allowed). A model implements
  ``forward`` and ``pose_loss`` (the paper's losses); ``training_loss`` adds the presence and
  handedness BCE of the shared ``ScoreHead`` and restricts ``pose_loss`` to crops that hold a
  hand, so every model gets the same scores for trackers.
- A model module exposes ``CONFIGS`` (name -> dict), ``build_net(config, pretrained)``,
  ``TRAINING`` (paper's optimiser, lr, loss weights, schedule) and registers a factory that
  calls ``load_seed_estimator``.
- A checkpoint is ``{"format": 1, "model", "config", "config_values", "state_dict", "card"}``
  saved with ``torch.save`` and read with ``weights_only=True`` (no code runs on load).
- ``SeedEstimator`` wraps the net so it returns a fixed tuple (ONNX / TensorRT need tuples),
  runs it through ``runtime.create_backend`` and builds a ``HandEstimate``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.models.backbones.fastvit import reparameterize
from hand_pose_ros.models.base import HandEstimate, HandEstimator
from hand_pose_ros.runtime import create_backend

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
STANDARD_OUTPUTS = ("joints_3d", "joints_2d", "hand_logit", "right_logit")
NUM_JOINTS = 21


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model; the message says why and
    how to get a good one."""


# ---------------------------------------------------------------------------------------------
# Network base


class ScoreHead(nn.Module):
    """Hand presence and handedness logits from the coarsest backbone map.

    Global average pooling, then one linear layer to 2 logits: a crop-level decision needs only
    global context, and a bigger head would only add parameters every model pays for.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, 2)

    @torch.no_grad()
    def init_from_mediapipe(self, trunk: nn.Module) -> None:
        """Start from MediaPipe's presence and handedness layers, which read the same pooled
        map of a pretrained ``backbones.mediapipe.MediaPipeTrunk`` (their outputs are logits;
        MediaPipe's handedness is P(right hand) for an unmirrored image)."""
        heads = trunk.dense_heads
        for row, name in enumerate(("presence", "handedness")):
            weight, bias = heads[name]
            self.fc.weight[row] = weight[0]
            self.fc.bias[row] = bias[0]

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, h, w) -> {"hand_logit": (N,), "right_logit": (N,)}."""
        logits = self.fc(feature_map.mean(dim=(2, 3)))
        return {"hand_logit": logits[:, 0], "right_logit": logits[:, 1]}


class SeedNet(nn.Module):
    """Base of every seed network.

    Class attributes a subclass sets:
        input_size: side in pixels of the square input crop.
        num_vertices: mesh vertices the net regresses (776 for our hand model), None for
            joints-only nets.

    ``forward(images)`` takes (N, 3, S, S) float RGB in [0, 1] and returns a dict with
        joints_3d (N, 21, 3) metres, wrist-relative, crop camera axes (x right, y down, z fwd);
        joints_2d (N, 21, 2) crop pixels (x column, y row, (0, 0) the top-left pixel centre);
        vertices (N, V, 3) metres, wrist-relative (mesh models only);
        hand_logit (N,), right_logit (N,) from a ``ScoreHead``;
    and may add more keys (heatmaps, coarse stages) for its ``pose_loss``.
    """

    input_size: int = 224
    num_vertices: int | None = None
    export_outputs: tuple[str, ...] = STANDARD_OUTPUTS  # what ExportWrapper returns, in order

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper's losses on crops that all hold a hand: (scalar loss, named parts for the
        training curves). ``batch`` holds the keys of ``data.batch.collate_batch``."""
        raise NotImplementedError

    def training_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                      score_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss = ``pose_loss`` on crops with a hand + ``score_weight`` x (presence BCE on
        all crops + handedness BCE on crops with a hand). Returns (loss, named parts)."""
        present = batch["hand_present"] > 0.5
        hand_loss = F.binary_cross_entropy_with_logits(
            outputs["hand_logit"].float(), batch["hand_present"].float())
        parts: dict[str, float] = {"hand_bce": float(hand_loss.detach())}
        total = score_weight * hand_loss
        if bool(present.any()):
            sub_out, sub_batch = select_crops(outputs, present), select_crops(batch, present)
            right_loss = F.binary_cross_entropy_with_logits(
                sub_out["right_logit"].float(), sub_batch["right"].float())
            pose, pose_parts = self.pose_loss(sub_out, sub_batch)
            total = total + score_weight * right_loss + pose
            parts.update(pose_parts, right_bce=float(right_loss.detach()),
                         pose=float(pose.detach()))
        parts["total"] = float(total.detach())
        return total, parts


def select_crops(tensors: dict, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-crop tensors of ``tensors`` (first dimension = len(mask)) at the crops where
    the boolean ``mask`` is set; other entries are left out."""
    n = len(mask)
    return {k: v[mask] for k, v in tensors.items()
            if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n}


def masked_l1(pred: torch.Tensor, target: torch.Tensor,
              valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over the points whose ``valid`` (N, P) is true; 0 when none is.
    ``pred``/``target``: (N, P, D)."""
    error = (pred.float() - target.float()).abs().sum(-1) / pred.shape[-1]
    if valid is None:
        return error.mean()
    weight = valid.to(error.dtype)
    return (error * weight).sum() / weight.sum().clamp(min=1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (per coordinate) over the valid points, like ``masked_l1``."""
    error = ((pred.float() - target.float()) ** 2).sum(-1) / pred.shape[-1]
    if valid is None:
        return error.mean()
    weight = valid.to(error.dtype)
    return (error * weight).sum() / weight.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_path(model: str, config: str) -> Path:
    """Where a shipped checkpoint of ``model`` in ``config`` lives."""
    return CHECKPOINT_DIR / f"{model}-{config}.pt"


def save_checkpoint(path: str | Path, net: nn.Module, model: str, config: str,
                    config_values: dict, card: dict) -> Path:
    """Write a format-1 checkpoint (state dict on CPU, fp32) to ``path``; returns the path.
    ``config_values`` and ``card`` are stored as JSON-like data (tuples become lists, other
    objects strings), so ``torch.load(weights_only=True)`` reads them back."""
    path = Path(path)
    config_values = json.loads(json.dumps(config_values, default=str))
    card = json.loads(json.dumps(card, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "model": model, "config": config,
                "config_values": config_values, "state_dict": state, "card": card}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_checkpoint(path: str | Path, model: str | None = None,
                    config: str | None = None) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: file missing (names ``hand-pose train``), unreadable/corrupt, of another
            format, or of another model/config than asked.
    """
    path = Path(path)
    train_hint = (f"hand-pose train --model {model or 'NAME'} --config {config or 'CONFIG'} "
                  "--ship")
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: train one with `{train_hint}` (or pass checkpoint=PATH)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated / foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({error}); "
            f"re-create it with `{train_hint}`") from error
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a format-{CHECKPOINT_FORMAT} hand_pose_ros "
                              f"checkpoint; re-create it with `{train_hint}`")
    for key, wanted in (("model", model), ("config", config)):
        if wanted is not None and ckpt.get(key) != wanted:
            raise CheckpointError(f"{path} holds {key} {ckpt.get(key)!r}, not {wanted!r}")
    return ckpt


def load_state(net: nn.Module, ckpt: dict, path: str | Path) -> None:
    """Copy a checkpoint's weights into ``net``; a mismatch raises ``CheckpointError``."""
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit the current {ckpt.get('model')!r} "
            f"{ckpt.get('config')!r} network (the code changed since it was trained?): "
            f"{error}; retrain with `hand-pose train`") from error


# ---------------------------------------------------------------------------------------------
# Estimator


class ExportWrapper(nn.Module):
    """The net with a fixed tuple output: its ``export_outputs`` (+ vertices for mesh nets), the
    form ONNX and TensorRT exports need. Training-only parts of a net (e.g. Handformer2T's RLE
    flows, CLIP-Hand's CLIP module) are never called by its ``forward`` and so are not in it."""

    def __init__(self, net: SeedNet):
        super().__init__()
        self.net = net
        self.keys = net.export_outputs + (("vertices",) if net.num_vertices else ())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.net(images)
        return tuple(outputs[k] for k in self.keys)


def _code_hash(net: nn.Module) -> str:
    """Hash of the source of every module defining a layer of ``net``, so cached exports of the
    same weights are rebuilt when any of that code changes."""
    sources = sorted({type(m).__module__ for m in net.modules()})
    digest = hashlib.sha256()
    for name in sources:
        module = sys.modules.get(name)
        try:
            digest.update(inspect.getsource(module).encode())
        except (TypeError, OSError):  # built-in or torch modules: covered by the torch version
            digest.update(name.encode())
    return digest.hexdigest()[:8]


class SeedEstimator(HandEstimator):
    """Runs a trained ``SeedNet`` behind any inference backend; crops in, ``HandEstimate`` out.

    Args:
        name: registered model name (for reports).
        net: the network with its weights; put in eval mode and reparameterised in place.
        backend, num_threads: as ``runtime.create_backend``; ``backend_kwargs`` are passed on
            unchanged (e.g. ``busy_wait``).
        cache_key: stable identity of the weights (the checkpoint hash), for backends that
            export once and reuse the artifact.
    """

    def __init__(self, name: str, net: SeedNet, *, backend: str = "onnxruntime",
                 num_threads: int = 2, cache_key: str | None = None, **backend_kwargs):
        self.name = name
        self.input_size = net.input_size
        # Inference form: FastViT's train-time branches folded into single convolutions (same
        # outputs, fewer kernels); a no-op for nets without them. Mutates ``net``.
        self.net = reparameterize(net.eval())
        self.wrapper = ExportWrapper(self.net).eval()
        self.keys = self.wrapper.keys
        # Batch 2, not 1: exporters specialise a size-1 dimension to a constant, which would
        # fix the exported batch to 1.
        example = (torch.zeros(2, 3, self.input_size, self.input_size),)
        if cache_key is not None:
            cache_key = f"{cache_key}-{_code_hash(net)}"
        self.backend = create_backend(backend, self.wrapper, example, num_threads=num_threads,
                                      cache_key=cache_key, **backend_kwargs)

    def _run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Validate ``crops`` and run the network on them; raw outputs by name."""
        s = self.input_size
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise ValueError(f"crops must be a (N, {s}, {s}, 3) uint8 RGB array, got "
                             f"{getattr(crops, 'shape', type(crops).__name__)}")
        if crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 RGB (0..255), got dtype {crops.dtype}")
        images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        return dict(zip(self.keys, self.backend(images), strict=True))

    def _checked(self, result: HandEstimate, *extra: np.ndarray) -> HandEstimate:
        arrays = [result.joints_3d, result.joints_2d, result.scores, result.right_hand, *extra]
        if result.vertices is not None:
            arrays.append(result.vertices)
        if not all(np.isfinite(a).all() for a in arrays):
            # A network must never hand non-finite numbers downstream (they reach robots).
            raise FloatingPointError(f"{self.name} produced non-finite outputs; the checkpoint "
                                     "is probably broken (retrain with `hand-pose train`)")
        return result

    def estimate(self, crops: np.ndarray) -> HandEstimate:
        """``crops``: (N, input_size, input_size, 3) uint8 RGB. See ``HandEstimate``.

        Raises:
            ValueError: wrong shape or dtype. FloatingPointError: non-finite network output.
        """
        if len(crops) == 0:
            v = self.net.num_vertices
            return HandEstimate(np.zeros((0, NUM_JOINTS, 3)), np.zeros((0, NUM_JOINTS, 2)),
                                np.zeros(0), np.zeros(0), np.zeros((0, NUM_JOINTS)),
                                np.zeros((0, v, 3)) if v else None)
        out = self._run(crops)
        n = len(crops)
        return self._checked(HandEstimate(
            joints_3d=out["joints_3d"].reshape(n, NUM_JOINTS, 3).astype(np.float64),
            joints_2d=out["joints_2d"].reshape(n, NUM_JOINTS, 2).astype(np.float64),
            scores=_sigmoid(out["hand_logit"].reshape(n)),
            right_hand=_sigmoid(out["right_logit"].reshape(n)),
            joint_confidence=np.ones((n, NUM_JOINTS)),
            vertices=(out["vertices"].astype(np.float64) if "vertices" in out else None),
        ))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -60.0, 60.0)))


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def config_values(name: str, configs: dict[str, dict], config: str) -> dict:
    """``configs[config]`` of model ``name``; ValueError naming the choices when unknown."""
    if config not in configs:
        raise ValueError(f"unknown {name} config {config!r}; choose one of {sorted(configs)}")
    return configs[config]


def load_seed_estimator(name: str, build_net: Callable[..., SeedNet], configs: dict[str, dict],
                        config: str = "realtime", checkpoint: str | Path | None = None,
                        backend: str = "onnxruntime", num_threads: int = 2,
                        estimator_class: type[SeedEstimator] | None = None,
                        **backend_kwargs) -> SeedEstimator:
    """The factory body of every seed model: build ``config``'s net, load its checkpoint
    (``checkpoint`` or the shipped ``checkpoint_path(name, config)``) and wrap it in
    ``estimator_class`` (default ``SeedEstimator``; two-hand models pass theirs).

    Raises:
        ValueError: unknown config. CheckpointError: missing / corrupt / mismatched checkpoint.
    """
    config_values(name, configs, config)
    path = Path(checkpoint) if checkpoint is not None else checkpoint_path(name, config)
    ckpt = read_checkpoint(path, model=name, config=config)
    net = build_net(config, pretrained=None)  # the checkpoint holds every weight
    load_state(net, ckpt, path)
    return (estimator_class or SeedEstimator)(
        name, net, backend=backend, num_threads=num_threads,
        cache_key=f"{name}-{config}-{_file_hash(path)}", **backend_kwargs)
