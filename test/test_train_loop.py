"""The training loop on a tiny SeedNet defined here: the loss falls, a resumed run continues
at the right step with the same RNG (bit-identical to an uninterrupted run), the final
checkpoint loads into an estimator, and bad checkpoints give clear errors."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from hand_pose_ros.models.seed import (
    CheckpointError,
    ScoreHead,
    SeedNet,
    load_seed_estimator,
    masked_l1,
)
from hand_pose_ros.train.loop import LAST, ModelSpec, TrainOptions, lr_factor, train
from hand_pose_ros.train.report import read_curves

SIZE = 32
CONFIGS = {"tiny": {"width": 8}}
TRAINING = {"optimizer": "adam", "lr": 2e-2, "schedule": "step", "milestones": (0.8,),
            "gamma": 0.5, "grad_clip": 5.0}


class TinyNet(SeedNet):
    """Conv + pooling + linear heads; dropout so that resuming must restore the RNG."""

    input_size = SIZE

    def __init__(self, width: int = 8):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.dropout = nn.Dropout(0.2)
        self.joints = nn.Linear(width, 21 * 5)
        self.score_head = ScoreHead(width)

    def forward(self, images):
        feature = self.backbone(images)
        out = self.joints(self.dropout(feature.mean(dim=(2, 3)))).view(-1, 21, 5)
        # 2D joints start near the top-left corner, far from the hands: a loss to fall.
        return {"joints_3d": 0.05 * out[..., :3], "joints_2d": SIZE * out[..., 3:],
                **self.score_head(feature)}

    def pose_loss(self, outputs, batch):
        l3d = masked_l1(outputs["joints_3d"], batch["joints_3d"], batch["joint_valid"])
        l2d = masked_l1(outputs["joints_2d"], batch["joints_2d"], batch["joint_valid"]) / SIZE
        return 10 * l3d + l2d, {"joints_3d": float(l3d.detach()),
                                "joints_2d": float(l2d.detach())}


def build_net(config="tiny", pretrained=None):
    del pretrained
    return TinyNet(**CONFIGS[config])


def spec(pretrained=None):
    return ModelSpec(name="tiny", config="tiny", config_values=CONFIGS["tiny"],
                     build=build_net, training=TRAINING, pretrained=pretrained)


def options(out, steps, **kwargs):
    kwargs = {"batch_size": 4, "num_workers": 0, "eval_samples": 8, "log_every": 1,
              "eval_every": 100, **kwargs}
    return TrainOptions(steps=steps, out=out, **kwargs)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-reproducible CPU math, and a fair share of the cores
    yield
    torch.set_num_threads(threads)


def test_loss_decreases_on_synthetic_stream(tmp_path):
    card = train(spec(), options(tmp_path, 40, checkpoint_every=40))
    records = [r for r in read_curves(tmp_path / "curves.jsonl") if "total" in r]
    assert len(records) == 40
    # The pose loss has room to fall in 40 steps; the presence/handedness BCE hardly moves
    # that fast, so the total falls less.
    pose, total = ([r[key] for r in records] for key in ("pose", "total"))
    assert np.mean(pose[-8:]) < 0.75 * np.mean(pose[:8])
    assert np.mean(total[-8:]) < np.mean(total[:8])
    assert card["steps"] == 40 and card["samples_seen"] == 160
    assert np.isfinite(card["metrics"]["eval_pa_mpjpe_mm"])
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "tiny-tiny.json").read_text())["model"] == "tiny"
    card_text = (tmp_path / "tiny-tiny.md").read_text()
    assert "| steps x batch x processes | 40 x 4 x 1" in card_text
    assert "hand-pose eval --model tiny --data synthetic:test`" in card_text  # one-hand split


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(spec(), options(straight, 6))
    assert train(spec(), options(split, 6, stop_after=3)) == {"stopped": True, "steps": 3}
    assert torch.load(split / LAST, weights_only=True)["step"] == 3
    train(spec(), options(split, 6, resume=split))
    a = torch.load(straight / "tiny-tiny.pt", weights_only=True)["state_dict"]
    b = torch.load(split / "tiny-tiny.pt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in read_curves(split / "curves.jsonl") if "total" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    state = torch.load(split / LAST, weights_only=True)
    assert state["step"] == 6
    straight_rng = torch.load(straight / LAST, weights_only=True)["rng"]["torch"]
    assert state["rng"]["torch"].equal(straight_rng)


def test_frozen_backbone_keeps_its_weights_while_the_heads_learn(tmp_path):
    torch.manual_seed(1)  # train() seeds with opts.seed before building: the same initial net
    initial = build_net().state_dict()
    card = train(spec("test"), options(tmp_path / "frozen", 6, freeze_backbone=True))
    trained = torch.load(tmp_path / "frozen" / "tiny-tiny.pt", weights_only=True)["state_dict"]
    for key, value in initial.items():
        assert torch.equal(trained[key], value) == key.startswith("backbone."), key
    assert card["backbone_frozen"] is True
    card_text = (tmp_path / "frozen" / "tiny-tiny.md").read_text()
    assert "| backbone weights | test (frozen) |" in card_text
    with pytest.raises(ValueError, match="--pretrained"):
        train(spec(), options(tmp_path / "random", 2, freeze_backbone=True))
    # A run resumed with the other setting trains other parameters: refused, with the reason.
    train(spec("test"), options(tmp_path / "run", 4, stop_after=2))
    with pytest.raises(CheckpointError, match="--freeze-backbone"):
        train(spec("test"), options(tmp_path / "run", 4, resume=tmp_path / "run",
                                    freeze_backbone=True))


def test_checkpoint_round_trip_through_estimator(tmp_path):
    train(spec(), options(tmp_path, 2))
    path = tmp_path / "tiny-tiny.pt"
    estimator = load_seed_estimator("tiny", build_net, CONFIGS, config="tiny", checkpoint=path,
                                    backend="torch", num_threads=1)
    net = build_net().eval()
    net.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    crops = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    result = estimator.estimate(crops)
    with torch.no_grad():
        expected = net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(result.joints_3d, expected["joints_3d"].numpy(), atol=1e-6)
    np.testing.assert_allclose(result.scores, torch.sigmoid(expected["hand_logit"]).numpy(),
                               atol=1e-6)
    assert result.vertices is None and result.joint_confidence.shape == (3, 21)


def test_bad_checkpoints_and_resume_folders_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="hand-pose train"):
        load_seed_estimator("tiny", build_net, CONFIGS, config="tiny",
                            checkpoint=tmp_path / "missing.pt", backend="torch")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_seed_estimator("tiny", build_net, CONFIGS, config="tiny", checkpoint=corrupt,
                            backend="torch")
    with pytest.raises(CheckpointError, match="no last.pt"):
        train(spec(), options(tmp_path / "new", 2, resume=tmp_path / "new"))
    train(spec(), options(tmp_path / "run", 2))
    last = tmp_path / "run" / LAST
    last.write_bytes(last.read_bytes()[:1000])  # truncated by a crash
    with pytest.raises(CheckpointError, match="corrupt"):
        train(spec(), options(tmp_path / "run", 4, resume=tmp_path / "run"))


def test_schedule_milestones_are_fractions_of_the_run():
    factor = lr_factor({"schedule": "step", "milestones": (1 / 3, 2 / 3), "gamma": 0.1}, 300)
    assert [factor(s) for s in (0, 99, 100, 199, 200, 299)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = lr_factor({"schedule": "constant", "warmup": 0.1}, 100)
    assert warm(0) == pytest.approx(0.1) and warm(9) == 1 and warm(50) == 1


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="--steps"):
        options(tmp_path, 0)
    with pytest.raises(ValueError, match="--amp"):
        train(spec(), options(tmp_path, 1, amp=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_training_on_gpu(tmp_path):
    card = train(spec(), options(tmp_path, 4, device="cuda", amp=True))
    assert card["amp"] and np.isfinite(card["metrics"]["eval_pa_mpjpe_mm"])


def test_dataset_stream_shards_shuffles_and_resizes():
    from hand_pose_ros.train.data import DatasetStream

    # The synthetic test split read as a dataset (training on it is refused elsewhere).
    def keys(rank, skip=0, count=6):
        stream = DatasetStream("synthetic:test", 48, seed=3, skip=skip, rank=rank,
                               world_size=2, shuffle_buffer=3)
        return [(s.key, s.image.shape) for s in itertools.islice(iter(stream), count)]

    rank0, rank1 = keys(0), keys(1)
    assert {shape for _, shape in rank0} == {(48, 48, 3)}
    assert not {k for k, _ in rank0} & {k for k, _ in rank1}  # disjoint shards
    assert [k for k, _ in rank0] != sorted(k for k, _ in rank0)  # shuffled
    assert keys(0, skip=2, count=4) == rank0[2:]  # a resumed run continues the sequence


def test_training_on_a_test_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="evaluation only"):
        options(tmp_path, 1, data="synthetic:test")


DDP_SCRIPT = """
import sys
from pathlib import Path
import torch
sys.path.insert(0, {test_dir!r})
from test_train_loop import options, spec
from hand_pose_ros.train.loop import train
torch.set_num_threads(1)
card = train(spec(), options(Path({out!r}), 3))
# One file per rank: the two processes' stdout would interleave.
rank = torch.distributed.get_rank()
Path({out!r}, f"rank{{rank}}.txt").write_text(str(card.get("samples_seen")))
"""


@pytest.mark.slow
def test_torchrun_launches_data_parallel_training(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(test_dir=str(Path(__file__).parent),
                                        out=str(tmp_path / "run")))
    repo = str(Path(__file__).resolve().parents[1])  # this checkout, not an installed copy
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "rank0.txt").read_text() == "24"  # 3 steps x 4 crops x 2 processes
    assert (run / "rank1.txt").read_text() == "None"  # only rank 0 writes the card
    assert (tmp_path / "run" / "tiny-tiny.pt").is_file()
