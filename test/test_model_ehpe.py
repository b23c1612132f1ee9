"""EHPE (hand_pose_ros.models.ehpe): outputs at both configurations, the stage-1 initialisation,
the two-stage gradient split, losses on real synthetic samples, ONNX parity, the estimator."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hand_pose_ros.data import synth
from hand_pose_ros.data.batch import collate_batch
from hand_pose_ros.data.synth import SynthConfig, render_sample
from hand_pose_ros.eval.metrics import pa_mpjpe
from hand_pose_ros.models.base import create_model
from hand_pose_ros.models.ehpe import (
    CONFIGS,
    JOINT_GROUPS,
    TRAINING,
    TW_JOINTS,
    build_net,
    compare_stages,
    init_matrix,
    per_group_errors,
)
from hand_pose_ros.models.seed import (
    CheckpointError,
    ExportWrapper,
    checkpoint_path,
    save_checkpoint,
)

# Full-model parameter counts (backbone + TW-stage + PG-stage + score head), as reported.
PARAMETERS = {"realtime": 3_588_668, "paper": 46_925_922}


@pytest.fixture(scope="module")
def realtime_net():
    torch.manual_seed(0)
    return build_net("realtime").eval()


@pytest.fixture(scope="module")
def samples():
    return [render_sample(5, i, SynthConfig(size=256), two_hands=False) for i in range(2)]


def _check_outputs(out: dict, n: int, config: str) -> None:
    expected = {"joints_3d": (n, 21, 3), "joints_2d": (n, 21, 2), "hand_logit": (n,),
                "right_logit": (n,), "joints_3d_stage1": (n, 21, 3),
                "joints_2d_stage1": (n, 21, 2), "tw_uvz": (n, 6, 3), "tw_xy": (n, 6, 2)}
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
        assert torch.isfinite(out[key]).all(), key
    assert out["tw_heatmaps"].shape[:3] == (n, CONFIGS[config]["hourglass_stacks"], 6)
    # Root-relative: the wrist is the origin, in both stages.
    assert out["joints_3d"][:, 0].abs().max() == 0
    assert out["joints_3d_stage1"][:, 0].abs().max() == 0
    # Soft-argmax keeps stage-1 pixels inside the crop.
    uv = out["tw_uvz"][..., :2]
    size = CONFIGS[config]["input_size"]
    assert uv.min() >= -0.5 and uv.max() <= size - 0.5


def test_realtime_forward_gives_standard_and_stage_outputs(realtime_net):
    with torch.no_grad():
        out = realtime_net(torch.rand(2, 3, 256, 256))
    _check_outputs(out, 2, "realtime")
    attention = out["attention"]  # (N, layers, heads, 21, 21), rows sum to 1
    assert attention.shape == (2, 2, 8, 21, 21)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 8, 21))


def test_refinement_starts_as_the_identity_of_stage_one(realtime_net):
    # The PG-stage's FC layers start at zero: before training the output is stage 1's.
    with torch.no_grad():
        out = realtime_net(torch.rand(1, 3, 256, 256))
    torch.testing.assert_close(out["joints_3d"], out["joints_3d_stage1"])
    torch.testing.assert_close(out["joints_2d"], out["joints_2d_stage1"])


def test_initialisation_puts_joints_on_the_wrist_to_tip_segment():
    matrix = init_matrix()
    torch.testing.assert_close(matrix.sum(1), torch.ones(21))  # affine combinations
    for slot, joint in enumerate(TW_JOINTS):
        assert matrix[joint, slot] == 1 and matrix[joint].abs().sum() == 1
    tw = torch.randn(1, 6, 3)
    joints = matrix @ tw
    for f in range(5):
        wrist, tip = tw[0, 0], tw[0, 1 + f]
        ratios = [float((joints[0, 1 + 4 * f + k] - wrist).norm() / (tip - wrist).norm())
                  for k in range(3)]
        assert 0 < ratios[0] < ratios[1] < ratios[2] < 1  # proximal to distal, in order
        direction = (joints[0, 1 + 4 * f + 1] - wrist) / (tip - wrist)
        torch.testing.assert_close(direction, direction[0].expand(3))  # collinear


def test_refinement_loss_does_not_reach_stage_one(samples):
    # The paper trains the PG-stage with the TW-stage frozen: its loss must not move stage 1.
    torch.manual_seed(0)
    net = build_net("realtime").train()
    batch = collate_batch(samples)
    out = net(batch["image"])
    (out["joints_3d"].sum() + out["joints_2d"].sum()).backward()  # any function of the output
    for module in (net.backbone, net.tw):
        assert all(p.grad is None or not p.grad.any() for p in module.parameters())
    assert any(p.grad is not None and p.grad.any() for p in net.pg.parameters())


def test_losses_are_finite_and_decrease_on_synthetic_samples(samples):
    torch.manual_seed(0)
    net = build_net("realtime").train()
    batch = collate_batch(samples)
    optimizer = torch.optim.Adam(net.parameters(), lr=TRAINING["lr"])
    history = []
    for _ in range(6):
        loss, parts = net.training_loss(net(batch["image"]), batch)
        assert torch.isfinite(loss)
        assert all(np.isfinite(v) for v in parts.values())
        history.append(parts)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for key in ("stage1", "stage2", "L_ED", "L_P"):
        assert history[-1][key] < history[0][key], key


def test_losses_ignore_invalid_joints(realtime_net, samples):
    batch = collate_batch(samples)
    with torch.no_grad():
        out = realtime_net(batch["image"])
    _, parts = realtime_net.pose_loss(out, batch)
    corrupted = dict(batch, joints_3d=batch["joints_3d"].clone(),
                     joint_valid=batch["joint_valid"].clone())
    corrupted["joints_3d"][:, 8] += 1.0  # index tip 1 m off, and marked unannotated
    corrupted["joint_valid"][:, 8] = False
    _, corrupted_parts = realtime_net.pose_loss(out, corrupted)
    _, clean_masked = realtime_net.pose_loss(out, dict(batch, joint_valid=corrupted["joint_valid"]))
    assert corrupted_parts["L_P"] == pytest.approx(clean_masked["L_P"])
    assert corrupted_parts["L_ED"] == pytest.approx(clean_masked["L_ED"])
    assert parts["L_P"] != clean_masked["L_P"]


def test_full_model_parameter_count_of_realtime(realtime_net):
    assert sum(p.numel() for p in realtime_net.parameters()) == PARAMETERS["realtime"]


def test_paper_config_outputs_and_parameter_count():
    net = build_net("paper").eval()
    assert net.backbone.channels[-1] == 2048  # ResNet-50's F, as the paper describes it
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS["paper"]
    with torch.no_grad():
        out = net(torch.rand(1, 3, 256, 256))
    _check_outputs(out, 1, "paper")
    assert out["tw_heatmaps"].shape[-2:] == (64, 64)  # a quarter of the input, as the paper


def test_per_group_errors_cover_every_joint_once():
    ids = sorted(j for group in JOINT_GROUPS.values() for j in group)
    assert ids == list(range(21))
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 21, 3))
    assert all(v < 1e-9 for v in per_group_errors(gt, gt).values())
    noisy = gt.copy()
    noisy[:, JOINT_GROUPS["TIP"]] += rng.normal(scale=0.1, size=(4, 5, 3))
    errors = per_group_errors(noisy, gt)
    assert errors["TIP"] == max(errors.values())


def test_compare_stages_reports_both_stages(realtime_net, samples):
    batch = collate_batch(samples)
    result = compare_stages(realtime_net, batch["image"], batch["joints_3d"].numpy())
    assert set(result) == {"stage1", "final"}
    for errors in result.values():
        assert set(errors) == {"PA-MPJPE", *JOINT_GROUPS}
        assert all(np.isfinite(v) and v > 0 for v in errors.values())
    # Untrained, the refinement is the identity (zero-initialised FC layers): same errors.
    assert result["final"] == pytest.approx(result["stage1"])


@pytest.mark.slow
def test_onnx_export_matches_torch():
    pytest.importorskip("onnxruntime")
    from hand_pose_ros.runtime import create_backend

    torch.manual_seed(0)
    net = build_net("realtime").eval()
    for head in (net.pg.spi.head, net.pg.fem.head):  # non-zero, so the PG-stage is checked
        torch.nn.init.normal_(head.weight, std=0.05)
    wrapper = ExportWrapper(net).eval()
    backend = create_backend("onnxruntime", wrapper, (torch.zeros(1, 3, 256, 256),),
                             num_threads=2)
    images = np.random.default_rng(0).random((3, 3, 256, 256), dtype=np.float32)  # any batch
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(images))
    for ref, got in zip(expected, backend(images), strict=True):
        assert np.abs(ref.numpy() - got).max() < 1e-3


def test_estimator_runs_a_saved_checkpoint(tmp_path, realtime_net, samples):
    path = save_checkpoint(tmp_path / "ehpe-realtime.pt", realtime_net, "ehpe", "realtime",
                           CONFIGS["realtime"], card={})
    estimator = create_model("ehpe", config="realtime", checkpoint=path, backend="torch",
                             num_threads=1)
    crops = np.stack([s.image for s in samples])
    result = estimator.estimate(crops)
    assert result.joints_3d.shape == (2, 21, 3) and result.joints_2d.shape == (2, 21, 2)
    assert result.vertices is None  # EHPE predicts joints; its mesh comes from the fit
    assert np.isfinite(result.joints_3d).all()
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    with torch.no_grad():
        out = realtime_net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(result.joints_3d, out["joints_3d"].numpy(), atol=1e-5)


def test_missing_checkpoint_names_the_training_command(tmp_path):
    with pytest.raises(CheckpointError, match="hand-pose train"):
        create_model("ehpe", checkpoint=tmp_path / "none.pt", backend="torch")


def test_unknown_config_is_rejected():
    with pytest.raises(ValueError, match="realtime"):
        build_net("tiny")


@pytest.mark.skipif(not checkpoint_path("ehpe", "realtime").is_file(),
                    reason="no shipped ehpe-realtime checkpoint (hand-pose train ... --ship)")
def test_shipped_checkpoint_beats_an_untrained_net():
    samples = list(synth.test_split_samples(kind="single", limit=8))
    crops = np.stack([s.image for s in samples])
    gt = np.stack([s.joints_3d[0] - s.joints_3d[0, :1] for s in samples])
    trained = create_model("ehpe", backend="torch", num_threads=1).estimate(crops)
    assert np.isfinite(trained.joints_3d).all()
    torch.manual_seed(0)
    with torch.no_grad():
        untrained = build_net("realtime").eval()(
            torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)["joints_3d"].numpy()
    assert pa_mpjpe(trained.joints_3d, gt) < pa_mpjpe(untrained.astype(np.float64), gt)


def test_stage_comparison_script_reports_the_shipped_checkpoint(tmp_path, capsys):
    script = Path(__file__).resolve().parents[1] / "scripts" / "ehpe_stages.py"
    spec = importlib.util.spec_from_file_location("ehpe_stages", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--limit", "4", "--json", str(tmp_path / "stages.json")]) == 0
    table = capsys.readouterr().out
    assert "| stage 1 (baseline) |" in table and "| two stages (final) |" in table
    report = json.loads((tmp_path / "stages.json").read_text())
    assert report["crops"] == 4
    for stage in ("stage1", "final"):
        errors = report["errors_mm"][stage]
        assert set(errors) == {"PA-MPJPE", *JOINT_GROUPS}
        assert all(0 < v < 1000 for v in errors.values())  # millimetres, finite
