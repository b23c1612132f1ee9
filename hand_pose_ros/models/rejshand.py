"""ReJSHand (An et al. 2025, "ReJSHand: Efficient Real-Time Hand Pose Estimation and Mesh
Reconstruction Using Refined Joint and Skeleton Features", arXiv:2503.05995), module by module.

Pipeline (paper Fig. 2, Sec. III; the authors' release, github.com/daishipeng/ReJSHand, fills
in what the text leaves open and is cited as "the release" below):

1. Backbone -> F_B, its coarsest map (224 px input -> 7 x 7; FastViT-MA36 in the paper).
2. 2D keypoint generator (III-D): a linear layer on the average-pooled F_B gives the 21 joints
   as (u, v) in [0, 1] of the crop. The paper regresses coordinates directly (no heatmaps).
3. Expansion block (III-B): a 4 x 4 stride-4 transposed convolution (+ BatchNorm + ReLU, the
   release) lifts F_B to 256 x 28 x 28; a fixed 2D sine positional encoding is added (the
   release, DETR's); the map is grid-sampled at (2 F_2D - 1) (Eq. 1) and linear maps give the
   joint features F_J and the skeleton features F_S, 21 x 256 each, plus a learned per-token
   embedding (the release).
4. Three feature-interaction blocks (III-C), widths 256, 128, 64 with 21, 84, 336 tokens: the
   coordinate-attention layer (a kernel-1 Conv1d over the joint features, the release), 8-head
   self-attention (d_k = 32, 16, 8 as stated), a linear layer fusing F_S, residuals and ReLU.
   Between blocks both streams are upsampled along the token axis by a learned linear map
   (21 -> 84 -> 336, the release's ``LinearUpsample``) and projected to the next width.
5. Mesh token generator (III-D): concatenation of F_J' and F_S', a linear map to 64 channels,
   a learned token upsampling 336 -> V (778 for MANO, 776 for our template) and a linear layer
   to 3D vertices.
6. 3D keypoint generator (III-D): joints = J @ vertices with a fixed regressor. The paper uses
   MANO's (16 joints + 5 fingertip vertices); here ``mesh_sampling.joint_regressor()`` of our
   hand model, which covers all 21 joints.

Losses (III-E, Eq. 4-7): L1 per point (summed over coordinates, averaged over points and crops)
on 2D joints, 3D joints and vertices with weights 1, 10, 10. The 2D loss is on normalised
(u, v) in [0, 1] and the 3D losses in metres, as in the release.

Where the paper is silent (our choices, the field's common ones):
- The paper's F_S and F_J: the text says linear maps give both; the release uses one tensor
  for both. Here they are two linear maps of the sampled features; each block's F_S' is a
  linear projection of F_S ("through a projection linear operation").
- Root-relative output: vertices and joints are shifted so that the regressed wrist is at the
  origin (the loss then compares root-relative shapes, as METRO/FastMETRO do).
- Presence and handedness: the shared ``ScoreHead`` of ``SeedNet`` (not in the paper).
- Grid sampling reads the features at detached 2D joints: only the 2D loss moves them.
- With the pretrained MediaPipe trunk, the 2D generator and the score head start from
  MediaPipe's own landmark, presence and handedness layers (same pooled features, same
  linear form), so training starts from MediaPipe's 2D joints instead of noise.

Sizes (full model: backbone + head + score head; the paper's 1.91 M cannot include FastViT-MA36):
"paper" (FastViT-MA36 trunk, whose last map here has 608 channels; the paper text says 640,
the release taps 1216 after FastViT's final expansion conv) 46.32 M; "realtime" (MediaPipe
landmark trunk, 1152-channel stride-32 map) 8.49 M, of which the ReJSHand head is 5.92 M (its
transposed convolution alone 4.72 M).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

from hand_pose_ros.hand.joints import NUM_JOINTS
from hand_pose_ros.hand.mesh_sampling import joint_regressor
from hand_pose_ros.models.backbones import create_backbone
from hand_pose_ros.models.base import register_model
from hand_pose_ros.models.seed import (
    ScoreHead,
    SeedEstimator,
    SeedNet,
    config_values,
    load_seed_estimator,
    masked_l1,
)

# Token counts and widths of the three feature-interaction blocks (paper III-C).
TOKENS = (21, 84, 336)
WIDTHS = (256, 128, 64)
NUM_HEADS = 8
NUM_VERTICES = 776  # the open hand model's template (MANO's 778 in the paper)
DECONV_CHANNELS = 256
# Loss weights k_2D, k_3D, k_V (paper III-E).
LOSS_WEIGHTS = {"joints_2d": 1.0, "joints_3d": 10.0, "vertices": 10.0}


def sine_position_encoding(height: int, width: int, channels: int) -> torch.Tensor:
    """(1, channels, height, width) fixed 2D sine encoding (DETR's ``PositionEmbeddingSine``,
    normalised coordinates, temperature 10000): half the channels encode y, half x."""
    half = channels // 2
    y = torch.arange(1, height + 1, dtype=torch.float32) / height * 2 * math.pi
    x = torch.arange(1, width + 1, dtype=torch.float32) / width * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(half) // 2) / half)
    pos_y = y[:, None] / dim_t  # (H, half)
    pos_x = x[:, None] / dim_t  # (W, half)
    pos_y = torch.stack([pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()], 2).flatten(1)
    pos_x = torch.stack([pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()], 2).flatten(1)
    grid = torch.cat([pos_y[:, None, :].expand(height, width, half),
                      pos_x[None, :, :].expand(height, width, half)], 2)
    return grid.permute(2, 0, 1)[None]


class KeypointGenerator2D(nn.Module):
    """Average-pooled F_B -> linear -> (N, 21, 2) joints as (u, v) in [0, 1] of the crop."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, NUM_JOINTS * 2)

    @torch.no_grad()
    def init_from_mediapipe(self, trunk: nn.Module) -> None:
        """Start from MediaPipe's landmark layer (the same linear map of the same pooled
        map): its (x, y) rows, pixels of its 224-px input with 0 at the image edge, become
        (u, v) = (x - 0.5) / 223 (0 and 1 on the outer pixel centres, as our 2D joints)."""
        weight, bias = trunk.dense_heads["landmarks"]  # (63, C): x, y, z per joint
        rows = torch.arange(NUM_JOINTS)[:, None] * 3 + torch.arange(2)  # (21, 2) x, y rows
        self.linear.weight.copy_(weight[rows.reshape(-1)] / 223.0)
        self.linear.bias.copy_((bias[rows.reshape(-1)] - 0.5) / 223.0)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.linear(feature.mean((2, 3))).view(-1, NUM_JOINTS, 2)


class ExpansionBlock(nn.Module):
    """F_B and F_2D -> joint features F_J and skeleton features F_S, (N, 21, 256) each."""

    def __init__(self, channels: int, feature_size: int):
        super().__init__()
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, DECONV_CHANNELS, 4, stride=4, bias=False),
            nn.BatchNorm2d(DECONV_CHANNELS), nn.ReLU(inplace=True))
        side = 4 * feature_size
        self.register_buffer("position", sine_position_encoding(side, side, DECONV_CHANNELS),
                             persistent=False)
        self.token_embedding = nn.Parameter(torch.zeros(1, NUM_JOINTS, DECONV_CHANNELS))
        nn.init.trunc_normal_(self.token_embedding, std=0.02)
        self.to_joint = nn.Linear(DECONV_CHANNELS, WIDTHS[0])
        self.to_skeleton = nn.Linear(DECONV_CHANNELS, WIDTHS[0])

    def forward(self, feature: torch.Tensor, uv: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.deconv(feature) + self.position
        # The sampling positions learn from the 2D loss only: the 3D and vertex losses (15x its
        # weight) otherwise drag them where their features help least-squares most, off the
        # joints (seen: 2D L1 0.75 -> 1.0 in 400 steps on a frozen trunk). The paper is silent.
        uv = uv.detach()
        # Eq. 1: [0, 1] -> [-1, 1]; align_corners=True puts -1 / +1 on the outer pixel centres,
        # which is where u = 0 / 1 lies (u = x_px / (size - 1)).
        grid = (2 * uv - 1).clamp(-1, 1).unsqueeze(2)  # (N, 21, 1, 2)
        sampled = F.grid_sample(feature, grid, align_corners=True)  # (N, C, 21, 1)
        tokens = sampled.squeeze(3).transpose(1, 2) + self.token_embedding
        return self.to_joint(tokens), self.to_skeleton(tokens)


class MultiHeadSelfAttention(nn.Module):
    """Eq. 2-3: separate Q, K, V linear maps, softmax(Q K^T / sqrt(d_k)) V per head, output
    linear map."""

    def __init__(self, width: int, heads: int = NUM_HEADS):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, width = x.shape
        shape = (n, tokens, self.heads, width // self.heads)
        q, k, v = (f(x).view(shape).transpose(1, 2) for f in (self.query, self.key, self.value))
        attention = (q @ k.transpose(-1, -2) / math.sqrt(width // self.heads)).softmax(-1)
        return self.out((attention @ v).transpose(1, 2).reshape(n, tokens, width))


class FeatureInteractionBlock(nn.Module):
    """(F_J, F_S) -> (F_J', F_S'): coordinate attention, self-attention, skeleton fusion."""

    def __init__(self, width: int):
        super().__init__()
        self.coord_attention = nn.Conv1d(width, width, kernel_size=1)
        self.attention = MultiHeadSelfAttention(width)
        self.fuse = nn.Linear(width, width)
        self.skeleton_projection = nn.Linear(width, width)

    def forward(self, joint: torch.Tensor, skeleton: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.coord_attention(joint.transpose(1, 2)).transpose(1, 2)
        x = self.attention(x)
        x = self.fuse(x + skeleton)
        return F.relu(x + skeleton), self.skeleton_projection(skeleton)


class TokenUpsample(nn.Module):
    """(N, T_in, C) -> (N, T_out, C) by a learned linear map along the token axis."""

    def __init__(self, tokens_in: int, tokens_out: int):
        super().__init__()
        self.linear = nn.Linear(tokens_in, tokens_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


class ReJSHandHead(nn.Module):
    """Everything after the backbone: F_B (N, C, s, s) -> uv (N, 21, 2) in [0, 1], vertices
    (N, V, 3) and joints (N, 21, 3), metres, root(wrist)-relative."""

    def __init__(self, channels: int, feature_size: int, regressor: torch.Tensor):
        super().__init__()
        self.keypoints_2d = KeypointGenerator2D(channels)
        self.expansion = ExpansionBlock(channels, feature_size)
        self.blocks = nn.ModuleList(FeatureInteractionBlock(w) for w in WIDTHS)
        # Between blocks i and i + 1: token upsampling, then width projection, per stream.
        self.joint_upsample = nn.ModuleList(
            TokenUpsample(a, b) for a, b in zip(TOKENS[:-1], TOKENS[1:], strict=True))
        self.skeleton_upsample = nn.ModuleList(
            TokenUpsample(a, b) for a, b in zip(TOKENS[:-1], TOKENS[1:], strict=True))
        self.joint_projection = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True))
        self.skeleton_projection = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True))
        num_vertices = regressor.shape[1]
        self.mesh_tokens = nn.Linear(2 * WIDTHS[-1], WIDTHS[-1])
        self.vertex_upsample = TokenUpsample(TOKENS[-1], num_vertices)
        self.to_vertices = nn.Linear(WIDTHS[-1], 3)
        # Fixed (not learned) and saved with the weights, so a checkpoint is self-contained.
        self.register_buffer("regressor", regressor.float())

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        uv = self.keypoints_2d(feature)
        joint, skeleton = self.expansion(feature, uv)
        for i, block in enumerate(self.blocks):
            joint, skeleton = block(joint, skeleton)
            if i + 1 < len(self.blocks):
                joint = self.joint_projection[i](self.joint_upsample[i](joint))
                skeleton = self.skeleton_projection[i](self.skeleton_upsample[i](skeleton))
        tokens = self.mesh_tokens(torch.cat([joint, skeleton], 2))
        vertices = self.to_vertices(self.vertex_upsample(tokens))
        joints = torch.einsum("jv,nvc->njc", self.regressor, vertices)
        root = joints[:, :1]
        return {"uv": uv, "vertices": vertices - root, "joints_3d": joints - root}


class ReJSHandNet(SeedNet):
    """Backbone + ``ReJSHandHead`` + the shared ``ScoreHead``; outputs as ``SeedNet`` plus
    ``uv`` (N, 21, 2), the 2D joints in [0, 1] that the 2D loss compares."""

    num_vertices = NUM_VERTICES

    def __init__(self, backbone: str, input_size: int = 224, pretrained: str | None = None):
        super().__init__()
        self.input_size = input_size
        self.backbone = create_backbone(backbone, pretrained=pretrained)
        channels, stride = self.backbone.channels[-1], self.backbone.strides[-1]
        if input_size % stride:
            raise ValueError(f"input_size {input_size} must be a multiple of the backbone's "
                             f"stride {stride}")
        regressor = torch.from_numpy(joint_regressor())
        self.head = ReJSHandHead(channels, input_size // stride, regressor)
        self.scores = ScoreHead(channels)
        if getattr(self.backbone, "dense_heads", None) is not None:  # pretrained MediaPipe
            self.head.keypoints_2d.init_from_mediapipe(self.backbone)
            self.scores.init_from_mediapipe(self.backbone)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = self.backbone(images)[-1]
        outputs = self.head(feature)
        # u = x_px / (S - 1): (0, 0) is the top-left pixel centre, 1 the bottom-right one.
        outputs["joints_2d"] = outputs["uv"] * (self.input_size - 1)
        outputs.update(self.scores(feature))
        return outputs

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 4-7: k_2D L_J2D + k_3D L_J3D + k_V L_V, L1 per point summed over coordinates
        (``masked_l1`` averages them, hence the factor D). Vertices only when the batch has
        them (the synthetic stream does; FreiHAND-format data may not)."""
        valid = batch.get("joint_valid")
        uv_target = batch["joints_2d"] / (self.input_size - 1)
        parts = {
            "joints_2d": 2 * masked_l1(outputs["uv"], uv_target, valid),
            "joints_3d": 3 * masked_l1(outputs["joints_3d"], batch["joints_3d"], valid),
        }
        if "vertices" in batch:
            parts["vertices"] = 3 * masked_l1(outputs["vertices"], batch["vertices"])
        total = sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())
        return total, {f"l1_{k}": float(v.detach()) for k, v in parts.items()}


# Configurations. "paper": FastViT-MA36 at 224 px (Sec. IV-B). "realtime": the MediaPipe hand
# landmark trunk at 224 px (its own input size; real-image pretrained with
# pretrained="mediapipe"), small enough for >= 15 FPS on 2 CPU cores.
CONFIGS: dict[str, dict] = {
    "paper": {"backbone": "fastvit_ma36", "input_size": 224},
    "realtime": {"backbone": "mediapipe", "input_size": 224},
}

# Training as in the paper (Sec. IV-B): Adam, lr 5e-4 for the first 100 of 200 epochs, then
# 5e-5 (a step at half of the schedule, which the trainer scales to its step budget). Batch
# size 64 and gradient clipping at norm 1 are the release's (cfg.py); the paper states neither.
TRAINING: dict = {
    "optimizer": "adam",
    "lr": 5e-4,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": (0.5,),
    "gamma": 0.1,
    "epochs": 200,
    "batch_size": 64,
    "grad_clip": 1.0,
    "loss_weights": dict(LOSS_WEIGHTS),
}


def build_net(config: str = "realtime", pretrained: str | None = None) -> ReJSHandNet:
    """The ReJSHand network of ``config`` (see ``CONFIGS``); ``pretrained`` is passed to the
    backbone (``"mediapipe"`` for the realtime config's real-image pretrained trunk)."""
    return ReJSHandNet(**config_values("rejshand", CONFIGS, config), pretrained=pretrained)


@register_model
def rejshand(**overrides) -> SeedEstimator:
    """ReJSHand behind the estimator interface. Overrides: config ("realtime" | "paper"),
    checkpoint (path; default the shipped one), backend, num_threads, backend options."""
    return load_seed_estimator("rejshand", build_net, CONFIGS, **overrides)
