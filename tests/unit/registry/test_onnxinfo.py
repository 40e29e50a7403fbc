"""registry.onnxinfo: dynamic dimensions however a model writes them, and the IR 3 initializer inputs."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from registry import onnxinfo
from tests.models import convnet, external_data_model, fully_convolutional, ir3_convnet


@pytest.mark.parametrize(("batch", "spatial", "dims", "names"), [
    (-1, "?", (None, 3, None, None), (None, None, None, None)),
    (0, 32, (None, 3, 32, 32), (None, None, None, None)),
    ("N", "size", (None, 3, None, None), ("N", None, "size", "size")),
    (4, 32, (4, 3, 32, 32), (None, None, None, None)),
])
def test_minus_one_zero_unnamed_and_symbolic_dims_are_all_dynamic(tmp_path: Path, batch, spatial, dims,  # noqa: ANN001
                                                                   names) -> None:
    path = fully_convolutional(tmp_path / "m.onnx", batch=batch, spatial=spatial)
    (desc,) = onnxinfo.graph_io(onnxinfo.load(path), inputs=True)
    assert desc.dims == dims and desc.dim_names == names


def test_initializer_inputs_are_dropped_into_a_copy_beside_the_model(tmp_path: Path) -> None:
    path = ir3_convnet(tmp_path / "zoo.onnx")
    assert len(onnxinfo.initializer_inputs(onnxinfo.load(path))) == 7
    dest = tmp_path / "clean.onnx"
    names = onnxinfo.without_initializer_inputs(path, dest)
    assert names == sorted(["conv.w", "bn.scale", "bn.b", "bn.mean", "bn.var", "fc.w", "fc.b"])
    clean = onnx.load(dest)
    assert [i.name for i in clean.graph.input] == ["input"] and clean.ir_version == 4
    assert len(clean.graph.initializer) == 7
    onnx.checker.check_model(clean)


def test_a_model_without_initializer_inputs_is_left_alone(tmp_path: Path) -> None:
    dest = tmp_path / "clean.onnx"
    assert onnxinfo.without_initializer_inputs(convnet(tmp_path / "m.onnx"), dest) == []
    assert not dest.exists()


def test_the_copy_keeps_external_data_references(tmp_path: Path) -> None:
    path = external_data_model(tmp_path / "ext")
    proto = onnx.load(path, load_external_data=False)
    proto.graph.input.extend([helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims))
                              for i in proto.graph.initializer])
    onnx.save_model(proto, str(path))
    dest = path.with_name(".inputs-model.onnx")
    assert onnxinfo.without_initializer_inputs(path, dest)
    loaded = onnx.load(dest)  # external data resolved from the same folder
    assert [i.name for i in loaded.graph.input] == ["input"] and all(i.raw_data for i in loaded.graph.initializer)
