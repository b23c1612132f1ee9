"""DFL, Decoupled Feature Learning (seed paper 001): 3D poses of two interacting hands from one
RGB crop, with the joints' appearance and position features kept apart and coupled only
through the attention relations they produce.

Module by module (paper section in brackets), with the choices the paper leaves open:

- **Encoder** [3.2]: ResNet-50-FPN ("paper", 256 px input, section 4.2) or ResNet-18-FPN at
  128 px ("realtime"). The FPN is Lin et al. 2017's (lateral 1 x 1, nearest top-down, 3 x 3
  output convs, C_F = 256 channels) over the stride 4..32 maps, so N = 4 scales and
  T = N - 1 = 3 coarse-to-fine iterations. The scales are ordered coarse to fine: F_0 (stride
  32) builds the initial joint features, iteration t = 1..3 reads F_t (strides 16, 8, 4), and
  F_{N-1} (stride 4, "the last feature map") carries the segmentation.
- **Part segmentation** [3.2]: a 3 x 3 conv-BN-ReLU and a 1 x 1 conv on F_{N-1} give
  C_S = 33 class logits (``data.sample.SEGMENTATION_CLASSES``: background, 16 parts per hand,
  from the synthetic engine). Their softmax S_{N-1} is average-pooled to the coarser scales and
  concatenated to F_n: image appearance features F^a_n with C_F + C_S = 289 channels. The
  segmentation feeds the decoder, so it stays in the inference graph; only its logits
  (``segmentation``, training output) are left out of the exported outputs.
- **Position features** [3.2]: DETR's sine encoding of each map cell's centre (normalised crop
  coordinates, so one crop point has one encoding at every scale), mapped by a linear layer
  (shared by the scales) to C_P = 256: F^p_n.
- **Decoder** [3.3], 42 joint queries (21 right, then 21 left) in the appearance space
  (Q^a, 42 x 289). Every attention keeps the two streams apart: per stream query/key/value
  projections; the relation (attention logits) is computed from the streams the ablation
  (Table 2) selects, and the one relation weights the values of both streams. Summing the
  per-stream dot products at scale 1/sqrt(2 d_h) is exactly Eq. 3's Split(Attn(Concat)) with
  block-diagonal projections. Selected relations (Table 2's best model): initialisation
  appearance only (Eq. 1-2), joints-joints position only, joints-image appearance + position
  (Eq. 3), regression from position features only.
  * Initialisation: Q^a attends to F^a_0; the relation aggregates J^a_1 and J^p_1 from
    F^a_0 and F^p_0.
  * Iteration t = 1..3: joints-joints self-attention (position relation) -> J', then
    joints-image cross-attention to (F^a_t, F^p_t) (appearance + position relations) -> J_{t+1},
    then a linear layer on J^p_{t+1} gives the iteration's 2.5D pose (supervised in 2D).
  * Spatial position refinement (SPR, after the last iteration, as Fig. 2 draws it): a
    lightweight GCN over the two skeletons (``hand.joints.BONES``, hands unconnected) in
    parallel with self-attention, as the interweaved graph-attention block of [52], then a
    feed-forward layer; the final 2.5D pose is a linear layer on its output.
  Attention sizes the paper omits are the common transformer-decoder ones (DETR; A2J-Transformer,
  whose losses and model size DFL follows): 8 heads, model width 256 per stream, post-norm
  residual blocks with a 1024-wide feed-forward layer per stream, dropout 0.1 ("paper"; the
  "realtime" config narrows FPN and decoder to 64 channels, 4 heads, 256-wide feed-forward).
  No weights are shared between iterations (the paper's model grows with the iteration
  count). Full model (everything ``forward`` uses, presence and root heads included):
  39.20 M parameters at "paper" (the paper's Table 4 says 42 M), 12.19 M at "realtime"
  (48.8 MB as an fp32 checkpoint).
- **2.5D -> 3D** [3.1] per hand: the net regresses (u, v) crop coordinates and d, depth
  relative to its wrist. The paper lifts with the ground-truth root depth and camera; our crops
  come without either, so the net also regresses each hand's metric scale sigma (metres per
  crop side at the wrist depth, trained on log(Z_root S / f)) and lifts with a nominal crop
  camera: principal point at the crop centre, focal ``NOMINAL_FOCAL`` x S (the median of the
  synthetic crops): X = (u - c) (Z_r + d) / f with Z_r = sigma f / S, minus the wrist's.
  With perfect 2.5D and scale this costs 11.3 mm mean on synthetic two-hand crops (the crop's
  true principal point is unknown to any crop-only model; weak perspective: 12.3 mm).
- **Root offset** (ours, for teleoperation; the paper has per-hand root-relative joints only):
  a small MLP on the two wrists' final position features regresses the left wrist's depth
  relative to the right one; both wrists are lifted like the joints (the right one at
  Z_r = sigma_right f / S), giving ``root_offset`` = left wrist - right wrist (metres, crop
  camera axes), trained with ``twohand.root_offset_loss`` (weight ``ROOT_OFFSET_WEIGHT``).
- **Losses** [3.4], in A2J-Transformer's units which DFL follows ([19]; (u, v) in pixels of
  the 256 px input, d in 400 mm / 256 units): L_total = L_2D + 3 L_2.5D + L_seg.
  L_2.5D = 0.5 smoothL1_1(uv) + smoothL1_3(d) on the final pose; L_2D = smoothL1_1(uv) on each
  iteration's pose, summed over iterations; smooth L1 averaged over valid joints' coordinates
  (A2J's normalisation; the paper writes sums). L_seg = multi-class focal (gamma 2, averaged
  over pixels) + soft Dice (epsilon 1, per crop, averaged over the 33 classes) at stride 4
  against nearest-sampled labels. Added by us: ``SCALE_WEIGHT`` x L1 of log sigma.
- Presence: ``twohand.TwoHandScoreHead`` on the stride-32 backbone map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.data.sample import NUM_SEGMENTATION_CLASSES
from hand_pose_ros.hand.joints import BONES
from hand_pose_ros.models.backbones import create_backbone
from hand_pose_ros.models.base import register_model
from hand_pose_ros.models.seed import config_values, load_seed_estimator
from hand_pose_ros.models.twohand import (
    HANDS,
    TwoHandEstimator,
    TwoHandScoreHead,
    TwoHandSeedNet,
    hand_joint_mask,
)

NUM_JOINTS = 21
NUM_QUERIES = HANDS * NUM_JOINTS  # 42: right hand's joints, then the left hand's
DROPOUT = 0.1
DECIMETRE = 10.0  # metres -> the depth units the net regresses
NOMINAL_FOCAL = 1.75  # focal / crop side of the lifting camera (median of synthetic crops)
SCALE_PRIOR = 0.3  # metres per crop side at the wrist depth, initial value of sigma
# Loss units and weights (section 3.4; units of A2J-Transformer, which DFL follows).
PAPER_INPUT = 256  # (u, v) loss in pixels of a crop of this side
DEPTH_UNIT = 0.4 / 256  # metres per depth unit of the loss (400 mm over 256 bins)
ALPHA, BETA, TAU_UV, TAU_DEPTH = 0.5, 1.0, 1.0, 3.0
LAMBDA_25D, LAMBDA_SEG = 3.0, 1.0
FOCAL_GAMMA = 2.0
DICE_EPSILON = 1.0
SCALE_WEIGHT = 10.0  # ours: log-scale loss
ROOT_OFFSET_WEIGHT = 100.0  # ours: metres -> centimetres

# fpn_channels = C_F; dim = C_P = every attention's per-stream width; ffn_dim: feed-forward
# width; heads: attention heads. "realtime" narrows the FPN and decoder (head width 16) so
# that its fp32 checkpoint stays under 50 MB beside ResNet-18's 11.2 M parameters.
CONFIGS: dict[str, dict] = {
    "paper": {"backbone": "resnet50", "input_size": 256, "fpn_channels": 256, "dim": 256,
              "ffn_dim": 1024, "heads": 8},
    "realtime": {"backbone": "resnet18", "input_size": 128, "fpn_channels": 64, "dim": 64,
                 "ffn_dim": 256, "heads": 4},
}

# Training as in the paper (4.2): Adam, lr 1e-4, batch 64, 50 epochs with decays at epochs 24
# and 35 (the trainer scales them to its step budget). The decay factor is not stated: 5, as
# in A2J-Transformer's released configuration. Weight decay and clipping: not stated, none.
TRAINING: dict = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": (24 / 50, 35 / 50),
    "gamma": 0.2,
    "epochs": 50,
    "batch_size": 64,
    "grad_clip": None,
    "loss_weights": {"2d": 1.0, "2.5d": LAMBDA_25D, "seg": LAMBDA_SEG, "scale": SCALE_WEIGHT,
                     "root_offset": ROOT_OFFSET_WEIGHT},
}


# ---------------------------------------------------------------------------------------------
# Encoder


class FPN(nn.Module):
    """Feature pyramid (Lin et al. 2017) over maps finest first; returns ``width``-channel maps
    finest first."""

    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in channels])
        self.output = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in channels])

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral[-1](maps[-1])
        out = [self.output[-1](x)]
        for i in range(len(maps) - 2, -1, -1):
            x = self.lateral[i](maps[i]) + F.interpolate(x, scale_factor=2.0, mode="nearest")
            out.insert(0, self.output[i](x))
        return out


def sine_encoding(height: int, width: int, channels: int) -> torch.Tensor:
    """DETR's 2D sine encoding of the cell centres of a (height, width) map in normalised crop
    coordinates (0..1 scaled by 2 pi): (height * width, channels), y half first."""
    half = channels // 2
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2 * math.pi
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 * math.pi
    dim_t = 10000.0 ** (2 * (torch.arange(half) // 2) / half)

    def encode(values: torch.Tensor) -> torch.Tensor:
        angles = values[:, None] / dim_t
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], -1).flatten(1)

    y, x = encode(ys), encode(xs)
    grid = torch.cat([y[:, None, :].expand(-1, width, -1), x[None, :, :].expand(height, -1, -1)],
                     dim=-1)
    return grid.reshape(height * width, channels).float()


# ---------------------------------------------------------------------------------------------
# Decoder


class DecoupledAttention(nn.Module):
    """Multi-head attention over two feature streams (appearance ``a``, position ``p``) that
    never mixes them: the relation is computed from the streams in ``relation`` ("a", "p" or
    "ap", the sum of both dot products, i.e. attention over the concatenated projections) and
    weights each stream's own values.

    Args:
        relation: which streams' query-key similarities make the attention.
        query_dims, key_dims: (appearance, position) widths of the queries and keys/values.
        dim: projection width per stream, split over ``heads`` heads.
    """

    def __init__(self, relation: str, query_dims: tuple[int, int], key_dims: tuple[int, int],
                 dim: int, heads: int):
        super().__init__()
        if relation not in ("a", "p", "ap"):
            raise ValueError(f"relation must be 'a', 'p' or 'ap', got {relation!r}")
        self.relation = relation
        self.q = nn.ModuleDict({s: nn.Linear(query_dims[i], dim)
                                for i, s in enumerate("ap") if s in relation})
        self.k = nn.ModuleDict({s: nn.Linear(key_dims[i], dim)
                                for i, s in enumerate("ap") if s in relation})
        self.v = nn.ModuleList([nn.Linear(key_dims[i], dim) for i in range(2)])
        self.out = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.heads, self.head_dim = heads, dim // heads

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, queries: tuple[torch.Tensor, torch.Tensor | None],
                keys: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (appearance (N, Q, ·), position (N, Q, ·) or None when unused), keys
        (appearance (N, K, ·), position (N, K, ·)) -> (appearance, position) (N, Q, dim)."""
        streams = {"a": 0, "p": 1}
        q = torch.cat([self._heads(self.q[s](queries[streams[s]])) for s in self.relation], -1)
        k = torch.cat([self._heads(self.k[s](keys[streams[s]])) for s in self.relation], -1)
        v = torch.cat([self._heads(self.v[i](keys[i])) for i in range(2)], -1)
        # One relation for both streams' values: Eq. 3's Split(Attn(Concat(...))).
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (N, Q, H, 2 d_h)
        half = self.head_dim
        return (self.out[0](mixed[..., :half].flatten(2)),
                self.out[1](mixed[..., half:].flatten(2)))


class StreamUpdate(nn.Module):
    """Per stream: residual + LayerNorm after attention, then a feed-forward block (post-norm
    transformer layer)."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True),
                                 nn.Dropout(DROPOUT), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(update))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoupledBlock(nn.Module):
    """A decoupled attention and the two streams' residual updates."""

    def __init__(self, relation: str, query_dims: tuple[int, int], key_dims: tuple[int, int],
                 dim: int, ffn_dim: int, heads: int):
        super().__init__()
        self.attn = DecoupledAttention(relation, query_dims, key_dims, dim, heads)
        self.update = nn.ModuleList([StreamUpdate(dim, ffn_dim) for _ in range(2)])

    def forward(self, joints: tuple[torch.Tensor, torch.Tensor],
                keys: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.attn(joints, keys)
        return self.update[0](joints[0], out[0]), self.update[1](joints[1], out[1])


def skeleton_adjacency() -> torch.Tensor:
    """(42, 42) symmetric-normalised adjacency with self-loops of the two hands' skeletons
    (D^-1/2 (A + I) D^-1/2, Kipf and Welling 2017); the hands are not connected."""
    a = torch.eye(NUM_QUERIES)
    for h in range(HANDS):
        for parent, child in BONES:
            i, j = h * NUM_JOINTS + int(parent), h * NUM_JOINTS + int(child)
            a[i, j] = a[j, i] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class SpatialPositionRefinement(nn.Module):
    """SPR [3.3.2]: local skeletal structure by a one-layer GCN and global structure by
    self-attention, in parallel on the joints' position features (as [52]'s graph-attention
    block), residual + LayerNorm, then a feed-forward block."""

    def __init__(self, dim: int, ffn_dim: int, heads: int):
        super().__init__()
        self.register_buffer("adjacency", skeleton_adjacency(), persistent=False)
        self.gcn = nn.Linear(dim, dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=DROPOUT, batch_first=True)
        self.update = StreamUpdate(dim, ffn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = torch.matmul(self.adjacency, self.gcn(x))
        global_ = self.attn(x, x, x, need_weights=False)[0]
        return self.update(x, local + global_)


# ---------------------------------------------------------------------------------------------
# Losses


def smooth_l1(error: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 7 element-wise: x^2 / (2 tau) below tau, |x| - tau / 2 above."""
    error = error.abs()
    return torch.where(error < tau, error ** 2 / (2 * tau), error - tau / 2)


def focal_loss(logits: torch.Tensor, target: torch.Tensor,
               gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Eq. 8, multi-class focal loss (softmax), averaged over pixels. logits (N, C, h, w),
    target (N, h, w) int64."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None])[:, 0]
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor,
              epsilon: float = DICE_EPSILON) -> torch.Tensor:
    """Eq. 9, multi-class soft Dice per crop averaged over the classes, then over crops."""
    prob = F.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    inter = (onehot * prob).sum(dim=(2, 3))
    total = onehot.sum(dim=(2, 3)) + prob.sum(dim=(2, 3))
    return (1 - ((2 * inter + epsilon) / (total + epsilon)).mean(dim=1)).mean()


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of (..., J, D) ``values`` over the valid (..., J) joints and their coordinates."""
    weight = valid[..., None].to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Network


class DFLNet(TwoHandSeedNet):
    """DFL (see the module docstring). Input (N, 3, S, S) RGB in [0, 1]; outputs the two-hand
    standard keys plus, for the losses: ``pose_25d`` (N, T + 1, 2, 21, 3) per iteration and
    final (u, v normalised to [-1, 1] over the crop's pixel edges, d decimetres relative to
    the wrist), ``log_scale`` (N, 2) log sigma (metres per crop side) and ``segmentation``
    (N, 33, S/4, S/4) logits."""

    root_offset_weight = ROOT_OFFSET_WEIGHT

    def __init__(self, backbone: str = "resnet50", input_size: int = 256,
                 fpn_channels: int = 256, dim: int = 256, ffn_dim: int = 1024, heads: int = 8,
                 pretrained: str | None = None):
        super().__init__()
        self.input_size = input_size
        self.num_vertices = None
        self.backbone = create_backbone(backbone, pretrained=pretrained)
        strides = self.backbone.strides
        for stride in strides:
            if input_size % stride:
                raise ValueError(f"input size {input_size} is not a multiple of the backbone "
                                 f"stride {stride}")
        self.fpn = FPN(self.backbone.channels, fpn_channels)
        self.segment = nn.Sequential(
            nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(fpn_channels), nn.ReLU(inplace=True),
            nn.Conv2d(fpn_channels, NUM_SEGMENTATION_CLASSES, 1))
        # Scales coarse to fine (F_0 = stride 32 ... F_{N-1} = stride 4).
        self.scale_strides = tuple(reversed(strides))
        for n, stride in enumerate(self.scale_strides):
            side = input_size // stride
            self.register_buffer(f"sine_{n}", sine_encoding(side, side, dim), persistent=False)
        self.position_map = nn.Linear(dim, dim)
        appearance = fpn_channels + NUM_SEGMENTATION_CLASSES  # C_F + C_S
        image_dims = (appearance, dim)
        self.queries = nn.Parameter(torch.randn(NUM_QUERIES, appearance) * 0.02)
        self.init_attn = DecoupledAttention("a", (appearance, 0), image_dims, dim, heads)
        self.query_proj = nn.Linear(appearance, dim)
        self.init_update = nn.ModuleList([StreamUpdate(dim, ffn_dim) for _ in range(2)])
        iterations = len(strides) - 1  # T = N - 1
        self.joint_joint = nn.ModuleList([
            DecoupledBlock("p", (dim, dim), (dim, dim), dim, ffn_dim, heads)
            for _ in range(iterations)])
        self.joint_image = nn.ModuleList([
            DecoupledBlock("ap", (dim, dim), image_dims, dim, ffn_dim, heads)
            for _ in range(iterations)])
        self.pose_heads = nn.ModuleList([nn.Linear(dim, 3) for _ in range(iterations + 1)])
        self.spr = SpatialPositionRefinement(dim, ffn_dim, heads)
        self.scale_head = nn.Linear(dim, 1)
        nn.init.zeros_(self.scale_head.weight)
        nn.init.constant_(self.scale_head.bias, math.log(SCALE_PRIOR))
        self.depth_head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(inplace=True),
                                        nn.Linear(dim, 1))
        self.score = TwoHandScoreHead(self.backbone.channels[-1])

    def image_features(self, images: torch.Tensor
                       ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor,
                                  torch.Tensor]:
        """Per scale (coarse to fine) the flattened (appearance (N, HW, C_F + 33), position
        (N, HW, C_P)) features; the segmentation logits; the coarsest backbone map."""
        maps = self.backbone(images)
        pyramid = self.fpn(maps)[::-1]  # coarse to fine
        logits = self.segment(pyramid[-1])
        prob = logits.softmax(dim=1)
        finest = self.scale_strides[-1]
        scales = []
        for n, (fmap, stride) in enumerate(zip(pyramid, self.scale_strides, strict=True)):
            factor = stride // finest
            seg = prob if factor == 1 else F.avg_pool2d(prob, factor)
            appearance = torch.cat([fmap, seg], dim=1).flatten(2).transpose(1, 2)
            position = self.position_map(getattr(self, f"sine_{n}"))
            scales.append((appearance, position[None].expand(appearance.shape[0], -1, -1)))
        return scales, logits, maps[-1]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        scales, logits, coarsest = self.image_features(images)
        n = images.shape[0]
        queries = self.queries[None].expand(n, -1, -1)
        out_a, out_p = self.init_attn((queries, None), scales[0])
        joints_a = self.init_update[0](self.query_proj(queries), out_a)
        joints_p = self.init_update[1](torch.zeros_like(out_p), out_p)
        poses = []
        for t, (jj, ji) in enumerate(zip(self.joint_joint, self.joint_image, strict=True)):
            joints_a, joints_p = jj((joints_a, joints_p), (joints_a, joints_p))
            joints_a, joints_p = ji((joints_a, joints_p), scales[t + 1])
            poses.append(self.pose_heads[t](joints_p))
        refined = self.spr(joints_p)
        poses.append(self.pose_heads[-1](refined))
        pose = torch.stack(poses, dim=1).unflatten(2, (HANDS, NUM_JOINTS))  # (N, T+1, 2, J, 3)
        per_hand = refined.unflatten(1, (HANDS, NUM_JOINTS))  # (N, 2, J, C_P)
        log_scale = self.scale_head(per_hand.mean(dim=2))[..., 0]  # (N, 2)
        wrists = per_hand[:, :, 0].flatten(1)  # (N, 2 C_P)
        left_depth = self.depth_head(wrists) / DECIMETRE  # (N, 1) left wrist z - right wrist z
        joints_3d, joints_2d, roots = self.lift(pose[:, -1], log_scale, left_depth)
        return {
            "joints_3d": joints_3d,
            "joints_2d": joints_2d,
            "hand_logit": self.score(coarsest),
            "root_offset": roots[:, 1] - roots[:, 0],
            "pose_25d": pose,
            "log_scale": log_scale,
            "segmentation": logits,
        }

    def lift(self, pose: torch.Tensor, log_scale: torch.Tensor, left_depth: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """2.5D (N, 2, J, 3) -> wrist-relative joints (N, 2, J, 3) metres, crop pixels
        (N, 2, J, 2), and both wrists (N, 2, 3) in the nominal crop camera (right wrist depth
        from its scale, left wrist depth = right + ``left_depth`` (N, 1) metres)."""
        s = self.input_size
        pixels = (pose[..., :2] + 1.0) * (s / 2.0) - 0.5
        depth = (pose[..., 2] - pose[..., :1, 2]) / DECIMETRE  # wrist-relative, metres
        focal = NOMINAL_FOCAL * s
        centred = pixels - (s - 1) / 2.0
        root_z = log_scale.exp() * NOMINAL_FOCAL  # each wrist's depth: Z = sigma f / S
        xy = centred * ((root_z[..., None] + depth) / focal)[..., None]
        joints = torch.cat([xy - xy[:, :, :1], depth[..., None]], dim=-1)
        # The wrists share one depth reference: the right one's, plus the regressed offset.
        wrist_z = torch.cat([root_z[:, :1], root_z[:, :1] + left_depth], dim=1)  # (N, 2)
        wrists = torch.cat([centred[:, :, 0] * (wrist_z / focal)[..., None],
                            wrist_z[..., None]], dim=-1)
        return joints, pixels, wrists

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """L_2D + 3 L_2.5D + L_seg (section 3.4) + our log-scale loss, per present hand."""
        s = self.input_size
        valid = hand_joint_mask(batch)
        pose = outputs["pose_25d"].float()
        target_uv = (batch["joints_2d"].float() + 0.5) * (2.0 / s) - 1.0
        target_d = batch["joints_3d"][..., 2].float()  # wrist-relative, metres
        uv_px = PAPER_INPUT / 2.0  # normalised -> paper-input pixels
        parts: dict[str, float] = {}
        loss_2d = pose.new_zeros(())
        for t in range(pose.shape[1] - 1):
            term = _masked_mean(smooth_l1((pose[:, t, ..., :2] - target_uv) * uv_px, TAU_UV),
                                valid)
            loss_2d = loss_2d + term
        final = pose[:, -1]
        uv_term = ALPHA * smooth_l1((final[..., :2] - target_uv) * uv_px, TAU_UV)
        pred_d = (final[..., 2] - final[..., :1, 2]) / DECIMETRE
        d_term = BETA * smooth_l1((pred_d - target_d) / DEPTH_UNIT, TAU_DEPTH)
        # A2J's normalisation: sum over a joint's 3 coordinates, mean over valid coordinates.
        loss_25d = _masked_mean(torch.cat([uv_term, d_term[..., None]], dim=-1), valid)
        total = loss_2d + LAMBDA_25D * loss_25d
        parts.update(loss_2d=float(loss_2d.detach()), loss_25d=float(loss_25d.detach()))
        if "segmentation" in batch:
            logits = outputs["segmentation"]
            step = s // logits.shape[-1]
            labels = batch["segmentation"][:, step // 2::step, step // 2::step]
            focal = focal_loss(logits, labels)
            dice = dice_loss(logits, labels)
            total = total + LAMBDA_SEG * (focal + dice)
            parts.update(focal=float(focal.detach()), dice=float(dice.detach()))
        present = batch["hand_present"] > 0.5
        if bool(present.any()):
            focal_px = batch["intrinsics"][:, 0, 0].float()[:, None]
            target_scale = torch.log(batch["root_depth"].float().clamp(min=1e-3) * s / focal_px)
            scale = (outputs["log_scale"].float() - target_scale).abs()[present].mean()
            total = total + SCALE_WEIGHT * scale
            parts["log_scale"] = float(scale.detach())
        with torch.no_grad():
            error = (outputs["joints_3d"] - batch["joints_3d"]).norm(dim=-1)
            parts["mpjpe_mm"] = float(1e3 * error[valid].mean()) if bool(valid.any()) else 0.0
        return total, parts


def build_net(config: str = "realtime", pretrained: str | None = None) -> DFLNet:
    """The DFL network of ``config`` (``CONFIGS``); ``pretrained`` goes to the backbone (the
    ResNets have no pretrained weights here)."""
    return DFLNet(**config_values("dfl", CONFIGS, config), pretrained=pretrained)


@register_model
def dfl(**overrides) -> TwoHandEstimator:
    """DFL behind the estimator interface (two hands per crop, right first). Overrides: config
    ("realtime" | "paper"), checkpoint (path; default the shipped one), backend, num_threads,
    backend options."""
    return load_seed_estimator("dfl", build_net, CONFIGS,
                               estimator_class=TwoHandEstimator, **overrides)
