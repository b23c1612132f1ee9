"""The seed-model base: score losses and masking in ``SeedNet.training_loss``, the estimator's
input checks, checkpoint metadata checks, ``--ship`` size limit, and a model registry that
survives a model module failing to import."""

import numpy as np
import pytest
import torch
from torch import nn

from hand_pose_ros.models import base
from hand_pose_ros.models.seed import (
    CheckpointError,
    ScoreHead,
    SeedEstimator,
    SeedNet,
    read_checkpoint,
    save_checkpoint,
)


class ConstantNet(SeedNet):
    """Outputs learnable constants; records the crops its pose loss was asked about."""

    input_size = 16

    def __init__(self):
        super().__init__()
        self.joints = nn.Parameter(torch.zeros(21, 3))
        self.head = ScoreHead(3)
        self.pose_batches: list[int] = []

    def forward(self, images):
        n = images.shape[0]
        return {"joints_3d": self.joints.unsqueeze(0).repeat(n, 1, 1),
                "joints_2d": torch.zeros(n, 21, 2), **self.head(images)}

    def pose_loss(self, outputs, batch):
        self.pose_batches.append(len(batch["joints_3d"]))
        loss = (outputs["joints_3d"] - batch["joints_3d"]).abs().mean()
        return loss, {"l1": float(loss.detach())}


def batch(present):
    n = len(present)
    return {"image": torch.rand(n, 3, 16, 16), "joints_3d": torch.rand(n, 21, 3),
            "joint_valid": torch.ones(n, 21, dtype=torch.bool),
            "hand_present": torch.tensor(present, dtype=torch.float32),
            "right": torch.ones(n)}


def test_pose_loss_sees_only_crops_with_a_hand():
    net = ConstantNet()
    b = batch([1, 0, 1, 0])
    loss, parts = net.training_loss(net(b["image"]), b)
    assert net.pose_batches == [2]
    assert set(parts) >= {"hand_bce", "right_bce", "pose", "l1", "total"}
    loss.backward()
    assert net.joints.grad.abs().sum() > 0


def test_all_negative_batch_trains_presence_only():
    net = ConstantNet()
    b = batch([0, 0])
    loss, parts = net.training_loss(net(b["image"]), b)
    assert net.pose_batches == [] and "pose" not in parts
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(parts["hand_bce"])


def test_estimator_rejects_bad_crops():
    estimator = SeedEstimator("const", ConstantNet(), backend="torch", num_threads=1)
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\)"):
        estimator.estimate(np.zeros((1, 20, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        estimator.estimate(np.zeros((1, 16, 16, 3), np.float32))
    empty = estimator.estimate(np.zeros((0, 16, 16, 3), np.uint8))
    assert len(empty) == 0 and empty.joints_3d.shape == (0, 21, 3)
    result = estimator.estimate(np.full((2, 16, 16, 3), 128, np.uint8))
    assert result.scores.shape == (2,) and np.all((result.scores > 0) & (result.scores < 1))


def test_checkpoint_of_another_model_or_config_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", ConstantNet(), "const", "tiny",
                           {"sizes": (1, 2)}, {"note": object()})
    ckpt = read_checkpoint(path, model="const", config="tiny")
    assert ckpt["config_values"] == {"sizes": [1, 2]}  # stored as plain data
    with pytest.raises(CheckpointError, match="holds model 'const', not 'other'"):
        read_checkpoint(path, model="other")
    with pytest.raises(CheckpointError, match="holds config 'tiny', not 'paper'"):
        read_checkpoint(path, config="paper")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a format-1"):
        read_checkpoint(tmp_path / "foreign.pt")


def test_ship_refuses_checkpoints_over_50_mb(tmp_path, monkeypatch):
    from hand_pose_ros.models import seed
    from hand_pose_ros.train.cli import ship

    monkeypatch.setattr(seed, "CHECKPOINT_DIR", tmp_path / "shipped")
    small = tmp_path / "m-c.pt"
    small.write_bytes(b"weights")
    small.with_suffix(".md").write_text("# card")
    assert ship(small).read_bytes() == b"weights"
    big = tmp_path / "big-c.pt"
    with open(big, "wb") as f:
        f.truncate(51 * 2**20)  # sparse: no real 51 MB written
    with pytest.raises(ValueError, match="more than the 50 MB"):
        ship(big)


def test_list_models_survives_a_model_module_that_fails_to_import(monkeypatch):
    monkeypatch.setattr(base, "BUILTIN_MODEL_MODULES",
                        (*base.BUILTIN_MODEL_MODULES, "hand_pose_ros.models.not_written_yet"))
    monkeypatch.setattr(base, "_FAILED_MODULES", {})
    assert "mediapipe" in base.list_models()
    with pytest.raises(ValueError, match="not_written_yet failed to import"):
        base.create_model("not_written_yet")
