"""``hand-pose export``: ONNX files that onnxruntime runs like torch and that TensorRT's ONNX
parser accepts (supported ops, static image size, no float64 or integer outputs)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hand_pose_ros.cli import main
from hand_pose_ros.export import TENSORRT_ONNX_OPS, tensorrt_problems

pytestmark = pytest.mark.usefixtures("mediapipe_weights")


def input_dims(model) -> list:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


@pytest.mark.parametrize("name, size, args, batch", [
    ("mediapipe_lite", 224, [], 1),
    pytest.param("palm_detection_lite", 192, ["--dynamic-batch", "--batch", "4"], "dynamic",
                 marks=pytest.mark.slow),
])
def test_exported_graph_is_tensorrt_friendly_and_runs_in_onnxruntime(tmp_path, capsys, name,
                                                                     size, args, batch):
    assert main(["export", "--model", name, "--out", str(tmp_path), *args]) == 0
    out = capsys.readouterr().out
    assert "TensorRT-friendly: yes" in out and "max abs difference" in out
    model = onnx.load(str(tmp_path / f"{name}.onnx"))
    assert not list(tmp_path.glob("*.data")), "weights embedded"
    assert {n.op_type for n in model.graph.node} <= TENSORRT_ONNX_OPS
    assert {n.domain for n in model.graph.node} <= {""}
    dims = input_dims(model)
    assert dims[1:] == [3, size, size], "channels and image size are static"
    assert (isinstance(dims[0], str)) == (batch == "dynamic")
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in model.graph.output)
    assert all(i.data_type != TensorProto.DOUBLE for i in model.graph.initializer)
    runs = 3 if batch == "dynamic" else 1
    session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"))
    outputs = session.run(None, {"x": np.zeros((runs, 3, size, size), np.float32)})
    assert all(o.shape[0] == runs and np.all(np.isfinite(o)) for o in outputs)


def test_tensorrt_check_names_each_problem():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", 224])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["batch"])
    z = helper.make_tensor_value_info("z", TensorProto.DOUBLE, ["batch"])
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"]),
                               helper.make_node("Cast", ["x"], ["z"], to=TensorProto.DOUBLE)],
                              "bad", [x], [y, z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    problems = "; ".join(tensorrt_problems(model, dynamic_batch=False))
    for expected in ("opset 21", "op NonZero", "non-batch axes must be static",
                     "batch axis should be static", "float64", "output y is INT64"):
        assert expected in problems


def test_tensorrt_format_without_tensorrt_ends_with_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    code = main(["export", "--model", "mediapipe_lite", "--format", "tensorrt",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and err.startswith("error: ") and "TensorRT" in err
    assert not list(tmp_path.iterdir()), "nothing exported before failing"


def test_unknown_model_is_one_line_with_the_choices(tmp_path, capsys):
    assert main(["export", "--model", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "palm_detection" in err
