"""Synthetic hand crops: sampled scenes rendered with labels, deterministic by (seed, index).

A scene is one hand, or two interacting hands (right and left close together), of the open hand
model (``hand.model.OpenHandModel``):
- pose: a mixture of a gesture prior (``hand.poses.GESTURES`` + Gaussian noise), a grasp prior
  (one curl level shared by the fingers with per-finger jitter, the thumb moving towards
  opposition with it: the first postural synergy) and uniform sampling within the joint limits;
  every pose is clamped to the limits;
- shape: Gaussian log-scale / finger length / palm width around the template;
- appearance: a skin tone from six Fitzpatrick-like base colours with jitter, a lighter palmar
  side, per-vertex blotches and a procedural skin texture; a random directional light, ambient
  light and specular strength; a procedural background (noise, stripes, tiles, cells);
- camera: a random full-frame pinhole (field of view, principal point jitter), the hand placed at a
  random depth and direction inside its frustum, oriented upright-ish (in-plane roll about
  N(0, 25 deg), as the pipeline's rotation-aware crops deliver), any yaw, some pitch. The crop
  (224 or 256 px) is a square around the hand's projected joints; rendering it with the crop's
  own intrinsics is exact (a crop of a pinhole image is a pinhole image);
- corruption (image only, labels stay exact): occluders (random polygons/ellipses in front of
  the hand, which turn the covered pixels to background in the segmentation), motion blur
  (a line kernel), Gaussian sensor noise, brightness/contrast/gamma.

Hand-free negatives (``render_negative``) are a background with distractor shapes (half of them
skin-coloured) and the same corruption, so that nets learn a hand presence score.

Sample ``i`` of a stream with seed ``s`` comes from ``np.random.default_rng([s, i])`` alone, so
any index can be regenerated, in any process, in any order; ``synthetic_sample`` adds the
stream's choice of scene kind (negative, one hand, two hands), also a function of (s, i) only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from hand_pose_ros.data.render import Background, Lighting, MeshDraw, get_renderer
from hand_pose_ros.data.sample import HandSample, part_class
from hand_pose_ros.hand.joints import Handedness
from hand_pose_ros.hand.mesh import hand_template
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import GESTURES, random_poses
from hand_pose_ros.hand.skeleton import FREE_DOFS, NUM_SHAPE, clamp_pose

# Skin base colours (linear-ish RGB in [0, 1]), light to dark, after the Fitzpatrick scale.
SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.90, 0.72, 0.58], [0.80, 0.60, 0.45],
    [0.65, 0.45, 0.31], [0.48, 0.32, 0.22], [0.30, 0.20, 0.14],
])
_GESTURE_POSES = np.stack(list(GESTURES.values()))
_FIST = GESTURES["fist"]
_OPEN = GESTURES["open"]
_PINCH = GESTURES["pinch"]


@dataclass(frozen=True)
class SynthConfig:
    """What a synthetic stream draws. Angles in degrees, distances in metres.

    size: crop side in pixels (224 or 256 are the models' sizes; any >= 32 works).
    two_hand_fraction: probability that a scene holds two interacting hands.
    pose_mix: probabilities of the (gesture, grasp, uniform) pose priors.
    """

    size: int = 256
    two_hand_fraction: float = 0.0
    pose_mix: tuple[float, float, float] = (0.45, 0.35, 0.20)
    gesture_noise_deg: float = 10.0
    shape_sigma: tuple[float, float, float] = (0.08, 0.04, 0.04)  # log scale, fingers, palm
    depth_range: tuple[float, float] = (0.25, 0.9)
    horizontal_fov_range: tuple[float, float] = (45.0, 90.0)
    roll_sigma_deg: float = 25.0
    pitch_range_deg: float = 50.0
    fill_range: tuple[float, float] = (0.5, 0.75)  # joints box side / crop side
    center_jitter: float = 0.08  # of the crop side
    occluder_probability: float = 0.3
    blur_probability: float = 0.3
    max_blur_px: int = 9
    noise_sigma_range: tuple[float, float] = (0.0, 8.0)  # of 255

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"crop size must be >= 32 px, got {self.size}")
        if not 0.0 <= self.two_hand_fraction <= 1.0:
            raise ValueError(f"two_hand_fraction must be in [0, 1], got {self.two_hand_fraction}")
        if min(self.pose_mix) < 0 or sum(self.pose_mix) <= 0:
            raise ValueError(f"pose_mix must be non-negative weights, got {self.pose_mix}")


@dataclass(frozen=True)
class TestSplit:
    """A fixed, versioned evaluation split: every accuracy number is measured on one of these."""

    name: str
    seed: int
    single_hand: int
    two_hand: int
    config: SynthConfig


# Version 1 of the synthetic test split. Never change it: make a v2 instead, so that numbers
# measured on v1 stay comparable.
TEST_SPLITS: dict[str, TestSplit] = {
    "synthetic-test-v1": TestSplit("synthetic-test-v1", seed=20260101, single_hand=500,
                                   two_hand=500, config=SynthConfig(size=256)),
}
DEFAULT_TEST_SPLIT = "synthetic-test-v1"


@cache
def _models() -> tuple[OpenHandModel, OpenHandModel]:
    return OpenHandModel(Handedness.RIGHT), OpenHandModel(Handedness.LEFT)


@cache
def _vertex_appearance() -> tuple[np.ndarray, np.ndarray]:
    """Per template vertex: palmar-ness in [0, 1] (lighter skin) and fingertip-dorsal weight
    (nails), from the rest-pose normals (model z is palmar)."""
    template = hand_template()
    normals = np.zeros_like(template.vertices)
    tri = template.vertices[template.faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    for k in range(3):
        np.add.at(normals, template.faces[:, k], face_normals)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    palmar = np.clip(normals[:, 2] * 1.5, 0.0, 1.0)
    distal = np.isin(template.parts, [3 + 3 * f for f in range(5)])
    nail = distal * np.clip(-normals[:, 2] * 2.0 - 0.6, 0.0, 1.0)
    return palmar, nail


def sample_pose(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """(15, 3) pose in radians from the mixture of gesture, grasp and uniform priors."""
    mix = np.asarray(config.pose_mix, dtype=np.float64)
    kind = rng.choice(3, p=mix / mix.sum())
    if kind == 0:
        base = _GESTURE_POSES[rng.integers(len(_GESTURE_POSES))]
        pose = base + np.radians(config.gesture_noise_deg) * rng.standard_normal((15, 3))
    elif kind == 1:
        curl = rng.uniform(0.0, 1.0)
        per_finger = np.clip(curl + 0.15 * rng.standard_normal(5), 0.0, 1.0)
        pose = _OPEN + per_finger[[0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3, None] * (
            _FIST - _OPEN)
        # The thumb opposes towards the index as the hand closes (precision grasps).
        opposition = rng.uniform(0.0, 1.0) * curl
        pose[:3] = (1 - opposition) * pose[:3] + opposition * _PINCH[:3]
        pose = pose + np.radians(5.0) * rng.standard_normal((15, 3))
    else:
        pose = random_poses(1, rng)[0]
    return np.where(FREE_DOFS, clamp_pose(pose), 0.0)


def sample_shape(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """(7,) log shape (scale, five finger lengths, palm width) around the template."""
    scale_sigma, finger_sigma, palm_sigma = config.shape_sigma
    shape = np.empty(NUM_SHAPE)
    shape[0] = scale_sigma * rng.standard_normal()
    shape[1:6] = finger_sigma * rng.standard_normal() + 0.5 * finger_sigma * rng.standard_normal(5)
    shape[6] = palm_sigma * rng.standard_normal()
    return shape


# Rotation from the model frame (x to the fingers, z palmar) to the camera frame for an upright
# hand (fingers up in the image) whose palm faces the camera.
_UPRIGHT = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]).T


def sample_orientation(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """(3, 3) model -> camera rotation: any yaw, pitch within +-pitch_range, roll ~ N(0, sigma)."""
    yaw = rng.uniform(-180.0, 180.0)
    pitch = rng.uniform(-config.pitch_range_deg, config.pitch_range_deg)
    roll = float(np.clip(config.roll_sigma_deg * rng.standard_normal(), -90.0, 90.0))
    turn = Rotation.from_euler("ZXY", [roll, pitch, yaw], degrees=True)  # roll outermost
    return turn.as_matrix() @ _UPRIGHT


def _camera(rng: np.random.Generator, config: SynthConfig) -> tuple[np.ndarray, int, int]:
    """A full-frame camera: (3, 3) intrinsics, width, height (640 x 480 or 1280 x 720 class)."""
    width, height = (640, 480) if rng.random() < 0.5 else (1280, 720)
    fov = math.radians(rng.uniform(*config.horizontal_fov_range))
    f = 0.5 * width / math.tan(fov / 2) * rng.uniform(0.98, 1.02)
    k = np.array([[f, 0.0, width / 2 + rng.normal(0, 0.02 * width)],
                  [0.0, f * rng.uniform(0.99, 1.01), height / 2 + rng.normal(0, 0.02 * height)],
                  [0.0, 0.0, 1.0]])
    return k, width, height


def _project(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    return points[..., :2] / points[..., 2:3] * np.diag(k)[:2] + k[:2, 2]


def crop_intrinsics(k: np.ndarray, center: np.ndarray, side: float, size: int) -> np.ndarray:
    """Intrinsics of a square crop (centre and side in the full image's pixels) resized to
    ``size``: u' = (u - c) * size / side + (size - 1) / 2, with pixel centres at integers."""
    s = size / side
    out = k.copy()
    out[0, 0], out[1, 1] = k[0, 0] * s, k[1, 1] * s
    out[0, 1] = k[0, 1] * s
    out[:2, 2] = (k[:2, 2] - center) * s + (size - 1) / 2
    return out


def _place_pair(rng: np.random.Generator, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Offset (3,) for the left hand (model output at the origin) so that it is close to the
    right hand without the two skeletons running through each other."""
    direction = rng.standard_normal(3) * np.array([1.0, 0.6, 0.4])
    direction /= np.linalg.norm(direction)
    distance = rng.uniform(0.04, 0.12)
    for _ in range(20):
        offset = right.mean(0) - left.mean(0) + distance * direction
        gap = np.linalg.norm((left + offset)[:, None] - right[None], axis=2).min()
        if gap > 0.02:
            return offset
        distance += 0.01
    return offset


def _appearance(rng: np.random.Generator, n_vertices: int) -> np.ndarray:
    """(V, 3) per-vertex albedo of one hand's skin."""
    palmar, nail = _vertex_appearance()
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.1, 3)
    blotch = 1.0 + 0.05 * rng.standard_normal((n_vertices, 1))
    albedo = tone * blotch
    albedo = albedo + palmar[:, None] * (np.array([0.95, 0.75, 0.65]) - albedo) * 0.35
    albedo = albedo + nail[:, None] * (np.array([0.92, 0.78, 0.76]) - albedo) * 0.6
    return np.clip(albedo, 0.0, 1.0)


def _lighting(rng: np.random.Generator) -> Lighting:
    direction = rng.standard_normal(3)
    direction[2] = -abs(direction[2]) - 0.3  # mostly from the camera's side
    warmth = rng.uniform(-0.1, 0.1)
    color = rng.uniform(0.6, 1.1) * np.array([1.0 + warmth, 1.0, 1.0 - warmth])
    return Lighting(direction, color, ambient=rng.uniform(0.2, 0.5) * np.ones(3),
                    specular=rng.uniform(0.0, 0.25),
                    skin_noise_offset=rng.uniform(0, 100, 3),
                    skin_noise_amplitude=rng.uniform(0.05, 0.3))


def _background(rng: np.random.Generator) -> Background:
    colors = rng.uniform(0.0, 1.0, (3, 3)) ** rng.uniform(0.7, 1.6)
    return Background(colors, kind=int(rng.integers(4)), frequency=rng.uniform(1.0, 12.0),
                      angle=rng.uniform(0, np.pi), gradient=rng.uniform(0.0, 0.8),
                      noise_offset=rng.uniform(0, 100, 3))


def _occlude(rng: np.random.Generator, image: np.ndarray, segmentation: np.ndarray,
             joints_2d: np.ndarray, max_count: int = 2, skin_probability: float = 0.0) -> None:
    """Draw 1..max_count random shapes over part of the hand (in place); covered pixels ->
    class 0. A shape is skin-coloured with ``skin_probability`` (hard negatives), else any
    colour."""
    size = image.shape[0]
    for _ in range(int(rng.integers(1, max_count + 1))):
        center = joints_2d[rng.integers(len(joints_2d))] + rng.normal(0, 0.05 * size, 2)
        radius = rng.uniform(0.06, 0.2) * size
        cover = np.zeros(segmentation.shape, np.uint8)
        if rng.random() < 0.5:
            axes = (int(radius), int(radius * rng.uniform(0.2, 1.0)))
            cv2.ellipse(cover, tuple(np.round(center).astype(int)), axes,
                        rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = radius * rng.uniform(0.4, 1.0, len(angles))
            points = center + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
            cv2.fillPoly(cover, [np.round(points).astype(np.int32)], 1)
        covered = cover.astype(bool)
        # A flat colour with a vertical shading gradient.
        shade = 1.0 + 0.2 * rng.standard_normal() * np.linspace(-1, 1, size)[:, None, None]
        if skin_probability and rng.random() < skin_probability:
            colour = 255.0 * SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.7, 1.1)
        else:
            colour = rng.uniform(0, 255, 3)
        fill = np.clip(colour * shade, 0, 255).astype(np.uint8)
        image[covered] = np.broadcast_to(fill, image.shape)[covered]
        segmentation[covered] = 0


@cache
def _noise_bank() -> np.ndarray:
    """A fixed bank of unit Gaussian noise; samples take random windows of it (cheap)."""
    return np.random.default_rng(0).standard_normal((512, 512, 3)).astype(np.float32)


def _corrupt(rng: np.random.Generator, image: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Motion blur, photometric jitter and sensor noise (image only)."""
    size = image.shape[0]
    if rng.random() < config.blur_probability:
        length = int(rng.integers(3, config.max_blur_px + 1))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2),
                                           rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    gain, bias, gamma = rng.uniform(0.75, 1.25), rng.uniform(-20, 20), rng.uniform(0.8, 1.25)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma * gain + bias, 0, 255)
    image = cv2.LUT(image, lut.astype(np.uint8))
    sigma = rng.uniform(*config.noise_sigma_range)
    if sigma > 0.5:
        y, x = rng.integers(0, 512 - size + 1, 2)
        noise = _noise_bank()[y:y + size, x:x + size]
        image = cv2.add(image.astype(np.float32), noise * sigma, dtype=cv2.CV_32F)
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def render_sample(seed: int, index: int, config: SynthConfig,
                  two_hands: bool | None = None) -> HandSample:
    """Sample ``index`` of the stream ``seed``: a rendered crop with all labels.

    ``two_hands`` forces the scene kind (None: drawn with ``config.two_hand_fraction``).
    Labels: joints in the crop camera's optical frame (metres), pixels of the crop, the crop's
    intrinsics, vertices (open hand model topology), 33-class segmentation, hand mask.
    """
    rng = np.random.default_rng([seed, index])
    if two_hands is None:
        two_hands = bool(rng.random() < config.two_hand_fraction)
    sides = [Handedness.RIGHT, Handedness.LEFT] if two_hands else [
        Handedness(int(rng.integers(2)))]
    right_model, left_model = _models()
    joints, vertices = [], []
    orientation = sample_orientation(rng, config)
    for i, side in enumerate(sides):
        model = right_model if side == Handedness.RIGHT else left_model
        rotation = orientation if i == 0 else sample_orientation(rng, config)
        out = model.forward(sample_pose(rng, config)[None], sample_shape(rng, config)[None],
                            Rotation.from_matrix(rotation).as_rotvec()[None])
        joints.append(out.joints[0])
        vertices.append(out.vertices[0])
    if two_hands:
        offset = _place_pair(rng, joints[0], joints[1])
        joints[1], vertices[1] = joints[1] + offset, vertices[1] + offset
    joints, vertices = np.stack(joints), np.stack(vertices)
    # Place the scene in a random camera's frustum.
    k_full, width, height = _camera(rng, config)
    depth = rng.uniform(*config.depth_range)
    pixel = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
    ray = np.array([(pixel[0] - k_full[0, 2]) / k_full[0, 0],
                    (pixel[1] - k_full[1, 2]) / k_full[1, 1], 1.0])
    shift = ray * depth - joints.reshape(-1, 3).mean(0)
    joints, vertices = joints + shift, vertices + shift
    # The crop: a square around the projected joints.
    pixels = _project(joints.reshape(-1, 3), k_full)
    low, high = pixels.min(0), pixels.max(0)
    side = (high - low).max() / rng.uniform(*config.fill_range)
    center = (low + high) / 2 + rng.uniform(-1, 1, 2) * config.center_jitter * side
    k = crop_intrinsics(k_full, center, side, config.size)
    joints_2d = _project(joints, k)
    template = hand_template()
    meshes = [
        MeshDraw(vertices[i], (right_model if s == Handedness.RIGHT else left_model).faces,
                 _appearance(rng, len(template.vertices)), template.vertices,
                 part_class(template.parts, s).astype(np.float64))
        for i, s in enumerate(sides)
    ]
    image, segmentation = get_renderer().render(config.size, config.size, k, meshes,
                                                _lighting(rng), _background(rng))
    if rng.random() < config.occluder_probability:
        _occlude(rng, image, segmentation, joints_2d.reshape(-1, 2))
    image = _corrupt(rng, image, config)
    return HandSample(
        image=image, intrinsics=k, joints_3d=joints, joints_2d=joints_2d,
        joint_valid=np.ones(joints.shape[:2], dtype=bool),
        handedness=np.array([int(s) for s in sides]), vertices=vertices, mesh="open_hand",
        segmentation=segmentation, source="synthetic", key=f"{seed}-{index}",
        extras={"full_intrinsics": k_full, "full_size": (width, height),
                "crop_center": center, "crop_side": side},
    )


def render_negative(seed: int, index: int, config: SynthConfig) -> HandSample:
    """Sample ``index`` of the stream ``seed`` as a hand-free crop: a crop of a random camera
    showing a procedural background with 1-3 distractor shapes (half of them skin-coloured),
    and the same corruption as hand crops. No hands: empty label arrays, all-background
    segmentation."""
    rng = np.random.default_rng([seed, index])
    k_full, width, height = _camera(rng, config)
    side = rng.uniform(0.15, 0.6) * height
    center = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
    k = crop_intrinsics(k_full, center, side, config.size)
    image, segmentation = get_renderer().render(config.size, config.size, k, [],
                                                _lighting(rng), _background(rng))
    spots = rng.uniform(0.2, 0.8, (4, 2)) * config.size
    _occlude(rng, image, segmentation, spots, max_count=3, skin_probability=0.5)
    image = _corrupt(rng, image, config)
    return HandSample(
        image=image, intrinsics=k, joints_3d=np.zeros((0, 21, 3)),
        joints_2d=np.zeros((0, 21, 2)), joint_valid=np.zeros((0, 21), dtype=bool),
        handedness=np.zeros(0, dtype=np.int64),
        vertices=np.zeros((0, len(hand_template().vertices), 3)), mesh="open_hand",
        segmentation=segmentation, source="synthetic", key=f"{seed}-{index}",
        extras={"full_intrinsics": k_full, "full_size": (width, height),
                "crop_center": center, "crop_side": side},
    )


SCENE_KINDS = ("single", "two", "mixed")
# Third entropy word of the generator that picks a stream sample's kind: independent of the
# scene's own generator default_rng([seed, index]).
_KIND_STREAM = 1


def synthetic_sample(seed: int, index: int, config: SynthConfig, kind: str = "mixed",
                     negative_fraction: float = 0.0) -> HandSample:
    """Sample ``index`` of a synthetic stream (what ``hand-pose synth`` shards and
    ``data.stream.SyntheticStream`` hold): hand-free with probability ``negative_fraction``,
    else one hand ("single"), two interacting hands ("two") or either ("mixed": two hands with
    probability ``config.two_hand_fraction``). A function of its arguments only."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"kind must be one of {SCENE_KINDS}, got {kind!r}")
    if not 0.0 <= negative_fraction < 1.0:
        raise ValueError(f"negative_fraction must be in [0, 1), got {negative_fraction}")
    if negative_fraction > 0.0 and (
            np.random.default_rng([seed, index, _KIND_STREAM]).random() < negative_fraction):
        return render_negative(seed, index, config)
    two_hands = {"single": False, "two": True, "mixed": None}[kind]
    return render_sample(seed, index, config, two_hands=two_hands)


def test_split_samples(name: str = DEFAULT_TEST_SPLIT, kind: str = "single",
                       limit: int | None = None) -> Iterator[HandSample]:
    """Samples of a fixed test split: ``kind`` "single" (one hand per crop), "two" (two
    interacting hands) or "mixed" (single and two-hand scenes interleaved, as InterHand2.6M's
    test set holds both)."""
    split = TEST_SPLITS.get(name)
    if split is None:
        raise ValueError(f"unknown test split {name!r}; known: {sorted(TEST_SPLITS)}")
    single = [(i, False) for i in range(split.single_hand)]
    # Two-hand scenes use indices after the single-hand ones: one seed, disjoint samples.
    two = [(split.single_hand + i, True) for i in range(split.two_hand)]
    if kind == "single":
        order = single
    elif kind == "two":
        order = two
    elif kind == "mixed":
        order = [item for pair in zip(single, two, strict=False) for item in pair]
    else:
        raise ValueError(f"kind must be 'single', 'two' or 'mixed', got {kind!r}")
    for index, two_hands in order[:limit]:
        yield render_sample(split.seed, index, split.config, two_hands=two_hands)
