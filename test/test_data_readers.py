"""Dataset readers (FreiHAND, InterHand2.6M, RHD) and ``open_dataset``, on tiny fixtures that the
tests write in each dataset's published format."""

import json
import pickle

import cv2
import numpy as np
import pytest

from hand_pose_ros.data.datasets import SPEC_FORMS, describe, open_dataset
from hand_pose_ros.data.freihand import FreiHand
from hand_pose_ros.data.interhand import INTERHAND_TO_CANONICAL, InterHand
from hand_pose_ros.data.rhd import RHD, RHD_TO_CANONICAL, SEGMENTATION_TABLE
from hand_pose_ros.data.sample import SEGMENTATION_CLASSES
from hand_pose_ros.hand.joints import FINGERS, Handedness, HandLandmark

RNG = np.random.default_rng(0)


def _write_jpg(path, shape):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), RNG.integers(0, 256, shape, dtype=np.uint8))


def _assert_projection(sample):
    """joints_2d is K @ joints_3d, dehomogenised, for every hand."""
    uvw = sample.joints_3d @ sample.intrinsics.T
    np.testing.assert_allclose(sample.joints_2d, uvw[..., :2] / uvw[..., 2:], atol=1e-9)


def _canonical_names():
    """(finger, level) of each canonical joint, level 0 at the palm; the wrist is ("wrist", 0)."""
    return [("wrist", 0)] + [(f, level) for f in FINGERS for level in range(4)]


# --- FreiHAND ---

FREI_K = [[[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]],
          [[400.0, 0.0, 100.0], [0.0, 410.0, 120.0], [0.0, 0.0, 1.0]]]


def _frei_xyz(label):
    """Distinct joints per label: joint j at (j mm, label cm, 0.6 m)."""
    return [[j * 1e-3, label * 1e-2, 0.6] for j in range(21)]


def _write_freihand(root, split="training", count=2, versions=4, masks=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}_K.json").write_text(json.dumps(FREI_K[:count]))
    (root / f"{split}_xyz.json").write_text(json.dumps([_frei_xyz(i) for i in range(count)]))
    verts = [[[i, v * 1e-4, 0.5] for v in range(778)] for i in range(count)]
    (root / f"{split}_verts.json").write_text(json.dumps(verts))
    (root / f"{split}_mano.json").write_text(json.dumps([[list(range(61))]] * count))
    for index in range(count * versions):
        _write_jpg(root / split / "rgb" / f"{index:08d}.jpg", (224, 224, 3))
    if masks:
        for label in range(count):
            mask = np.zeros((224, 224), np.uint8)
            mask[50:100, 60:120] = 255
            (root / split / "mask").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "mask" / f"{label:08d}.jpg"), mask)
    return root


def test_freihand_training_images_use_the_label_of_index_modulo_unique_samples(tmp_path):
    reader = FreiHand(_write_freihand(tmp_path), "training")
    assert len(reader) == 8
    sample = reader.sample(5)  # version 2 of unique sample 1
    assert sample.extras["label_index"] == 1 and sample.key == "training/00000005"
    np.testing.assert_allclose(sample.joints_3d[0], _frei_xyz(1))
    np.testing.assert_allclose(sample.intrinsics, FREI_K[1])
    assert sample.image.shape == (224, 224, 3) and list(sample.handedness) == [Handedness.RIGHT]
    assert sample.vertices.shape == (1, 778, 3) and sample.mesh == "mano"
    assert sample.vertices[0, 0, 0] == 1 and sample.joint_valid.all()
    assert sample.mask[75, 90] and not sample.mask[10, 10]
    np.testing.assert_array_equal(sample.extras["mano_shape"], np.arange(48, 58))
    _assert_projection(sample)


def test_freihand_keeps_its_order_which_is_canonical(tmp_path):
    # FreiHAND joint j is canonical joint j: the joint at j mm along x stays at index j.
    sample = FreiHand(_write_freihand(tmp_path)).sample(0)
    np.testing.assert_allclose(sample.joints_3d[0, :, 0] * 1e3, np.arange(21))


def test_freihand_prefers_the_evaluation_split_when_present(tmp_path):
    _write_freihand(tmp_path, "training")
    assert [s.key for s in open_dataset(f"freihand:{tmp_path}", limit=2)] == [
        "training/00000000", "training/00000001"]
    _write_freihand(tmp_path, "evaluation", count=1, versions=1, masks=False)
    samples = list(open_dataset(f"freihand:{tmp_path}"))
    assert [s.key for s in samples] == ["evaluation/00000000"] and samples[0].mask is None
    assert len(list(open_dataset(f"freihand:{tmp_path}#training"))) == 8
    assert describe(f"freihand:{tmp_path}") == f"freihand:{tmp_path}: 1 samples"


def test_freihand_reports_missing_and_malformed_files(tmp_path):
    root = _write_freihand(tmp_path)
    (root / "training_xyz.json").write_text("[[[0.1, 0.2")
    with pytest.raises(ValueError, match="training_xyz.json is not valid JSON"):
        FreiHand(root)
    (root / "training_xyz.json").write_text(json.dumps([_frei_xyz(0)]))  # one entry, K has two
    with pytest.raises(ValueError, match=r"training_xyz.json: expected shape \(2, 21, 3\)"):
        FreiHand(root)
    (root / "training_xyz.json").write_text(json.dumps([_frei_xyz(0), _frei_xyz(1)]))
    (root / "training_verts.json").write_text("[[[0.1, 0.2, null]]]")
    with pytest.raises(ValueError, match="training_verts.json"):
        FreiHand(root)
    (root / "training_verts.json").unlink()
    with pytest.raises(FileNotFoundError, match="training_verts.json not found"):
        FreiHand(root)
    with pytest.raises(FileNotFoundError, match="evaluation_xyz.json"):
        (root / "evaluation_K.json").write_text(json.dumps(FREI_K))
        FreiHand(root)


# --- InterHand2.6M ---

# Camera: rotated 90 degrees about z, at (100, 200, -500) mm in the world.
IH_CAMROT = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
IH_CAMPOS = [100.0, 200.0, -500.0]
IH_FOCAL, IH_PRINCPT = [1000.0, 1010.0], [256.0, 167.0]


def _ih_world(frame):
    """(42, 3) world mm: joint j sits at camera-frame (j mm, frame mm, 1 m), except the right
    wrist (20), placed at world (100, 300, 500) mm."""
    camera = np.array([[j, frame, 1000.0] for j in range(42)])
    world = camera @ np.array(IH_CAMROT) + IH_CAMPOS  # inverse of R @ (w - campos)
    world[20] = [100.0, 300.0, 500.0]
    return world.tolist()


def _write_interhand(root, split="test", hand_types=("interacting", "right", "left"),
                     layout=None):
    folder = root / "annotations" / (layout or split)
    folder.mkdir(parents=True)
    images, annotations, frames = [], [], {}
    for i, hand_type in enumerate(hand_types):
        frame = 100 + i
        name = f"Capture0/ROM01_seq/cam400262/image{frame}.jpg"
        images.append({"id": i, "file_name": name, "width": 64, "height": 48, "capture": 0,
                       "subject": 0, "seq_name": "ROM01_seq", "camera": "400262",
                       "frame_idx": frame})
        valid = [[1]] * 42
        if i == 0:
            valid[41] = [0]  # the left wrist of the interacting frame is not annotated
        annotations.append({"id": 10 + i, "image_id": i, "bbox": [1.0, 2.0, 30.0, 20.0],
                            "joint_valid": valid, "hand_type": hand_type,
                            "hand_type_valid": 1})
        frames[str(frame)] = {"world_coord": _ih_world(frame), "joint_valid": valid,
                              "hand_type": hand_type, "hand_type_valid": True}
        _write_jpg(root / "images" / split / name, (48, 64, 3))
    camera = {"0": {"campos": {"400262": IH_CAMPOS}, "camrot": {"400262": IH_CAMROT},
                    "focal": {"400262": IH_FOCAL}, "princpt": {"400262": IH_PRINCPT}}}
    (folder / f"InterHand2.6M_{split}_data.json").write_text(
        json.dumps({"images": images, "annotations": annotations}))
    (folder / f"InterHand2.6M_{split}_camera.json").write_text(json.dumps(camera))
    (folder / f"InterHand2.6M_{split}_joint_3d.json").write_text(json.dumps({"0": frames}))
    return root


def test_interhand_mapping_matches_its_tip_first_wrist_last_names():
    # InterHand2.6M names per hand: thumb4 .. thumb1, index4 .. index1, ..., pinky1, wrist;
    # "1" is the joint at the palm, "4" the tip.
    interhand = [(f, 4 - k) for f in FINGERS for k in range(4)] + [("wrist", 0)]
    expected = [interhand.index(("wrist", 0) if f == "wrist" else (f, level + 1))
                for f, level in _canonical_names()]
    assert INTERHAND_TO_CANONICAL.tolist() == expected
    assert sorted(INTERHAND_TO_CANONICAL.tolist()) == list(range(21))


def test_interhand_converts_world_millimetres_to_camera_metres_and_remaps(tmp_path):
    sample = InterHand(_write_interhand(tmp_path)).sample(0)
    # Hand-worked: R @ ((100, 300, 500) - (100, 200, -500)) = R @ (0, 100, 1000) = (-100, 0,
    # 1000) mm; pixel = focal * (x / z, y / z) + princpt = (1000 * -0.1 + 256, 167).
    right = Handedness.RIGHT
    np.testing.assert_allclose(sample.joints_3d[right, HandLandmark.WRIST], [-0.1, 0.0, 1.0],
                               atol=1e-12)
    np.testing.assert_allclose(sample.joints_2d[right, HandLandmark.WRIST], [156.0, 167.0])
    # Every other joint sits at x = its InterHand index in mm: the index tip is joint 4,
    # the left thumb base joint 21 + 3.
    assert sample.joints_3d[right, HandLandmark.INDEX_TIP, 0] * 1e3 == pytest.approx(4)
    assert sample.joints_3d[1, HandLandmark.THUMB_CMC, 0] * 1e3 == pytest.approx(24)
    assert sample.joints_3d[1, HandLandmark.LITTLE_TIP, 0] * 1e3 == pytest.approx(21 + 16)
    # Frame 100 -> y = 100 mm for all but the hand-placed right wrist.
    np.testing.assert_allclose(sample.joints_3d[:, 1:, 1], 0.1)
    np.testing.assert_allclose(sample.intrinsics, [[1000, 0, 256], [0, 1010, 167], [0, 0, 1]])
    _assert_projection(sample)


def test_interhand_yields_right_first_and_flags_interacting_frames(tmp_path):
    samples = list(open_dataset(f"interhand:{_write_interhand(tmp_path)}"))
    assert [s.handedness.tolist() for s in samples] == [[0, 1], [0], [1]]
    assert [s.extras["interacting"] for s in samples] == [True, False, False]
    # The left wrist of frame 100 is not valid, so none of that hand's joints is.
    assert samples[0].joint_valid[0].all() and not samples[0].joint_valid[1].any()
    assert samples[2].joint_valid.all()
    assert samples[1].key == "Capture0/ROM01_seq/cam400262/image101.jpg"
    assert samples[1].image.shape == (48, 64, 3)


def test_interhand_reads_the_first_release_layout_and_other_splits(tmp_path):
    _write_interhand(tmp_path, split="val", layout="all", hand_types=("left",))
    samples = list(open_dataset(f"interhand:{tmp_path}#val"))
    assert len(samples) == 1 and samples[0].handedness.tolist() == [Handedness.LEFT]
    with pytest.raises(FileNotFoundError, match="InterHand2.6M_test_data.json not found"):
        open_dataset(f"interhand:{tmp_path}")
    with pytest.raises(ValueError, match="split must be one of"):
        open_dataset(f"interhand:{tmp_path}#testing")


def test_interhand_reports_missing_and_malformed_files(tmp_path):
    root = _write_interhand(tmp_path)
    folder = root / "annotations" / "test"
    camera = folder / "InterHand2.6M_test_camera.json"
    camera.write_text(json.dumps({"0": {"campos": {}}}))
    with pytest.raises(ValueError, match="camera 400262: missing"):
        InterHand(root).sample(0)
    camera.unlink()
    with pytest.raises(FileNotFoundError, match="InterHand2.6M_test_camera.json not found"):
        InterHand(root)
    (folder / "InterHand2.6M_test_data.json").write_text('{"images": [}')
    with pytest.raises(ValueError, match="not valid JSON"):
        InterHand(root)
    (folder / "InterHand2.6M_test_data.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="COCO-style"):
        InterHand(root)


def test_interhand_rejects_an_unknown_hand_type(tmp_path):
    reader = InterHand(_write_interhand(tmp_path, hand_types=("both",)))
    with pytest.raises(ValueError, match="hand_type must be one of"):
        reader.sample(0)


# --- RHD ---

RHD_K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 160.0], [0.0, 0.0, 1.0]])


def _rhd_annotation():
    """Keypoint j at (j cm, 1 cm, 0.5 m); uv the projection, every keypoint visible."""
    xyz = np.array([[j * 0.01, 0.01, 0.5] for j in range(42)], dtype=np.float32)
    uv = xyz @ RHD_K.T
    uv_vis = np.concatenate([uv[:, :2] / uv[:, 2:], np.ones((42, 1))], 1).astype(np.float32)
    return {"xyz": xyz, "uv_vis": uv_vis, "K": RHD_K.astype(np.float32)}


def _write_rhd(root, split="evaluation"):
    folder = root / split
    for sub in ("color", "mask", "depth"):
        (folder / sub).mkdir(parents=True)
    masks = []
    for dominant_right in (True, False):
        mask = np.ones((320, 320), np.uint8)  # person
        mask[:10, :10] = 0
        big, small = (slice(100, 200), slice(250, 260)) if dominant_right else (
            slice(250, 260), slice(100, 200))
        mask[big, 100:200] = 33  # right palm
        mask[big, 200:210] = 18  # right thumb tip bone
        mask[small, 0:10] = 2  # left thumb tip bone
        mask[small, 10:20] = 17  # left palm
        masks.append(mask)
    for sample_id, mask in enumerate(masks):
        name = f"{sample_id:05d}.png"
        _write_jpg(folder / "color" / name, (320, 320, 3))
        cv2.imwrite(str(folder / "mask" / name), mask)
        # 1 m coded as (R * 256 + G) / 65535 * 5 with R = G = 51; cv2 writes BGR.
        cv2.imwrite(str(folder / "depth" / name), np.full((320, 320, 3), (0, 51, 51), np.uint8))
    with (folder / f"anno_{split}.pickle").open("wb") as f:
        pickle.dump({i: _rhd_annotation() for i in range(2)}, f, protocol=2)
    return root


def test_rhd_mapping_matches_its_wrist_first_tip_to_palm_order():
    # RHD per hand: wrist, then per finger four keypoints from the tip to the palm.
    rhd = [("wrist", 0)] + [(f, 3 - k) for f in FINGERS for k in range(4)]
    assert RHD_TO_CANONICAL.tolist() == [rhd.index(name) for name in _canonical_names()]


def test_rhd_yields_the_dominant_hand_in_canonical_order(tmp_path):
    right_sample, left_sample = open_dataset(f"rhd:{_write_rhd(tmp_path)}")
    assert right_sample.handedness.tolist() == [Handedness.RIGHT]
    assert left_sample.handedness.tolist() == [Handedness.LEFT]
    # Keypoint j sits at x = j cm: the right wrist is RHD 21, its thumb tip 22 and thumb base
    # 25, its little finger base 41; the left hand's are 0, 1, 4, 20.
    x_cm = np.round(right_sample.joints_3d[0, :, 0] * 100).astype(int)
    assert x_cm[HandLandmark.WRIST] == 21 and x_cm[HandLandmark.THUMB_TIP] == 22
    assert x_cm[HandLandmark.THUMB_CMC] == 25 and x_cm[HandLandmark.LITTLE_MCP] == 41
    x_cm = np.round(left_sample.joints_3d[0, :, 0] * 100).astype(int)
    assert (x_cm[[0, 4, 1, 17]] == [0, 1, 4, 20]).all()
    for sample in (right_sample, left_sample):
        _assert_projection(sample)
        assert sample.joint_valid.all() and sample.extras["visible"].shape == (1, 21)
        assert sample.extras["interacting"] is False
        np.testing.assert_allclose(sample.extras["depth"], 1.0, atol=1e-6)
    # RHD's uv annotations agree with our projection (same keypoints, same order).
    anno = _rhd_annotation()
    np.testing.assert_allclose(right_sample.joints_2d[0, HandLandmark.THUMB_TIP],
                               anno["uv_vis"][22, :2], atol=1e-3)


def test_rhd_mask_classes_become_hand_part_classes(tmp_path):
    sample = next(open_dataset(f"rhd:{_write_rhd(tmp_path)}"))
    seg = sample.segmentation
    assert SEGMENTATION_CLASSES[seg[150, 150]] == "right_palm"
    assert SEGMENTATION_CLASSES[seg[150, 205]] == "right_thumb_distal"
    assert SEGMENTATION_CLASSES[seg[255, 5]] == "left_thumb_distal"
    assert SEGMENTATION_CLASSES[seg[255, 15]] == "left_palm"
    assert seg[50, 50] == 0 and seg[5, 5] == 0  # person and background
    np.testing.assert_array_equal(sample.mask, seg > 0)
    # The 32 hand classes of RHD (2-33) map one to one onto ours (1-32).
    assert sorted(SEGMENTATION_TABLE[2:34].tolist()) == list(range(1, 33))
    assert SEGMENTATION_TABLE[:2].tolist() == [0, 0]
    assert SEGMENTATION_CLASSES[SEGMENTATION_TABLE[21]] == "right_index_distal"
    assert SEGMENTATION_CLASSES[SEGMENTATION_TABLE[16]] == "left_little_proximal"


def test_rhd_reports_missing_malformed_and_unsafe_annotation_files(tmp_path):
    root = _write_rhd(tmp_path)
    path = root / "evaluation" / "anno_evaluation.pickle"
    path.write_bytes(pickle.dumps({0: {"xyz": np.zeros((21, 3))}}))
    with pytest.raises(ValueError, match=r"sample 0 xyz: expected shape \(42, 3\)"):
        RHD(root).sample(0)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable RHD annotation pickle"):
        RHD(root)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({0: Exploit()}))
    with pytest.raises(ValueError, match="builtins.print is not allowed"):
        RHD(root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="anno_evaluation.pickle not found"):
        open_dataset(f"rhd:{root}")
    with pytest.raises(FileNotFoundError, match="anno_training.pickle not found"):
        open_dataset(f"rhd:{root}#training")


# --- open_dataset ---


@pytest.mark.parametrize("spec", ["freihan:/tmp", "synthetic:train", "interhand", "",
                                  "freihand:", "rhd:/no/such/dir"])
def test_open_dataset_rejects_bad_specs_listing_the_valid_forms(spec):
    with pytest.raises(ValueError, match="valid forms: synthetic:test, synthetic:test-twohand"):
        open_dataset(spec)
    assert "interhand:PATH[#test|val|train]" in SPEC_FORMS


def test_open_dataset_honours_limit(tmp_path):
    root = _write_freihand(tmp_path, versions=1)
    assert len(list(open_dataset(f"freihand:{root}", limit=1))) == 1
    assert len(list(open_dataset(f"freihand:{root}", limit=0))) == 0
    with pytest.raises(ValueError, match="limit must be"):
        open_dataset(f"freihand:{root}", limit=-1)


def test_synthetic_twohand_split_mixes_single_and_interacting_scenes():
    pytest.importorskip("moderngl", reason="moderngl (headless OpenGL) is not installed")
    from hand_pose_ros.data.render import get_renderer

    try:
        get_renderer()
    except Exception as error:  # no EGL/Mesa on this machine
        pytest.skip(f"no headless OpenGL context: {error}")
    samples = list(open_dataset("synthetic:test-twohand", limit=2))
    assert [s.num_hands for s in samples] == [1, 2]
    assert [s.extras["interacting"] for s in samples] == [False, True]
    assert describe("synthetic:test") == "synthetic:test: 500 samples"
    assert describe("synthetic:test-twohand") == "synthetic:test-twohand: 1000 samples"
