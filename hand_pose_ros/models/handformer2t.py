"""Handformer2T (Zhang and Kong, seed paper 004): two interacting hands from one RGB crop with
two hand-level tokens, a coarse predictor and a pose-query-enhancement (PQE) refiner.

Module by module (paper section in brackets), with the choices the paper leaves open:

- **Backbone** [4.1]: ResNet-50 ("paper"); "realtime" uses the MediaPipe hand-landmark trunk
  (2.6 M parameters, real-image pretrained with ``pretrained="mediapipe"``) at 160 px, since
  even ResNet-18 (11.2 M) plus the head would exceed the 50 MB a shipped checkpoint may have.
  Maps at strides 4..32 (``models.backbones``). Each of the N = 3 coarse-to-fine stages reads
  one map: the coarse predictor the stride-32 map, the two refiners the stride-16 and stride-8
  maps (the paper says "N stages" and "F_i" without fixing N or the maps).
- **Feature extractor** [3.1, ``FeatureVector``]: f_i = [average pool of F_i (c_i),
  flatten of c~_i sampled channels, elements sampled from flatten(F_i)], length c* =
  ``feature_dim`` (4096 "paper", 2048 "realtime"; not given in the paper). The random
  channel/element choices are drawn once from a fixed seed and stored as buffers (they are
  part of the checkpoint). c~_i is chosen so that the flattened-channel part holds about c*/4
  elements.
- **Hand-level tokens** [3.2]: per stage a shallow MLP per hand (Linear c* -> d, GELU,
  Linear d -> d), token dim d = 256, plus a learnable positional encoding per hand.
- **Coarse predictor** [3.3]: L = 2 multi-head self-attention layers over the two tokens, then a
  per-hand output MLP giving p^(1) and u^(1).
- **Refiner with PQE** [3.4]: for stages 2..N, E' = E_i + MLP(p^(i-1)) + P_i -> MHSA; the
  queries come from keypoint-guided feature fusion (``KeypointFeatures``: a 3 x 3 patch of
  c~ = 8 sampled channels around each of the 2J projected keypoints, bilinear, one feature
  cell apart, flattened per hand and concatenated with the average-pooled map) through a per-hand
  MLP; cross-attention MultiHead(Q, E'', E''); per-hand output MLPs. Each refiner predicts a
  residual on the previous stage's (detached) pose, as iterative refiners usually do
  (Poseur, DETR's box refinement); the paper does not say.
- Attention layers are exactly Eq. 9-11 and 17 (multi-head attention, 8 heads, the common
  choice at d = 256 since DETR) with a residual connection and LayerNorm; no feed-forward
  block, which the equations do not have and which the paper's model sizes leave no room for.
  With these choices the full model (without the training-only flows) has 35.3 M parameters
  with ResNet-50 and 32.5 M with ResNet-34 at d = 256 (paper, Table 5: 35.9 M and 31.7 M).
- **Pose representation**: the paper's p in R^(2J x 3) is projected to the image by a camera
  matrix (its stated limitation). Our crops come without a camera (the estimator takes crops
  only) and the standard outputs need crop pixels and metric root-relative joints, so each
  joint's p is 5-D: (u, v) crop coordinates normalised to [-1, 1] (pixel edges; what the
  keypoint-guided fusion samples at, so the projection needs no camera) and (x, y, z) root
  relative in decimetres (so that residuals are O(1) for the flow). u^(i) is one uncertainty
  per joint (R^(2J x 1), sigmoid, as RLE).
- **Losses** [3.5]: RLE (Li et al. 2021) per stage with its own RealNVP flow (training only:
  ``forward`` never calls the flows, so they are not in the exported graph):
  -log P = -log G(x_bar) - log L(x_bar) + D log u with x_bar = (p^g - p) / u, L a unit-variance
  Laplace per dimension, G the flow density; MMD^2 between the batch's coarse poses p^(1) and
  ground truths with a Gaussian kernel (bandwidth: median pairwise distance), weight
  lambda_1 = 10.
- **Root offset** (ours, for teleoperation; the paper gives root-relative joints only): an MLP
  on the two final tokens gives the left wrist minus the right wrist (metres, crop camera axes),
  trained with ``twohand.root_offset_loss`` (weight 10, i.e. in decimetres like the joints).
- Hand slots: 0 right, 1 left (the project's order; the paper lists left first).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import nn

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
POSE_DIMS = 5  # (u, v) normalised crop coordinates, (x, y, z) root-relative decimetres
DECIMETRE = 10.0  # metres -> pose units
KPT_CHANNELS = 8  # c~ of the keypoint-guided features
NUM_HEADS = 8
COARSE_LAYERS = 2  # L
NUM_STAGES = 3  # N: coarse + 2 refiners
FLOW_LAYERS = 6  # RealNVP coupling layers per stage (RLE's release uses 6)
FLOW_HIDDEN = 64
MMD_WEIGHT = 10.0  # lambda_1
ROOT_OFFSET_WEIGHT = 10.0
SAMPLING_SEED = 2024  # fixed draw of the sampled channels/elements

CONFIGS: dict[str, dict] = {
    "paper": {"backbone": "resnet50", "input_size": 256, "dim": 256, "feature_dim": 4096},
    "realtime": {"backbone": "mediapipe", "input_size": 160, "dim": 256, "feature_dim": 2048},
}

# Training as in the paper (4.1): Adam, lr 1e-3, step decay by 4 every 80 of 270 epochs (the
# trainer scales the milestones to its step budget). Batch size and clipping: not stated;
# 32 and none are our choices.
TRAINING: dict = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": (80 / 270, 160 / 270, 240 / 270),
    "gamma": 0.25,
    "epochs": 270,
    "batch_size": 32,
    "grad_clip": None,
    "loss_weights": {"rle": 1.0, "mmd": MMD_WEIGHT, "root_offset": ROOT_OFFSET_WEIGHT},
}


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """The paper's "shallow MLP": Linear, GELU, Linear."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.GELU(), nn.Linear(hidden, cout))


class FeatureVector(nn.Module):
    """Section 3.1: a map F (N, c, h, w) -> f (N, ``length``) = [avg pool, flatten of sampled
    channels (about a quarter of ``length``), sampled elements of flatten(F)]. Samples are
    drawn once (fixed seed)."""

    def __init__(self, channels: int, height: int, width: int, length: int, seed: int):
        super().__init__()
        cells = height * width
        sampled = max(1, min(channels, length // 4 // cells))
        rest = length - channels - sampled * cells
        if rest < 0:
            raise ValueError(f"a {channels} x {height} x {width} map does not fit a feature "
                             f"vector of {length}; raise feature_dim")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("channel_index", torch.randperm(channels, generator=gen)[:sampled])
        self.register_buffer("element_index",
                             torch.randperm(channels * cells, generator=gen)[:rest])

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean(dim=(2, 3))
        flat_channels = fmap.index_select(1, self.channel_index).flatten(1)
        elements = fmap.flatten(1).index_select(1, self.element_index)
        return torch.cat([pooled, flat_channels, elements], dim=1)


class KeypointFeatures(nn.Module):
    """Section 3.4, keypoint-guided feature fusion: per hand, 3 x 3 patches of ``KPT_CHANNELS``
    sampled channels around its J keypoints (bilinear, one feature cell apart) flattened and
    concatenated with the average-pooled map: (N, 2, 9 J c~ + c)."""

    def __init__(self, channels: int, height: int, width: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        count = min(KPT_CHANNELS, channels)
        self.register_buffer("channel_index", torch.randperm(channels, generator=gen)[:count])
        steps = torch.tensor([-1.0, 0.0, 1.0])
        dy, dx = torch.meshgrid(steps, steps, indexing="ij")
        # Offsets of one feature cell in grid_sample's normalised coordinates (x, y).
        offsets = torch.stack([dx.flatten() * 2.0 / width, dy.flatten() * 2.0 / height], -1)
        self.register_buffer("offsets", offsets, persistent=False)
        self.out_dim = 9 * NUM_JOINTS * count + channels

    def forward(self, fmap: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """fmap (N, c, h, w); uv (N, 2, J, 2) normalised crop coordinates -> (N, 2, out_dim)."""
        n = fmap.shape[0]
        sampled = fmap.index_select(1, self.channel_index)
        # Far-off guesses (early training) sample zeros instead of producing huge coordinates.
        grid = uv.clamp(-1.5, 1.5)[:, :, :, None, :] + self.offsets  # (N, 2, J, 9, 2)
        patches = F.grid_sample(sampled, grid.reshape(n, HANDS * NUM_JOINTS * 9, 1, 2),
                                mode="bilinear", padding_mode="zeros", align_corners=False)
        # (N, c~, 2 J 9, 1) -> (N, 2, J 9 c~)
        patches = patches.reshape(n, -1, HANDS, NUM_JOINTS * 9).permute(0, 2, 3, 1).flatten(2)
        pooled = fmap.mean(dim=(2, 3))[:, None, :].expand(-1, HANDS, -1)
        return torch.cat([patches, pooled], dim=2)


class Attention(nn.Module):
    """MultiHead(Q, K, V) (Eq. 11) with a residual connection on Q and LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, NUM_HEADS, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        memory = query if memory is None else memory
        return self.norm(query + self.attn(query, memory, memory, need_weights=False)[0])


class PerHand(nn.Module):
    """One module per hand slot (right, left) applied to (N, 2, ...) inputs slot by slot."""

    def __init__(self, make):
        super().__init__()
        self.hands = nn.ModuleList([make() for _ in range(HANDS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x[:, h]) for h, m in enumerate(self.hands)], dim=1)


class Stage(nn.Module):
    """One coarse-to-fine stage: hand tokens from its map, attention, per-hand (p, u) heads.
    Stage 0 is the coarse predictor (Eq. 7-12); later stages are refiners (Eq. 13-17)."""

    def __init__(self, channels: int, height: int, width: int, dim: int, feature_dim: int,
                 index: int):
        super().__init__()
        self.refine = index > 0
        self.features = FeatureVector(channels, height, width, feature_dim,
                                      SAMPLING_SEED + 2 * index)
        self.tokens = PerHand(lambda: mlp(feature_dim, dim, dim))
        self.position = nn.Parameter(torch.randn(1, HANDS, dim) * 0.02)
        out = NUM_JOINTS * (POSE_DIMS + 1)
        self.head = PerHand(lambda: mlp(dim, dim, out))
        if self.refine:
            self.pose_embed = mlp(NUM_JOINTS * POSE_DIMS, dim, dim)
            self.self_attn = Attention(dim)
            self.keypoints = KeypointFeatures(channels, height, width,
                                              SAMPLING_SEED + 2 * index + 1)
            self.queries = PerHand(lambda: mlp(self.keypoints.out_dim, dim, dim))
            self.cross_attn = Attention(dim)
        else:
            self.layers = nn.ModuleList([Attention(dim) for _ in range(COARSE_LAYERS)])

    def forward(self, fmap: torch.Tensor, previous: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fmap (N, c, h, w); previous pose (N, 2, J, 5) or None -> pose (N, 2, J, 5),
        uncertainty (N, 2, J) in (0, 1), tokens (N, 2, d)."""
        f = self.features(fmap)
        tokens = self.tokens(f[:, None, :].expand(-1, HANDS, -1)) + self.position
        if self.refine:
            tokens = self.self_attn(tokens + self.pose_embed(previous.flatten(2)))
            queries = self.queries(self.keypoints(fmap, previous[..., :2]))
            tokens = self.cross_attn(queries, tokens)
        else:
            for layer in self.layers:
                tokens = layer(tokens)
        out = self.head(tokens).unflatten(2, (NUM_JOINTS, POSE_DIMS + 1))
        pose = out[..., :POSE_DIMS]
        if self.refine:
            pose = previous + pose
        return pose, torch.sigmoid(out[..., POSE_DIMS]) + 1e-6, tokens


class RealNVP(nn.Module):
    """RLE's normalising flow: ``FLOW_LAYERS`` affine couplings with alternating masks over
    the ``dims`` coordinates of one joint's normalised residual, standard normal prior."""

    def __init__(self, dims: int = POSE_DIMS):
        super().__init__()
        masks = torch.stack([torch.arange(dims) % 2 == (k % 2) for k in range(FLOW_LAYERS)])
        self.register_buffer("masks", masks.float(), persistent=False)

        def net(final: nn.Module) -> nn.Sequential:
            return nn.Sequential(nn.Linear(dims, FLOW_HIDDEN), nn.LeakyReLU(),
                                 nn.Linear(FLOW_HIDDEN, FLOW_HIDDEN), nn.LeakyReLU(),
                                 nn.Linear(FLOW_HIDDEN, dims), final)

        self.scale = nn.ModuleList([net(nn.Tanh()) for _ in range(FLOW_LAYERS)])
        self.shift = nn.ModuleList([net(nn.Identity()) for _ in range(FLOW_LAYERS)])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(M, dims) -> (M,) log density."""
        z, log_det = x, x.new_zeros(x.shape[0])
        for k in reversed(range(FLOW_LAYERS)):
            mask = self.masks[k]
            kept = mask * z
            s = self.scale[k](kept) * (1 - mask)
            t = self.shift[k](kept) * (1 - mask)
            z = (1 - mask) * (z - t) * torch.exp(-s) + kept
            log_det = log_det - s.sum(dim=1)
        prior = -0.5 * (z ** 2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return prior + log_det


def rle_loss(pred: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor,
             valid: torch.Tensor, flow: RealNVP) -> torch.Tensor:
    """Eq. 18 averaged over valid joints. pred/target (..., J, D), sigma (..., J),
    valid (..., J) bool."""
    pred, sigma, target = pred[valid].float(), sigma[valid].float(), target[valid].float()
    if len(pred) == 0:
        return flow.masks.sum() * 0.0
    bar = (target - pred) / sigma[:, None]
    dims = pred.shape[1]
    log_g = flow.log_prob(bar)
    log_laplace = (-math.log(math.sqrt(2.0)) - math.sqrt(2.0) * bar.abs()).sum(dim=1)
    return (-log_g - log_laplace + dims * torch.log(sigma)).mean()


def mmd_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 20: squared MMD between two sets of (M, K) samples, Gaussian kernel whose bandwidth
    is the median pairwise distance of the pooled set (detached; the common heuristic)."""
    if len(pred) < 2:
        return pred.sum() * 0.0
    both = torch.cat([pred, target]).float()
    dist2 = torch.cdist(both, both).pow(2)
    bandwidth2 = dist2.detach()[dist2.detach() > 0].median().clamp(min=1e-6)
    kernel = torch.exp(-dist2 / (2 * bandwidth2))
    m = len(pred)
    return kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2 * kernel[:m, m:].mean()


class Handformer2TNet(TwoHandSeedNet):
    """Handformer2T (see the module docstring). Input (N, 3, S, S) RGB in [0, 1]; outputs the
    two-hand standard keys plus ``stage_pose`` (N, NUM_STAGES, 2, 21, 5) and ``stage_sigma``
    (N, NUM_STAGES, 2, 21) for the losses."""

    root_offset_weight = ROOT_OFFSET_WEIGHT

    def __init__(self, backbone: str = "resnet50", input_size: int = 256, dim: int = 256,
                 feature_dim: int = 4096, pretrained: str | None = None):
        super().__init__()
        self.input_size = input_size
        self.num_vertices = None
        self.backbone = create_backbone(backbone, pretrained=pretrained)
        for stride in self.backbone.strides:
            if input_size % stride:
                raise ValueError(f"input size {input_size} is not a multiple of the backbone "
                                 f"stride {stride}")
        # Coarse predictor on the coarsest map, refiners on the finer ones.
        self.stage_maps = [len(self.backbone.channels) - 1 - i for i in range(NUM_STAGES)]
        self.stages = nn.ModuleList([
            Stage(self.backbone.channels[m], input_size // self.backbone.strides[m],
                  input_size // self.backbone.strides[m], dim, feature_dim, i)
            for i, m in enumerate(self.stage_maps)])
        self.score = TwoHandScoreHead(self.backbone.channels[-1])
        self.root_head = mlp(HANDS * dim, dim, 3)
        # Training only: one RLE flow per stage; never called by forward (not exported).
        self.flows = nn.ModuleList([RealNVP() for _ in range(NUM_STAGES)])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone(images)
        pose, poses, sigmas = None, [], []
        for stage, m in zip(self.stages, self.stage_maps, strict=True):
            pose, sigma, tokens = stage(maps[m], None if pose is None else pose.detach())
            poses.append(pose)
            sigmas.append(sigma)
        xyz = pose[..., 2:] / DECIMETRE
        s = self.input_size
        return {
            "joints_3d": xyz - xyz[:, :, :1],
            "joints_2d": (pose[..., :2] + 1.0) * (s / 2.0) - 0.5,
            "hand_logit": self.score(maps[-1]),
            "root_offset": self.root_head(tokens.flatten(1)) / DECIMETRE,
            "stage_pose": torch.stack(poses, dim=1),
            "stage_sigma": torch.stack(sigmas, dim=1),
        }

    def target_pose(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Ground truth in the pose representation: (N, 2, J, 5)."""
        s = self.input_size
        uv = (batch["joints_2d"].float() + 0.5) * (2.0 / s) - 1.0
        return torch.cat([uv, batch["joints_3d"].float() * DECIMETRE], dim=-1)

    def pose_loss(self, outputs: dict[str, torch.Tensor],
                  batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """RLE on every stage + lambda_1 MMD on the coarse stage, per present hand."""
        target = self.target_pose(batch)
        valid = hand_joint_mask(batch)
        parts: dict[str, float] = {}
        rle = target.new_zeros(())
        for i, flow in enumerate(self.flows):
            term = rle_loss(outputs["stage_pose"][:, i], outputs["stage_sigma"][:, i], target,
                            valid, flow)
            parts[f"rle_{i}"] = float(term.detach())
            rle = rle + term
        present = batch["hand_present"] > 0.5
        weight = valid[..., None].float()  # unlabelled joints count as matching
        coarse = (outputs["stage_pose"][:, 0] * weight)[present].flatten(1)
        mmd = mmd_loss(coarse, (target * weight)[present].flatten(1))
        parts["mmd"] = float(mmd.detach())
        with torch.no_grad():
            error = (outputs["joints_3d"] - batch["joints_3d"]).norm(dim=-1)
            parts["mpjpe_mm"] = float(1e3 * error[valid].mean()) if bool(valid.any()) else 0.0
        return rle + MMD_WEIGHT * mmd, parts


def build_net(config: str = "realtime", pretrained: str | None = None) -> Handformer2TNet:
    """The Handformer2T network of ``config`` (``CONFIGS``); ``pretrained`` goes to the backbone
    (``"mediapipe"`` for the realtime config's real-image pretrained trunk; the ResNets have
    none here)."""
    return Handformer2TNet(**config_values("handformer2t", CONFIGS, config),
                           pretrained=pretrained)


@register_model
def handformer2t(**overrides) -> TwoHandEstimator:
    """Handformer2T behind the estimator interface (two hands per crop). Overrides: config
    ("realtime" | "paper"), checkpoint (path; default the shipped one), backend, num_threads,
    backend options."""
    return load_seed_estimator("handformer2t", build_net, CONFIGS,
                               estimator_class=TwoHandEstimator, **overrides)
