"""The synthetic stream (worker/rank splits), training batches, and the ``hand-pose synth`` CLI."""

import json

import numpy as np
import pytest

pytest.importorskip("moderngl", reason="moderngl (headless OpenGL) is not installed")
torch = pytest.importorskip("torch")

from hand_pose_ros.cli import main as cli_main  # noqa: E402
from hand_pose_ros.data import synth  # noqa: E402
from hand_pose_ros.data.batch import collate_batch  # noqa: E402
from hand_pose_ros.data.render import get_renderer  # noqa: E402
from hand_pose_ros.data.sample import read_shard  # noqa: E402
from hand_pose_ros.data.stream import SyntheticStream, make_loader  # noqa: E402
from hand_pose_ros.data.synth import SynthConfig, render_negative, render_sample  # noqa: E402

CONFIG = SynthConfig(size=64)


@pytest.fixture(scope="module", autouse=True)
def renderer():
    try:
        return get_renderer()
    except Exception as error:  # no EGL/Mesa on this machine
        pytest.skip(f"no headless OpenGL context (apt-get install libegl1 libgl1-mesa-dri): "
                    f"{error}")


def test_workers_and_ranks_split_the_indices_without_overlap_or_gaps():
    for world_size, num_workers in [(1, 1), (1, 3), (2, 2), (3, 1)]:
        taken = [i for rank in range(world_size) for worker in range(num_workers)
                 for i in SyntheticStream(0, CONFIG, start=5, count=23, rank=rank,
                                          world_size=world_size).indices(worker, num_workers)]
        assert sorted(taken) == list(range(5, 28)), (world_size, num_workers)


def test_a_sample_is_the_same_whichever_worker_or_rank_renders_it():
    whole = SyntheticStream(4, CONFIG, kind="mixed", negative_fraction=0.3, count=6)
    by_index = {i: whole.sample(i) for i in range(6)}
    assert [s.key for s in whole] == [f"4-{i}" for i in range(6)]
    for rank in range(2):
        part = SyntheticStream(4, CONFIG, kind="mixed", negative_fraction=0.3, count=6,
                               rank=rank, world_size=2)
        for worker in range(3):
            for i in part.indices(worker, 3):
                sample = part.sample(i)
                np.testing.assert_array_equal(sample.image, by_index[i].image)
                np.testing.assert_array_equal(sample.joints_3d, by_index[i].joints_3d)


@pytest.mark.slow  # two spawned workers import torch: seconds on 2 cores
def test_loader_with_spawned_workers_yields_the_stream_in_order():
    stream = SyntheticStream(2, CONFIG, count=8)
    loader = make_loader(stream, batch_size=2, num_workers=2)
    batches = list(loader)
    # Worker 0 holds indices 0, 2, 4, 6 and worker 1 holds 1, 3, 5, 7; the loader alternates.
    expected = [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert len(batches) == len(expected)
    for batch, indices in zip(batches, expected, strict=True):
        reference = collate_batch([stream.sample(i) for i in indices])
        for key, value in reference.items():
            torch.testing.assert_close(batch[key], value, rtol=0, atol=0, msg=key)


def test_single_hand_batch_has_the_documented_shapes_dtypes_and_root_relative_labels():
    samples = [render_sample(1, i, CONFIG, two_hands=False) for i in range(3)]
    samples.append(render_negative(1, 3, CONFIG))
    batch = collate_batch(samples)
    n, s = 4, CONFIG.size
    shapes = {"image": (n, 3, s, s), "joints_3d": (n, 21, 3), "joints_2d": (n, 21, 2),
              "joint_valid": (n, 21), "vertices": (n, 776, 3), "right": (n,),
              "hand_present": (n,), "intrinsics": (n, 3, 3), "root_depth": (n,),
              "segmentation": (n, s, s)}
    assert {k: tuple(v.shape) for k, v in batch.items()} == shapes
    for key in ("image", "joints_3d", "joints_2d", "vertices", "right", "hand_present",
                "intrinsics", "root_depth"):
        assert batch[key].dtype == torch.float32, key
    assert batch["joint_valid"].dtype == torch.bool
    assert batch["segmentation"].dtype == torch.int64
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    for i, sample in enumerate(samples[:3]):
        root = sample.joints_3d[0, 0]
        np.testing.assert_allclose(batch["joints_3d"][i].numpy(), sample.joints_3d[0] - root,
                                   atol=1e-6)
        np.testing.assert_allclose(batch["vertices"][i].numpy(), sample.vertices[0] - root,
                                   atol=1e-6)
        assert batch["root_depth"][i] == pytest.approx(root[2], rel=1e-6)
        assert batch["right"][i] == (sample.handedness[0] == 0)
        np.testing.assert_allclose(batch["image"][i].permute(1, 2, 0).numpy() * 255,
                                   sample.image, atol=1e-3)
        np.testing.assert_array_equal(batch["segmentation"][i].numpy(), sample.segmentation)
    assert batch["hand_present"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert batch["joint_valid"][:3].all() and not batch["joint_valid"][3].any()


def test_negatives_hold_no_hand_and_zero_labels():
    negative = render_negative(9, 0, CONFIG)
    assert negative.num_hands == 0 and not negative.segmentation.any()
    batch = collate_batch([negative])
    for key in ("joints_3d", "joints_2d", "vertices", "right", "hand_present", "root_depth"):
        assert not batch[key].any(), key
    # A stream's negative share follows negative_fraction, and the choice is fixed per index.
    stream = SyntheticStream(9, CONFIG, negative_fraction=0.5, count=40)
    hands = [stream.sample(i).num_hands for i in range(40)]
    assert 10 <= hands.count(0) <= 30 and set(hands) == {0, 1}
    assert hands[:6] == [stream.sample(i).num_hands for i in range(6)]


def test_two_hand_batch_puts_each_hand_in_its_slot():
    both = render_sample(5, 0, CONFIG, two_hands=True)
    lone = next(s for s in (render_sample(5, i, CONFIG, two_hands=False) for i in range(1, 20))
                if s.handedness[0] == 1)
    batch = collate_batch([both, lone], hands=2)
    assert tuple(batch["joints_3d"].shape) == (2, 2, 21, 3)
    assert tuple(batch["vertices"].shape) == (2, 2, 776, 3)
    assert "right" not in batch
    assert batch["hand_present"].tolist() == [[1.0, 1.0], [0.0, 1.0]]
    np.testing.assert_allclose(batch["joints_3d"][1, 1].numpy(),
                               lone.joints_3d[0] - lone.joints_3d[0, 0], atol=1e-6)
    np.testing.assert_allclose(batch["relative_root"][0].numpy(),
                               both.joints_3d[1, 0] - both.joints_3d[0, 0], atol=1e-6)
    assert not batch["relative_root"][1].any() and not batch["joint_valid"][1, 0].any()


def test_single_hand_batch_rejects_two_hand_crops_and_mixed_sizes():
    with pytest.raises(ValueError, match="hands=2"):
        collate_batch([render_sample(5, 0, CONFIG, two_hands=True)])
    with pytest.raises(ValueError, match="one size"):
        collate_batch([render_sample(5, 1, CONFIG),
                       render_sample(5, 1, SynthConfig(size=48))])


def test_cli_writes_readable_shards_and_a_manifest_equal_to_the_stream(tmp_path):
    out = tmp_path / "shards"
    assert cli_main(["synth", "--out", str(out), "--count", "5", "--seed", "7", "--size", "224",
                     "--shard-size", "2", "--workers", "1", "--negative-fraction", "0.2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 5 and manifest["seed"] == 7 and manifest["kind"] == "single"
    assert manifest["config"]["size"] == 224
    assert [s["count"] for s in manifest["shards"]] == [2, 2, 1]
    samples = [s for shard in manifest["shards"] for s in read_shard(out / shard["file"])]
    assert sum(manifest["counts"].values()) == 5
    assert manifest["counts"]["negative"] == sum(s.num_hands == 0 for s in samples)
    stream = SyntheticStream(7, SynthConfig(size=224), negative_fraction=0.2)
    for i, sample in enumerate(samples):
        reference = stream.sample(i)
        np.testing.assert_array_equal(sample.image, reference.image)
        np.testing.assert_array_equal(sample.segmentation, reference.segmentation)
        np.testing.assert_allclose(sample.joints_3d, reference.joints_3d, atol=1e-6)


def test_cli_test_split_is_reproducible_and_matches_test_split_samples(tmp_path):
    for run in ("a", "b"):
        assert cli_main(["synth", "--split", "test", "--out", str(tmp_path / run),
                         "--count", "2", "--workers", "1"]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["split"] == "synthetic-test-v1" and manifest["complete"] is False
    assert manifest["counts"] == {"single": 2, "two": 2, "negative": 0}
    for kind in ("single", "two"):
        a = read_shard(tmp_path / "a" / kind / "shard-00000.npz")
        b = read_shard(tmp_path / "b" / kind / "shard-00000.npz")
        reference = list(synth.test_split_samples(kind=kind, limit=2))
        for x, y, ref in zip(a, b, reference, strict=True):
            np.testing.assert_array_equal(x.image, y.image)
            np.testing.assert_array_equal(x.image, ref.image)
            np.testing.assert_allclose(x.joints_3d, ref.joints_3d, atol=1e-6)
            assert x.key == ref.key


def test_unannotated_joints_are_zero_and_a_missing_wrist_invalidates_the_hand():
    partial = render_sample(6, 0, CONFIG, two_hands=False)
    partial.joint_valid[0, 8] = False
    partial.joints_3d[0, 8] = np.nan
    no_wrist = render_sample(6, 1, CONFIG, two_hands=False)
    no_wrist.joint_valid[0, 0] = False
    no_wrist.joints_3d[0, 0] = np.nan
    batch = collate_batch([partial, no_wrist])
    assert all(torch.isfinite(v).all() for k, v in batch.items() if v.is_floating_point())
    assert batch["joint_valid"][0].sum() == 20 and not batch["joint_valid"][0, 8]
    assert not batch["joint_valid"][1].any() and batch["hand_present"][1] == 1
    assert not batch["joints_3d"][0, 8].any()
