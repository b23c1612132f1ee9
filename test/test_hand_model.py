"""The open hand model: template mesh, skeleton, forward kinematics, skinning, presets."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hand_pose_ros.hand.frames import wrist_frame
from hand_pose_ros.hand.joints import BONES, Handedness, HandLandmark
from hand_pose_ros.hand.mesh import PART_FINGER, PART_NAMES, hand_template
from hand_pose_ros.hand.model import MIRROR, OpenHandModel
from hand_pose_ros.hand.poses import GESTURE_ALIASES, GESTURES, gesture, random_poses
from hand_pose_ros.hand.skeleton import (
    BONE_LENGTHS,
    FREE_DOFS,
    NUM_SHAPE,
    POSE_LIMITS,
    clamp_pose,
    rest_joints,
)

RIGHT, LEFT = OpenHandModel(Handedness.RIGHT), OpenHandModel(Handedness.LEFT)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _random_batch(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return (
        random_poses(count, rng),
        rng.normal(scale=0.08, size=(count, NUM_SHAPE)),
        Rotation.random(count, random_state=seed).as_rotvec(),
        rng.normal(scale=0.3, size=(count, 3)),
    )


def test_template_is_a_closed_consistently_oriented_manifold():
    t = hand_template()
    assert 700 <= len(t.vertices) <= 1000
    # Every directed edge appears once and its reverse once: each undirected edge has exactly
    # two triangles, and they agree on orientation.
    directed = np.concatenate([t.faces[:, [0, 1]], t.faces[:, [1, 2]], t.faces[:, [2, 0]]])
    assert len({tuple(e) for e in directed}) == len(directed)
    assert {tuple(e) for e in directed} == {(b, a) for a, b in directed}
    # Every vertex is used and the surface is a topological sphere (V - E + F = 2).
    assert set(np.unique(t.faces)) == set(range(len(t.vertices)))
    assert len(t.vertices) - len(directed) // 2 + len(t.faces) == 2
    # Counter-clockwise seen from outside: the enclosed volume comes out positive.
    assert 1.5e-4 < _signed_volume(t.vertices, t.faces) < 5e-4  # m^3; a real hand ~3.5e-4


def test_template_passes_trimesh_watertight_check_when_available():
    trimesh = pytest.importorskip("trimesh")
    t = hand_template()
    mesh = trimesh.Trimesh(t.vertices, t.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_skinning_weights_and_part_labels_cover_every_bone():
    t = hand_template()
    assert np.all(t.weights >= 0)
    np.testing.assert_allclose(t.weights.sum(axis=1), 1.0)
    assert set(np.unique(t.parts)) == set(range(len(PART_NAMES)))
    assert len(PART_FINGER) == len(PART_NAMES) == t.weights.shape[1]
    # A vertex is labelled with a bone that carries real weight for it.
    assert np.all(t.weights[np.arange(len(t.parts)), t.parts] > 0.2)


def test_rest_pose_reproduces_template_and_wrist_frame_is_model_frame():
    out = RIGHT.forward(np.zeros((1, 15, 3)))
    np.testing.assert_allclose(out.joints[0], rest_joints(), atol=1e-12)
    np.testing.assert_allclose(out.vertices[0], hand_template().vertices, atol=1e-12)
    np.testing.assert_allclose(wrist_frame(out.joints[0], Handedness.RIGHT), np.eye(3), atol=0.02)


def test_template_hand_has_plausible_adult_proportions():
    joints = rest_joints()
    # Wrist to middle fingertip (hand length) of an adult: about 17-21 cm.
    hand_length = np.linalg.norm(joints[HandLandmark.MIDDLE_TIP] - joints[HandLandmark.WRIST])
    assert 0.17 < hand_length < 0.21
    # The middle finger is the longest, the thumb tip lies on the thumb side (-y, right hand).
    tips = joints[[4, 8, 12, 16, 20]]
    assert np.argmax(tips[:, 0]) == 2
    assert tips[0, 1] < tips[1, 1] < tips[2, 1] < tips[3, 1] < tips[4, 1]


def test_bone_lengths_follow_shape_and_stay_rigid_under_any_pose():
    poses, shapes, orient, transl = _random_batch(8, seed=1)
    joints = RIGHT.forward(poses, shapes, orient, transl, with_vertices=False).joints
    for k in range(8):
        rest = rest_joints(shapes[k])
        for parent, child in BONES:
            posed = np.linalg.norm(joints[k, child] - joints[k, parent])
            assert posed == pytest.approx(np.linalg.norm(rest[child] - rest[parent]), rel=1e-9)
    scale, index_length = np.exp(shapes[0, 0]), np.exp(shapes[0, 2])
    proximal = np.linalg.norm(joints[0, 6] - joints[0, 5])
    assert proximal == pytest.approx(scale * index_length * BONE_LENGTHS[1, 0])


def test_global_orientation_and_translation_move_the_whole_hand_rigidly():
    poses, shapes, orient, transl = _random_batch(3, seed=2)
    local = RIGHT.forward(poses, shapes)
    moved = RIGHT.forward(poses, shapes, orient, transl)
    rot = Rotation.from_rotvec(orient).as_matrix()
    expected = np.einsum("bij,bkj->bki", rot, local.vertices) + transl[:, None]
    np.testing.assert_allclose(moved.vertices, expected, atol=1e-12)
    np.testing.assert_allclose(moved.joints[:, 0], transl)  # transl is the wrist position


def test_torch_and_numpy_forward_agree_and_torch_is_differentiable():
    poses, shapes, orient, transl = _random_batch(4, seed=3)
    expected = RIGHT.forward(poses, shapes, orient, transl)
    tensors = [torch.tensor(a, dtype=torch.float32, requires_grad=True)
               for a in (poses, shapes, orient, transl)]
    out = RIGHT.forward(*tensors)
    assert out.joints.dtype == torch.float32 and out.vertices.shape == (4, RIGHT.num_vertices, 3)
    np.testing.assert_allclose(out.joints.detach().numpy(), expected.joints, atol=2e-6)
    np.testing.assert_allclose(out.vertices.detach().numpy(), expected.vertices, atol=2e-6)
    (out.joints.square().sum() + out.vertices.square().sum()).backward()
    for t in tensors:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # Zero rotation is a usual starting point for optimisation: its gradient must be finite.
    zero = torch.zeros(1, 3, requires_grad=True)
    RIGHT.forward(torch.zeros(1, 15, 3), global_orient=zero).joints.sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_rigidly_attached_vertices_keep_their_distance_to_the_joint():
    # Fingertip vertices are skinned to the distal bone only; posing must not deform them.
    t = hand_template()
    poses, shapes, _, _ = _random_batch(2, seed=4)
    out = RIGHT.forward(poses, shapes * 0)
    frame = 15  # little finger DIP frame: moves the little finger's distal bone
    rigid = t.weights[:, frame] > 0.999
    assert rigid.sum() >= 5
    rest = np.linalg.norm(t.vertices[rigid] - rest_joints()[HandLandmark.LITTLE_DIP], axis=1)
    for k in range(2):
        posed = np.linalg.norm(out.vertices[k, rigid] - out.joints[k, 19], axis=1)
        np.testing.assert_allclose(posed, rest, atol=1e-9)


def test_left_hand_is_the_mirror_image_with_outward_faces():
    poses, shapes, orient, transl = _random_batch(2, seed=5)
    right = RIGHT.forward(poses, shapes)
    left = LEFT.forward(poses, shapes)
    np.testing.assert_allclose(left.joints, right.joints @ MIRROR)
    np.testing.assert_allclose(left.vertices, right.vertices @ MIRROR)
    assert _signed_volume(left.vertices[0], LEFT.faces) > 0
    rest = LEFT.forward(np.zeros((1, 15, 3))).joints[0]
    np.testing.assert_allclose(wrist_frame(rest, Handedness.LEFT), np.eye(3), atol=0.02)


def test_random_poses_are_seeded_and_within_limits():
    a, b = random_poses(100, seed=7), random_poses(100, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_poses(100, seed=8))
    assert np.all(a >= POSE_LIMITS[..., 0]) and np.all(a <= POSE_LIMITS[..., 1])
    assert np.all(a[:, ~FREE_DOFS] == 0)
    assert np.all(a[:, FREE_DOFS].std(axis=0) > 0)
    np.testing.assert_array_equal(clamp_pose(a), a)


def test_gestures_are_valid_and_look_like_their_names():
    for name in list(GESTURES) + list(GESTURE_ALIASES):
        pose = gesture(name)
        assert pose.shape == (15, 3)
        np.testing.assert_array_equal(clamp_pose(pose), pose)
    joints = {n: RIGHT.forward(gesture(n)[None], with_vertices=False).joints[0] for n in GESTURES}
    tips = [4, 8, 12, 16, 20]
    # Pinch and OK: thumb and index tips touch (keypoints within a finger's thickness).
    for name in ("pinch", "ok"):
        assert np.linalg.norm(joints[name][4] - joints[name][8]) < 0.015
    # A fist brings every fingertip close to the palm; an open hand keeps them far.
    palm = rest_joints()[[0, 5, 9, 13, 17]].mean(axis=0)
    fist_reach = np.linalg.norm(joints["fist"][tips[1:]] - palm, axis=1)
    open_reach = np.linalg.norm(joints["open"][tips[1:]] - palm, axis=1)
    assert np.all(fist_reach < 0.6 * open_reach)
    # Pointing: the index stays extended, the other fingers curl.
    point_reach = np.linalg.norm(joints["point"][tips[1:]] - palm, axis=1)
    assert point_reach[0] == pytest.approx(open_reach[0], rel=1e-6)
    assert np.all(point_reach[1:] < 0.6 * open_reach[1:])
    with pytest.raises(KeyError, match="known:"):
        gesture("no-such-gesture")


def test_bad_pose_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 15, 3\)"):
        RIGHT.forward(np.zeros((15, 3)))
    with pytest.raises(ValueError, match="finite"):
        RIGHT.forward(np.zeros((1, 15, 3)), transl=np.array([[0.0, np.nan, 0.0]]))
