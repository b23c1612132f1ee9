"""``hand-pose hand-model``: the exported mesh file is the model's mesh."""

import numpy as np
import pytest

from hand_pose_ros.cli import main
from hand_pose_ros.hand.export_mesh import write_mesh
from hand_pose_ros.hand.model import OpenHandModel
from hand_pose_ros.hand.poses import gesture


def test_obj_export_holds_the_posed_mesh(tmp_path, capsys):
    path = tmp_path / "fist.obj"
    assert main(["hand-model", str(path), "--gesture", "fist", "--scale", "1.1"]) == 0
    assert f"{OpenHandModel().num_vertices} vertices" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    vertices = np.array([[float(v) for v in ln.split()[1:]] for ln in lines if ln[0] == "v"])
    faces = np.array([[int(v) - 1 for v in ln.split()[1:]] for ln in lines if ln[0] == "f"])
    model = OpenHandModel()
    shape = np.zeros((1, model.num_shape))
    shape[0, 0] = np.log(1.1)
    expected = model.forward(gesture("fist")[None], shape).vertices[0]
    np.testing.assert_allclose(vertices, expected, atol=1e-6)
    np.testing.assert_array_equal(faces, model.faces)


def test_ply_export_and_unknown_format(tmp_path):
    model = OpenHandModel()
    vertices = model.forward(np.zeros((1, 15, 3))).vertices[0]
    path = tmp_path / "hand.ply"
    write_mesh(path, vertices, model.faces)
    text = path.read_text()
    assert f"element vertex {model.num_vertices}" in text
    assert f"element face {len(model.faces)}" in text
    with pytest.raises(ValueError, match=".obj or .ply"):
        write_mesh(tmp_path / "hand.stl", vertices, model.faces)
