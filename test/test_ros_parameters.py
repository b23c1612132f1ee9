"""Node parameters are declared with descriptions and ranges; bad values fail with a clear error."""

import pytest
import rclpy
from rclpy.parameter import Parameter
from ros_graph import ros_context

from hand_pose_ros.nodes.parameters import ParameterError, ParameterSpec, declare_parameters

pytestmark = pytest.mark.ros

SPECS = [
    ParameterSpec("max_hands", 2, "most hands tracked at once", min_value=1, max_value=4),
    ParameterSpec("min_score", 0.5, "detection threshold, probability", 0.0, 1.0),
    ParameterSpec("backend", "onnxruntime", "runtime", choices=("torch", "onnxruntime")),
    ParameterSpec("publish_tf", True, "publish /tf frames"),
]


def declare_with(overrides: list[Parameter]):
    with ros_context() as context:
        node = rclpy.create_node(
            "params_under_test", context=context, parameter_overrides=overrides
        )
        try:
            return declare_parameters(node, SPECS), node.describe_parameters(["min_score"])[0]
        finally:
            node.destroy_node()


def test_defaults_are_declared_with_description_and_range():
    values, descriptor = declare_with([])
    assert values == {
        "max_hands": 2, "min_score": 0.5, "backend": "onnxruntime", "publish_tf": True
    }
    assert descriptor.description == "detection threshold, probability"
    assert descriptor.floating_point_range[0].to_value == 1.0


def test_valid_override_is_used():
    values, _ = declare_with([Parameter("max_hands", value=1), Parameter("backend", value="torch")])
    assert values["max_hands"] == 1 and values["backend"] == "torch"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (Parameter("max_hands", value="two"), "'max_hands' has the wrong type"),
        (Parameter("max_hands", value=9), "max_hands"),
        (Parameter("min_score", value=1.5), "min_score"),
        (Parameter("min_score", value=float("nan")), "min_score"),
        (Parameter("backend", value="tensorflow"), "'backend' = 'tensorflow' is not one of"),
        (Parameter("publish_tf", value=3), "'publish_tf' has the wrong type"),
    ],
)
def test_bad_parameter_fails_with_a_message_naming_it(override, message):
    with pytest.raises(ParameterError, match=message):
        declare_with([override])
