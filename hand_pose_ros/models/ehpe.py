"""EHPE: a segmented architecture for enhanced hand pose estimation (Xu et al., ACM MM 2025;
seed paper 000), module by module, with its losses.

The network (paper Sec. 3, Fig. 2):
- Backbone -> feature map F at stride 32 (8 x 8 for the 256 px crop; 2048 channels for ResNet-50).
- TW-stage (Sec. 3.2), the wrist and the five fingertips only (``TW_JOINTS``):
  F -> 1x1 conv, bilinear upsampling to the heatmap size (a quarter of the input, 64 x 64) ->
  stacked hourglass (Newell et al. 2016) -> 2D heatmaps, supervised by ``L_H`` against Eq. 1's
  normalised Gaussians, every stack (the hourglass' intermediate supervision); the refinement
  module combines the hourglass features with the last 2D heatmaps through eight residual
  modules and four max-pooling layers; a 1x1 convolution gives d x J channels, reshaped into the
  2.5D heatmap (J joints x d = 8 depth bins x h x w); soft-argmax (Eq. 2) gives each joint's
  (u, v) crop pixels and depth z.
- Initialisation of the other 15 joints (the paper never says how; see ``INIT_RATIOS``).
- PG-stage (Sec. 3.3): node features H_i = [geometry of joint i, F_i] with F_i grid-sampled
  from the TW-stage's feature map at the joint's 2D position; two branches:
  SPI (Sec. 3.3.2), two graph-attention layers (Eq. 8-9, K = 8 heads; layer 1 over the skeleton's
  one-hop neighbourhoods, layer 2 over two-hop ones) with cross-layer fusion (Eq. 10), then an
  FC layer; FEM (Sec. 3.3.1, after EANet), self-attention over the image tokens of F (+1 global
  token), then cross-attention of the 21 joint queries into them, then an FC layer.
  The outputs are fused with learnable weights, Eq. 11: c = w_G SPI + w_E * FEM, w_G (21 x 21),
  w_E (21 x 1).
- Losses: TW-stage Eq. 6, L1 = 3 L_H + 1e-2 L_ED + 1e-2 L_R; PG-stage Eq. 14,
  L2 = 2e-2 L_P + 2e-1 L_E.

Where the paper is silent or contradicts itself, the choices made here (most common in the field):
1. Metric 3D from a crop. The 2.5D heatmap gives pixels and a root-relative depth; on FreiHAND
   the paper does not say how it lifts them (the usual protocol uses the ground-truth camera and
   root depth), and our estimator sees crops only. Stage 1 therefore also reads metric x, y for
   its joints from location maps (VNect, Mehta et al. 2017; DetNet, Zhou et al. 2020): two extra
   channels per joint, averaged with the joint's 2D heatmap probabilities; z comes from the
   depth bins (d = 8 bins spanning ``depth_range`` metres around the wrist, 0.3 m: a straight
   hand pointing at the camera). The PG-stage regresses metric 3D directly (its FC layer).
2. The 15 joints stage 1 does not predict start on the straight line from the wrist to their
   fingertip, at the rest-pose fractions of our hand model's finger-chain length (the authors'
   release does the same with hand-tuned fractions). The PG-stage predicts offsets from this
   initialisation (FC layers initialised to zero, so it starts as the identity); Eq. 11 fuses the
   two branches' offsets, w_G = 0.5 I and w_E = 0.5 at the start (the branches' mean). Its
   FC layers also give 2D offsets, so the final ``joints_2d`` are refined too.
3. Refinement module: four residual modules each followed by max-pooling, then four residual
   modules each after nearest upsampling plus the skip of the same resolution, so that the 2.5D
   heatmap keeps the heatmap resolution (the paper's sizes for it disagree: h x w = 8 x 8 in one
   place, h/4 x w/4 in another). Residual modules are Newell's bottleneck modules.
4. Node geometry = the 2D position (crop normalised to [-1, 1]) and the metric 3D position of the
   joint (decimetres), plus a learned embedding of the joint's identity (nodes share weights).
   Node visual features F_i are sampled from the refinement module's output ("the feature map
   from the TW-stage"). Graph attention follows Eq. 9 (GAT's additive attention, LeakyReLU 0.2);
   activation ELU (GAT's).
5. FEM for one hand: EANet's (hw + hw + 1)-token self-attention holds two hands' tokens plus one;
   here the hw tokens of the one hand plus one global token, learned positional embeddings, then
   cross-attention blocks; pre-norm transformer blocks, MLP ratio 4, as many of each as
   ``fem_layers``.
6. Loss units, chosen so that the paper's weights balance the terms as it says they do: L_ED in
   heatmap cells (u, v) and depth bins (z, and the location maps' x, y); L_P in millimetres
   (3D) plus crop pixels (2D); L_H sums squared differences over the heatmap and averages over
   joints (Eq. 3), sigma = 2 cells (the release's). L_R (Eq. 5, the L1 norm of every weight
   matrix of backbone + TW-stage) carries the authors' release's factor 1e-8: Eq. 5 taken
   literally at lambda_R = 1e-2 would outweigh the other terms by 10^5. L_E (Eq. 13) pushes the
   "dynamic edge weights" towards 1: we read an edge weight as n_i * alpha_ij (n_i = size of
   node i's neighbourhood), which is 1 for every edge of the fixed graph with uniform averaging,
   so L_E keeps attention from drifting far from it ("prevent extreme variations").
7. Two-stage training (TW first, then PG with TW frozen) runs as one schedule here: the PG-stage
   takes stage 1's outputs and features through a stop-gradient, so TW and backbone learn only
   from L1 (and the shared score losses) and the PG-stage only from L2, as when frozen, while
   both train concurrently (one step budget, one optimiser).

Outputs beyond the ``SeedNet`` standard keys (for the losses and for checking the paper's claim
that the two stages cut the error of distal joints): ``joints_3d_stage1`` / ``joints_2d_stage1``
(N, 21, .) stage 1 with the initialisation above, no refinement (the "baseline");
``tw_heatmaps`` (N, stacks, 6, h, w), ``tw_uvz`` (N, 6, 3) (pixels, pixels, metres),
``tw_xy`` (N, 6, 2) location-map metres, ``attention`` (N, layers, K, 21, 21).
``compare_stages`` measures stage 1 against the final output: PA-MPJPE and the error per joint
group (TIP, DIP, PIP, MCP, wrist; ``per_group_errors``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.eval.metrics import joint_errors, pa_mpjpe, procrustes_align
from hand_pose_ros.hand.joints import BONES, NUM_JOINTS, HandLandmark
from hand_pose_ros.hand.skeleton import BONE_LENGTHS, PALM_OFFSETS
from hand_pose_ros.models.backbones import create_backbone
from hand_pose_ros.models.backbones.common import conv_bn
from hand_pose_ros.models.base import register_model
from hand_pose_ros.models.seed import (
    ScoreHead,
    SeedEstimator,
    SeedNet,
    config_values,
    load_seed_estimator,
)

# Stage-1 joints: the wrist and the five fingertips (the paper's W + T split, Table 4).
TW_JOINTS: tuple[int, ...] = (
    HandLandmark.WRIST, HandLandmark.THUMB_TIP, HandLandmark.INDEX_TIP, HandLandmark.MIDDLE_TIP,
    HandLandmark.RING_TIP, HandLandmark.LITTLE_TIP)

# Joint groups of the paper's error analysis (after Spurr et al. 2020): level k of every finger
# chain (thumb: CMC, MCP, IP, TIP counted as MCP, PIP, DIP, TIP, as the paper's 21-joint layout).
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "TIP": tuple(4 + 4 * f for f in range(5)),
    "DIP": tuple(3 + 4 * f for f in range(5)),
    "PIP": tuple(2 + 4 * f for f in range(5)),
    "MCP": tuple(1 + 4 * f for f in range(5)),
    "W": (HandLandmark.WRIST,),
}


def _init_ratios() -> np.ndarray:
    """(5, 3) fraction of the wrist -> fingertip chain length at each finger's first three
    joints, in our hand model's rest pose (template bone lengths)."""
    steps = np.concatenate([np.linalg.norm(PALM_OFFSETS, axis=1)[:, None], BONE_LENGTHS], axis=1)
    cumulative = np.cumsum(steps, axis=1)
    return cumulative[:, :3] / cumulative[:, 3:]


INIT_RATIOS = _init_ratios()


def init_matrix() -> torch.Tensor:
    """(21, 6) linear map from the stage-1 joints (``TW_JOINTS`` order) to all 21: the wrist and
    tips copied, each other joint on the wrist -> tip segment of its finger at ``INIT_RATIOS``."""
    matrix = torch.zeros(NUM_JOINTS, len(TW_JOINTS), dtype=torch.float64)
    matrix[HandLandmark.WRIST, 0] = 1.0
    for f in range(5):
        matrix[4 + 4 * f, 1 + f] = 1.0
        for level in range(3):
            ratio = float(INIT_RATIOS[f, level])
            matrix[1 + 4 * f + level, 0] = 1.0 - ratio
            matrix[1 + 4 * f + level, 1 + f] = ratio
    return matrix.float()


def neighbourhood(hops: int) -> torch.Tensor:
    """(21, 21) bool: joints within ``hops`` bones of each other on the skeleton (self included)."""
    adjacency = torch.eye(NUM_JOINTS)
    for parent, child in BONES:
        adjacency[parent, child] = adjacency[child, parent] = 1.0
    reach = torch.eye(NUM_JOINTS)
    for _ in range(hops):
        reach = reach @ adjacency
    return reach > 0


# ---------------------------------------------------------------------------------------------
# TW-stage blocks


class Residual(nn.Module):
    """Newell et al.'s residual module: 1x1 (C/2) -> 3x3 (C/2) -> 1x1 (C), plus the input
    (through a 1x1 projection when the channel counts differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(conv_bn(cin, mid, 1), conv_bn(mid, mid, 3),
                                  conv_bn(mid, cout, 1, relu=False))
        self.shortcut = nn.Identity() if cin == cout else conv_bn(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: max-pool down, residual modules, nearest upsampling
    back, a residual branch at every resolution (input side divisible by 2^depth)."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    """``stacks`` hourglasses, each predicting 2D heatmaps of ``joints`` joints; every stack but
    the last feeds its features and heatmaps back into the next (Newell et al. 2016).

    Returns (features of the last stack (N, C, h, w), heatmaps (N, stacks, joints, h, w))."""

    def __init__(self, channels: int, stacks: int, depth: int, joints: int):
        super().__init__()
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(channels, channels), conv_bn(channels, channels, 1))
            for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(channels, joints, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(
            nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.merge_heatmaps = nn.ModuleList(
            nn.Conv2d(joints, channels, 1) for _ in range(stacks - 1))
        for head in self.heads:  # Eq. 1's targets peak at 1 / (2 pi sigma^2): start near 0
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmaps = []
        for i, (hourglass, features, head) in enumerate(
                zip(self.hourglasses, self.features, self.heads, strict=True)):
            y = features(hourglass(x))
            heatmaps.append(head(y))
            if i < len(self.merge_features):
                x = x + self.merge_features[i](y) + self.merge_heatmaps[i](heatmaps[-1])
        return y, torch.stack(heatmaps, dim=1)


class Refinement(nn.Module):
    """The refinement module: 2D heatmaps + image features -> latent features F_p at the same
    resolution. Eight residual modules and four max-pooling layers (choice 3 of the module
    docstring: an encoder-decoder with skips, side divisible by 16)."""

    def __init__(self, cin: int, channels: int, pools: int = 4):
        super().__init__()
        self.project = conv_bn(cin, channels, 1)
        self.down = nn.ModuleList(Residual(channels, channels) for _ in range(pools))
        self.up = nn.ModuleList(Residual(channels, channels) for _ in range(pools))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(F.interpolate(x, scale_factor=2.0, mode="nearest") + skip)
        return x


class TWStage(nn.Module):
    """TIP and wrist joints estimation: backbone map F -> 2D heatmaps, 2.5D heatmaps, and by
    soft-argmax the (u, v) crop pixels, root-relative depth z and location-map x, y (metres) of
    ``TW_JOINTS``."""

    def __init__(self, in_channels: int, input_size: int, heatmap_size: int, channels: int,
                 stacks: int, depth: int, refine_channels: int, depth_bins: int,
                 depth_range: float):
        super().__init__()
        joints = len(TW_JOINTS)
        self.heatmap_size, self.depth_bins = heatmap_size, depth_bins
        self.reduce = conv_bn(in_channels, channels, 1)
        self.hourglass = StackedHourglass(channels, stacks, depth, joints)
        self.refine = Refinement(channels + joints, refine_channels)
        # Per joint: d depth-bin logits, then the 2 location maps (x, y in decimetres).
        self.head = nn.Conv2d(refine_channels, joints * (depth_bins + 2), 1)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        stride = input_size / heatmap_size
        # Heatmap cell centres in crop pixels ((0, 0) = the top-left pixel's centre).
        centres = (torch.arange(heatmap_size, dtype=torch.float32) + 0.5) * stride - 0.5
        self.register_buffer("cell_x", centres.repeat(heatmap_size), persistent=False)
        self.register_buffer("cell_y", centres.repeat_interleave(heatmap_size), persistent=False)
        self.register_buffer("bin_z", torch.linspace(-depth_range / 2, depth_range / 2,
                                                     depth_bins), persistent=False)

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        n, joints, bins = feature.shape[0], len(TW_JOINTS), self.depth_bins
        size = (self.heatmap_size, self.heatmap_size)
        x = F.interpolate(self.reduce(feature), size=size, mode="bilinear", align_corners=False)
        hourglass_features, heatmaps = self.hourglass(x)
        latent = self.refine(torch.cat([hourglass_features, heatmaps[:, -1]], dim=1))
        out = self.head(latent).reshape(n, joints, bins + 2, -1)
        # Eq. 2: softmax over the whole (d, h, w) volume of each joint, then expectations.
        volume = F.softmax(out[:, :, :bins].reshape(n, joints, -1), dim=-1)
        volume = volume.reshape(n, joints, bins, -1)
        plane = volume.sum(dim=2)  # (N, J, h*w) 2D marginal
        u = (plane * self.cell_x).sum(-1)
        v = (plane * self.cell_y).sum(-1)
        z = (volume.sum(dim=3) * self.bin_z).sum(-1)
        xy = (plane.unsqueeze(2) * out[:, :, bins:]).sum(-1) * 0.1  # decimetres -> metres
        return {"tw_heatmaps": heatmaps, "tw_uvz": torch.stack([u, v, z], dim=-1),
                "tw_xy": xy, "tw_latent": latent}


# ---------------------------------------------------------------------------------------------
# PG-stage blocks


class GraphAttention(nn.Module):
    """One multi-head graph-attention layer (Eq. 8-9) over a fixed neighbourhood mask: per head
    k, alpha_ij = softmax_j(LeakyReLU(a_k^T [W_k h_i || W_k h_j])) over j in N(i), output the
    concatenation over heads of sum_j alpha_ij W_k h_j.

    Returns (features (N, 21, dim), attention (N, heads, 21, 21), zero outside N(i))."""

    def __init__(self, dim: int, heads: int, mask: torch.Tensor):
        super().__init__()
        if dim % heads:
            raise ValueError(f"graph attention width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.project = nn.Linear(dim, dim, bias=False)
        self.att_target = nn.Parameter(torch.empty(heads, self.head_dim))
        self.att_source = nn.Parameter(torch.empty(heads, self.head_dim))
        nn.init.xavier_uniform_(self.att_target)
        nn.init.xavier_uniform_(self.att_source)
        # Additive mask: a large negative number, not -inf, keeps exports free of NaN paths.
        self.register_buffer("mask_bias", (~mask).float() * -1e4, persistent=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, joints, _ = h.shape
        wh = self.project(h).reshape(n, joints, self.heads, self.head_dim).transpose(1, 2)
        score_i = (wh * self.att_target[:, None]).sum(-1)  # (N, K, J): a^T W h_i part
        score_j = (wh * self.att_source[:, None]).sum(-1)  # (N, K, J): a^T W h_j part
        scores = F.leaky_relu(score_i[..., :, None] + score_j[..., None, :], 0.2)
        alpha = F.softmax(scores + self.mask_bias, dim=-1)
        out = (alpha @ wh).transpose(1, 2).reshape(n, joints, -1)
        return out, alpha


class StructuralPriorInference(nn.Module):
    """SPI: graph attention over one-hop, then two-hop skeleton neighbourhoods, each with the
    cross-layer fusion of Eq. 10, h^(l+1) = ELU(GAT_l(h^(l)) + W_skip^(l) h^(0)), then an FC
    layer to per-joint offsets (2D + 3D)."""

    def __init__(self, dim: int, heads: int, layers: int = 2):
        super().__init__()
        masks = torch.stack([neighbourhood(hops) for hops in range(1, layers + 1)])
        self.gat = nn.ModuleList(GraphAttention(dim, heads, mask) for mask in masks)
        # (layers, 21, 21) neighbourhood of every layer, for the edge loss.
        self.register_buffer("masks", masks.float(), persistent=False)
        self.skip = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.head = nn.Linear(dim, 5)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, attention = h0, []
        for gat, skip in zip(self.gat, self.skip, strict=True):
            aggregated, alpha = gat(h)
            h = F.elu(aggregated + skip(h0))
            attention.append(alpha)
        return self.head(h), torch.stack(attention, dim=1)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Eq. 7) with separate Q, K, V maps."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        return x.reshape(n, tokens, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q(query)),
                                             self._split(self.k(context)),
                                             self._split(self.v(context)))
        return self.out(out.transpose(1, 2).reshape(query.shape))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x), LN(context)); x + MLP(LN(x)). Self-attention
    when no context is given."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm_query, self.norm_context = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                 nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        query = self.norm_query(x)
        kv = query if context is None else self.norm_context(context)
        x = x + self.attention(query, kv)
        return x + self.mlp(self.norm_mlp(x))


class FeatureEnhancement(nn.Module):
    """FEM: image tokens of F (+1 global token, learned positions) through self-attention
    blocks, then the joint queries through cross-attention blocks into them, then an FC layer
    to per-joint offsets (2D + 3D)."""

    def __init__(self, in_channels: int, tokens: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels, dim, 1)
        self.global_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.self_blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.cross_blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, feature: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        tokens = self.project(feature).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.global_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position
        for block in self.self_blocks:
            tokens = block(tokens)
        x = queries
        for block in self.cross_blocks:
            x = block(x, tokens)
        return self.head(self.norm(x))


class PGStage(nn.Module):
    """Prior guided joints estimation: initial 21 joints + TW-stage features + backbone map ->
    offsets of all 21 joints, (N, 21, 5) = (du, dv) in normalised crop units and (dx, dy, dz)
    in decimetres, fused by Eq. 11. Also returns the SPI attention (N, layers, K, 21, 21)."""

    def __init__(self, latent_channels: int, backbone_channels: int, tokens: int, dim: int,
                 heads: int, fem_heads: int, fem_layers: int):
        super().__init__()
        self.node = nn.Linear(5 + latent_channels, dim)
        self.joint_embedding = nn.Parameter(torch.zeros(1, NUM_JOINTS, dim))
        nn.init.trunc_normal_(self.joint_embedding, std=0.02)
        self.spi = StructuralPriorInference(dim, heads)
        self.fem = FeatureEnhancement(backbone_channels, tokens, dim, fem_heads, fem_layers)
        self.weight_graph = nn.Parameter(0.5 * torch.eye(NUM_JOINTS))  # w_G of Eq. 11
        self.weight_visual = nn.Parameter(torch.full((NUM_JOINTS, 1), 0.5))  # w_E of Eq. 11

    def forward(self, geometry: torch.Tensor, latent: torch.Tensor,
                feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # F_i: the TW-stage features at each joint's 2D position (grid_sample's [-1, 1] is the
        # crop's outer edge, as ``geometry[..., :2]``).
        sampled = F.grid_sample(latent, geometry[:, :, None, :2], mode="bilinear",
                                padding_mode="border", align_corners=False)
        nodes = torch.cat([geometry, sampled[..., 0].transpose(1, 2)], dim=-1)
        h = self.node(nodes) + self.joint_embedding
        graph_offsets, attention = self.spi(h)
        visual_offsets = self.fem(feature, h)
        offsets = self.weight_graph @ graph_offsets + self.weight_visual * visual_offsets
        return offsets, attention


# ---------------------------------------------------------------------------------------------
# The network


class EHPENet(SeedNet):
    """Backbone + TW-stage + initialisation + PG-stage + the shared ``ScoreHead``.

    Args (``CONFIGS`` values):
        backbone: ``create_backbone`` name; its stride-32 map is F.
        input_size: crop side (256 in the paper).
        heatmap_size: 2D / 2.5D heatmap side (input / 4 in the paper; divisible by 16).
        hourglass_channels, hourglass_stacks, hourglass_depth: the stacked hourglass.
        refine_channels: width of the refinement module.
        depth_bins, depth_range: the 2.5D heatmap's depth axis (8 bins; metres it spans).
        node_dim, gat_heads: PG-stage width and graph-attention heads (K = 8).
        fem_heads, fem_layers: FEM attention heads and self- / cross-attention blocks.
        pretrained: passed to the backbone.
    """

    num_vertices = None

    def __init__(self, backbone: str, input_size: int, heatmap_size: int,
                 hourglass_channels: int, hourglass_stacks: int, hourglass_depth: int,
                 refine_channels: int, depth_bins: int, depth_range: float, node_dim: int,
                 gat_heads: int, fem_heads: int, fem_layers: int, pretrained: str | None = None):
        super().__init__()
        if input_size % 32 or heatmap_size % 16:
            raise ValueError(f"input_size must be a multiple of 32 and heatmap_size of 16, got "
                             f"{input_size} and {heatmap_size}")
        self.input_size, self.heatmap_size = input_size, heatmap_size
        self.depth_bins, self.depth_range = depth_bins, depth_range
        self.backbone = create_backbone(backbone, pretrained=pretrained)
        channels = self.backbone.channels[-1]
        self.tw = TWStage(channels, input_size, heatmap_size, hourglass_channels,
                          hourglass_stacks, hourglass_depth, refine_channels, depth_bins,
                          depth_range)
        tokens = (input_size // self.backbone.strides[-1]) ** 2
        self.pg = PGStage(refine_channels, channels, tokens, node_dim, gat_heads, fem_heads,
                          fem_layers)
        self.score = ScoreHead(channels)
        if getattr(self.backbone, "dense_heads", None) is not None:  # pretrained MediaPipe
            self.score.init_from_mediapipe(self.backbone)
        self.register_buffer("init", init_matrix(), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, S, S) RGB in [0, 1] -> the ``SeedNet`` outputs plus the module docstring's."""
        s = self.input_size
        feature = self.backbone(images)[-1]
        tw = self.tw(feature)
        # Stage-1 joints: 2D pixels and metric root-relative 3D (location-map x, y; bin z).
        uv_tw = tw["tw_uvz"][..., :2]
        xyz_tw = torch.cat([tw["tw_xy"], tw["tw_uvz"][..., 2:]], dim=-1)
        xyz_tw = xyz_tw - xyz_tw[:, :1]
        uv_init, xyz_init = self.init @ uv_tw, self.init @ xyz_tw
        # The PG-stage sees stage 1 through a stop-gradient (TW frozen in the paper's stage 2).
        geometry = torch.cat([(2.0 * uv_init + 1.0) / s - 1.0, 10.0 * xyz_init], dim=-1)
        offsets, attention = self.pg(geometry.detach(), tw["tw_latent"].detach(),
                                     feature.detach())
        uv = uv_init.detach() + offsets[..., :2] * (s / 2.0)
        xyz = xyz_init.detach() + offsets[..., 2:] * 0.1
        outputs = {
            "joints_3d": xyz - xyz[:, :1],
            "joints_2d": uv,
            "joints_3d_stage1": xyz_init,
            "joints_2d_stage1": uv_init,
            "tw_heatmaps": tw["tw_heatmaps"],
            "tw_uvz": tw["tw_uvz"],
            "tw_xy": tw["tw_xy"],
            "attention": attention,
        }
        outputs.update(self.score(feature))
        return outputs

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 6 + Eq. 14 on crops that hold a hand (see the module docstring, choices 6, 7)."""
        valid = batch["joint_valid"].float()
        tw_valid = valid[:, list(TW_JOINTS)]
        gt_2d, gt_3d = batch["joints_2d"].float(), batch["joints_3d"].float()
        gt_3d = gt_3d - gt_3d[:, :1]

        # L_H (Eq. 1, 3): normalised Gaussians at the stage-1 joints, every hourglass stack.
        stride = self.input_size / self.heatmap_size
        cells = (gt_2d[:, list(TW_JOINTS)] + 0.5) / stride - 0.5  # (N, 6, 2) in cells
        sigma = LOSS_SETTINGS["heatmap_sigma"]
        grid = torch.arange(self.heatmap_size, dtype=cells.dtype, device=cells.device)
        gx = torch.exp(-((grid - cells[..., :1]) ** 2) / (2 * sigma**2))  # (N, 6, w)
        gy = torch.exp(-((grid - cells[..., 1:]) ** 2) / (2 * sigma**2))  # (N, 6, h)
        target = gy[..., :, None] * gx[..., None, :]
        if LOSS_SETTINGS["heatmap_normalised"]:
            target = target / (2 * np.pi * sigma**2)
        heatmap_error = ((outputs["tw_heatmaps"].float() - target[:, None]) ** 2).sum((-2, -1))
        loss_h = _masked_mean(heatmap_error.mean(1), tw_valid)

        # L_ED (Eq. 4): 2.5D coordinates in heatmap cells and depth bins (+ location maps).
        bin_size = self.depth_range / (self.depth_bins - 1)
        uvz = outputs["tw_uvz"]
        pred = torch.cat([uvz[..., :2] / stride, uvz[..., 2:] / bin_size,
                          outputs["tw_xy"] / bin_size], dim=-1)
        target_ed = torch.cat([gt_2d[:, list(TW_JOINTS)] / stride,
                               gt_3d[:, list(TW_JOINTS), 2:] / bin_size,
                               gt_3d[:, list(TW_JOINTS), :2] / bin_size], dim=-1)
        loss_ed = _masked_mean(((pred.float() - target_ed) ** 2).sum(-1), tw_valid)

        # L_R (Eq. 5): L1 norm of the weight matrices of backbone + TW-stage (release's 1e-8).
        loss_r = LOSS_SETTINGS["l1_scale"] * sum(
            p.abs().sum() for module in (self.backbone, self.tw)
            for p in module.parameters() if p.ndim > 1 and p.requires_grad)

        # L_P (Eq. 12): squared joint error, millimetres (3D) plus crop pixels (2D).
        error_3d = ((outputs["joints_3d"].float() - gt_3d) * 1000.0) ** 2
        error_2d = (outputs["joints_2d"].float() - gt_2d) ** 2
        loss_p = _masked_mean(error_3d.sum(-1) + error_2d.sum(-1), valid)

        # L_E (Eq. 13): edge weights n_i alpha_ij of every edge held near 1.
        attention, masks = outputs["attention"].float(), self.pg.spi.masks
        edge_weight = attention * masks.sum(-1, keepdim=True)[None, :, None]
        loss_e = (((edge_weight - 1.0) ** 2) * masks[None, :, None]).sum((-2, -1)).mean()

        w = LOSS_WEIGHTS
        stage1 = w["heatmap"] * loss_h + w["euclidean"] * loss_ed + w["l1"] * loss_r
        stage2 = w["position"] * loss_p + w["edge"] * loss_e
        parts = {"L_H": loss_h, "L_ED": loss_ed, "L_R": loss_r, "L_P": loss_p, "L_E": loss_e,
                 "stage1": stage1, "stage2": stage2}
        return stage1 + stage2, {k: float(v.detach()) for k, v in parts.items()}


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of (N, J) ``values`` over the joints where ``valid`` (N, J) is non-zero."""
    return (values * valid).sum() / valid.sum().clamp(min=1.0)


def per_group_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Mean Euclidean error (input units) of each ``JOINT_GROUPS`` group after Procrustes
    alignment of every hand (the paper's PA setting). ``pred``, ``gt``: (N, 21, 3)."""
    errors = joint_errors(procrustes_align(pred, gt), gt)
    return {name: float(errors[:, list(ids)].mean()) for name, ids in JOINT_GROUPS.items()}


@torch.no_grad()
def compare_stages(net: EHPENet, images: torch.Tensor, joints_3d: np.ndarray,
                   batch_size: int = 16) -> dict[str, dict[str, float]]:
    """The paper's claim, measured: PA-MPJPE and per-group PA errors (metres) of stage 1 alone
    (TW-stage + initialisation, no refinement: the "baseline") and of the two-stage output.

    Args:
        images: (N, 3, S, S) crops in [0, 1] that all hold a hand.
        joints_3d: (N, 21, 3) ground truth, metres (any origin: errors are after alignment).

    Returns:
        {"stage1": {...}, "final": {...}}, each with "PA-MPJPE" and the ``JOINT_GROUPS`` keys.
    """
    was_training = net.training
    net.eval()
    outputs = [net(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    net.train(was_training)
    gt = np.asarray(joints_3d, dtype=np.float64)
    result = {}
    for stage, key in (("stage1", "joints_3d_stage1"), ("final", "joints_3d")):
        pred = torch.cat([out[key] for out in outputs]).double().numpy()
        result[stage] = {"PA-MPJPE": pa_mpjpe(pred, gt), **per_group_errors(pred, gt)}
    return result


# ---------------------------------------------------------------------------------------------
# Configurations, training, registration

# Eq. 6 and Eq. 14 weights (Sec. 3.2, 3.3).
LOSS_WEIGHTS: dict[str, float] = {"heatmap": 3.0, "euclidean": 1e-2, "l1": 1e-2,
                                  "position": 2e-2, "edge": 2e-1}
# Heatmap Gaussian sigma in cells, Eq. 1's normalisation (False: peak 1, the usual target of
# hourglass heatmaps) and the L1 scale of the authors' release (choice 6).
LOSS_SETTINGS: dict[str, float | bool] = {"heatmap_sigma": 2.0, "heatmap_normalised": True,
                                          "l1_scale": 1e-8}

# "paper": the method section's ResNet-50 at 256 px (F = 8 x 8 x 2048; the paper also reports
# HRNet and FastViT-MA36 backbones: pass backbone= to EHPENet for those), hourglass and
# refinement widths of the authors' release (256, 2 stacks, depth 4), 512-wide PG-stage;
# 46.93 M parameters (full model).
# "realtime": the MediaPipe hand-landmark trunk at 256 px (real-image pretrained with
# pretrained="mediapipe"), one 64-wide hourglass on a 32 x 32 heatmap, 128-wide PG-stage;
# 3.59 M parameters (full model), ~35-45 ms per crop with onnxruntime on 2 CPU cores.
CONFIGS: dict[str, dict] = {
    "paper": {"backbone": "resnet50", "input_size": 256, "heatmap_size": 64,
              "hourglass_channels": 256, "hourglass_stacks": 2, "hourglass_depth": 4,
              "refine_channels": 256, "depth_bins": 8, "depth_range": 0.3, "node_dim": 512,
              "gat_heads": 8, "fem_heads": 8, "fem_layers": 2},
    "realtime": {"backbone": "mediapipe", "input_size": 256, "heatmap_size": 32,
                 "hourglass_channels": 64, "hourglass_stacks": 1, "hourglass_depth": 4,
                 "refine_channels": 64, "depth_bins": 8, "depth_range": 0.3, "node_dim": 128,
                 "gat_heads": 8, "fem_heads": 4, "fem_layers": 1},
}

# Training (Sec. 4.1, FreiHAND): Adam, batch 32 per GPU on 2 GPUs; TW-stage 50 epochs at 5e-3,
# PG-stage 100 epochs at 5e-4, 5e-5 after 50. Both stages train concurrently here (choice 7)
# with one Adam, so one rate: the PG-stage's 5e-4 and its step to 5e-5 at half of the run.
TRAINING: dict = {
    "optimizer": "adam",
    "lr": 5e-4,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": (0.5,),
    "gamma": 0.1,
    "epochs": 100,
    "batch_size": 64,
    "loss_weights": dict(LOSS_WEIGHTS),
}


def build_net(config: str = "realtime", pretrained: str | None = None) -> EHPENet:
    """The EHPE network of ``config`` (see ``CONFIGS``); ``pretrained`` goes to the backbone."""
    return EHPENet(**config_values("ehpe", CONFIGS, config), pretrained=pretrained)


@register_model
def ehpe(**overrides) -> SeedEstimator:
    """EHPE behind the estimator interface. Overrides: config ("realtime" | "paper"),
    checkpoint (path; default the shipped one), backend, num_threads, backend options."""
    return load_seed_estimator("ehpe", build_net, CONFIGS, **overrides)
