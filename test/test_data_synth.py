"""Synthetic samples: deterministic by seed, and labels that agree with the rendered image."""

import numpy as np
import pytest

pytest.importorskip("moderngl", reason="moderngl (headless OpenGL) is not installed")

from hand_pose_ros.data.render import get_renderer
from hand_pose_ros.data.synth import SynthConfig, render_sample

CONFIG = SynthConfig(size=96, occluder_probability=0.0, blur_probability=0.0)


@pytest.fixture(scope="module", autouse=True)
def renderer():
    try:
        return get_renderer()
    except Exception as error:  # no EGL/Mesa on this machine
        pytest.skip(f"no headless OpenGL context (apt-get install libegl1 libgl1-mesa-dri): "
                    f"{error}")


def test_same_seed_and_index_give_the_same_sample():
    a, b = render_sample(3, 7, CONFIG), render_sample(3, 7, CONFIG)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.joints_3d, b.joints_3d)
    assert not np.array_equal(a.image, render_sample(3, 8, CONFIG).image)


@pytest.mark.parametrize("index", range(4))
def test_labels_agree_with_the_rendered_image(index):
    sample = render_sample(11, index, CONFIG)
    assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8
    # The 2D joints are the 3D joints projected through the sample's intrinsics.
    projected = sample.joints_3d[0] @ sample.intrinsics.T
    np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], sample.joints_2d[0],
                               atol=1e-3)
    # Joints lie inside the hand: most project onto pixels the segmentation gives to a hand.
    uv = np.round(sample.joints_2d[0]).astype(int)
    inside = np.all((uv >= 0) & (uv < 96), axis=1)
    on_hand = sample.segmentation[uv[inside, 1], uv[inside, 0]] > 0
    assert inside.sum() >= 15 and on_hand.mean() > 0.6
    np.testing.assert_array_equal(sample.mask, sample.segmentation > 0)


def test_two_hand_scene_lists_the_right_hand_first_and_labels_both():
    sample = render_sample(5, 0, CONFIG, two_hands=True)
    assert list(sample.handedness) == [0, 1]
    classes = np.unique(sample.segmentation)
    assert classes.min() == 0 and classes.max() > 16  # left-hand parts are 17-32


def test_vertex_normals_sum_the_adjacent_face_normals():
    from hand_pose_ros.data.render import vertex_normals
    from hand_pose_ros.hand.mesh import hand_template

    template = hand_template()
    vertices = template.vertices + np.random.default_rng(0).normal(0, 1e-3,
                                                                     template.vertices.shape)
    tri = vertices[template.faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    expected = np.zeros_like(vertices)
    for face, normal in zip(template.faces, face_normals, strict=True):
        expected[face] += normal
    np.testing.assert_allclose(vertex_normals(vertices, template.faces), expected, atol=1e-15)


def test_stream_kinds_and_negatives_are_fixed_per_index():
    from hand_pose_ros.data.synth import render_negative, synthetic_sample

    single = synthetic_sample(2, 4, CONFIG, kind="single")
    np.testing.assert_array_equal(single.image,
                                  render_sample(2, 4, CONFIG, two_hands=False).image)
    assert synthetic_sample(2, 4, CONFIG, kind="two").num_hands == 2
    negatives = [i for i in range(12)
                 if synthetic_sample(2, i, CONFIG, negative_fraction=0.5).num_hands == 0]
    assert 0 < len(negatives) < 12
    np.testing.assert_array_equal(synthetic_sample(2, negatives[0], CONFIG, negative_fraction=0.5)
                                  .image, render_negative(2, negatives[0], CONFIG).image)
    with pytest.raises(ValueError, match="kind"):
        synthetic_sample(2, 0, CONFIG, kind="three")


def test_renderer_refuses_to_draw_in_a_process_forked_after_rendering():
    import os

    from hand_pose_ros.data import render

    render_sample(1, 0, CONFIG)  # this process holds a GL context now
    pid = os.fork()
    if pid == 0:  # child: must raise at once instead of hanging in llvmpipe
        try:
            render.get_renderer()
        except RuntimeError as error:
            os._exit(0 if "spawn" in str(error) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
