"""registry.intake: the raw-protobuf scan that refuses bombs before any parse, and the bounded child that
parses and checks a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import intake
from registry.errors import InvalidModel
from tests.models import convnet
from tests.models import protobuf_field as field


def bomb(tmp_path: Path, graph: bytes, name: str = "bomb.onnx", top: int = 7) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x08\x08" + field(top, graph))  # ir_version 8, then the graph (or a function)
    return path


EMPTY_NODE = field(1, b"")
IF_NODE_WITH_BOMB = field(1, field(5, field(6, EMPTY_NODE * 3000)))  # If.then_branch holding 3000 nodes


@pytest.mark.parametrize(("graph", "top", "elements"), [
    (EMPTY_NODE * 5000, 7, 5001),  # nodes
    (field(5, b"") * 5000, 7, 5001),  # initializers
    (field(11, b"") * 5000, 7, 5001),  # inputs
    (IF_NODE_WITH_BOMB, 7, 1 + 1 + 1 + 3000),  # graph, node, attribute, subgraph nodes
    (field(7, b"") * 5000, 25, 5001),  # a function's nodes
])
def test_scan_counts_every_graph_element_and_refuses_past_the_limit(tmp_path, graph, top, elements):
    path = bomb(tmp_path, graph, top=top)
    assert intake.scan(path, 10_000, "bomb.onnx") == elements
    with pytest.raises(InvalidModel, match="more than 1,000 graph elements.*TRTFARM_MAX_MODEL_ELEMENTS"):
        intake.scan(path, 1000, "bomb.onnx")


def test_scan_of_a_real_model_and_of_garbage(tmp_path):
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    assert 10 < intake.scan(model, 10_000, "c.onnx") < 100
    garbage = {"text.onnx": b"this is not a model\n", "empty.onnx": b"", "cut.onnx": model.read_bytes()[:-7]}
    for name, data in garbage.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InvalidModel, match="not an ONNX model|cannot be read"):
            intake.scan(tmp_path / name, 10_000, name)


def test_inspect_parses_in_a_bounded_child(tmp_path):
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    found = intake.inspect(model, "c.onnx", intake.IntakeLimits(), model.stat().st_size)
    assert found["inputs"][0]["name"] == "input" and found["external_files"] == [] and found["opsets"]


def test_a_model_that_needs_more_memory_than_allowed_is_refused(tmp_path):
    path = bomb(tmp_path, EMPTY_NODE * 3_000_000)  # 6 MB of empty nodes: ~700 MB once parsed
    with pytest.raises(InvalidModel, match="needs more than 300 MiB"):
        intake.inspect(path, "bomb.onnx", intake.IntakeLimits(max_elements=10**8, memory_mib=282), 6 << 20)


def test_a_model_that_takes_too_long_is_refused(tmp_path):
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    with pytest.raises(InvalidModel, match="longer than 0.01 s"):
        intake.inspect(model, "c.onnx", intake.IntakeLimits(timeout_s=0.01), model.stat().st_size)
