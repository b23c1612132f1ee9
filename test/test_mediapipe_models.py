"""Every registered estimator: built by name, same result type and shapes, on every backend."""

import numpy as np
import pytest

from hand_pose_ros.models import HandEstimate, create_model, list_models

pytestmark = pytest.mark.usefixtures("mediapipe_weights")


def test_registry_lists_the_mediapipe_models():
    assert {"mediapipe", "mediapipe_lite"} <= set(list_models())


def test_unknown_model_is_rejected_with_the_registered_names():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mediapipe"):
        create_model("nope")


@pytest.mark.parametrize("name", list_models())
def test_estimator_returns_the_common_result_type(name):
    model = create_model(name, backend="torch")
    crops = np.random.default_rng(0).integers(0, 256, (2, model.input_size, model.input_size, 3),
                                               dtype=np.uint8)
    result = model.estimate(crops)
    hands = 2 * getattr(model, "hands_per_crop", 1)  # two-hand models: right, left per crop
    assert isinstance(result, HandEstimate) and len(result) == hands
    assert result.joints_3d.shape == (hands, 21, 3) and result.joints_2d.shape == (hands, 21, 2)
    assert result.joint_confidence.shape == (hands, 21)
    assert np.allclose(result.joints_3d[:, 0], 0.0), "joints are relative to the wrist"
    for array in (result.joints_3d, result.joints_2d, result.scores, result.right_hand):
        assert np.all(np.isfinite(array))
    assert np.all((result.scores >= 0) & (result.scores <= 1))


def test_estimator_rejects_crops_of_the_wrong_size():
    model = create_model("mediapipe_lite", backend="torch")
    with pytest.raises(ValueError, match="crops must be"):
        model.estimate(np.zeros((1, 100, 100, 3), np.uint8))
