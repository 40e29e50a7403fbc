"""registry.intake: the raw-protobuf scan that refuses bombs before any parse, and the bounded child that
parses and checks a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import intake
from registry.errors import InvalidModel
from tests.models import convnet, matmul_model
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


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_model_that_takes_too_long_is_refused_and_its_child_killed(tmp_path):
    model = matmul_model(tmp_path / "m.onnx", k=2000, n=2000)  # 16 MB: parsing and checking take ~0.1 s
    intake.warm_up()
    with pytest.raises(InvalidModel, match="longer than 0.01 s"):
        intake.inspect(model, "m.onnx", intake.IntakeLimits(timeout_s=0.01), model.stat().st_size)
    assert children(intake._SERVER.proc.pid) == []  # killed (and reaped) before inspect answered


def test_checks_fork_from_one_warm_server_which_is_replaced_when_it_dies(tmp_path):
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    size = model.stat().st_size
    intake.warm_up()
    server = intake._SERVER.proc
    for _ in range(2):
        assert intake.inspect(model, "c.onnx", intake.IntakeLimits(), size)["inputs"][0]["name"] == "input"
    assert intake._SERVER.proc is server and server.poll() is None
    server.kill()
    server.wait()
    assert intake.inspect(model, "c.onnx", intake.IntakeLimits(), size)["inputs"][0]["name"] == "input"
    assert intake._SERVER.proc is not server
    intake.shut_down()
    assert intake._SERVER is None
    assert intake.inspect(model, "c.onnx", intake.IntakeLimits(), size)["opsets"]  # started again on demand


def test_without_pidfds_each_check_runs_in_a_new_interpreter(tmp_path, monkeypatch):
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    monkeypatch.setattr(intake, "_pidfds_work", lambda: False)
    intake.shut_down()
    assert intake.inspect(model, "c.onnx", intake.IntakeLimits(), model.stat().st_size)["external_files"] == []
    assert intake._SERVER is None
    with pytest.raises(InvalidModel, match="needs more than 300 MiB"):
        intake.inspect(bomb(tmp_path, EMPTY_NODE * 3_000_000), "bomb.onnx",
                       intake.IntakeLimits(max_elements=10**8, memory_mib=282), 6 << 20)
    with pytest.raises(InvalidModel, match="longer than 0.01 s"):
        intake.inspect(model, "c.onnx", intake.IntakeLimits(timeout_s=0.01), model.stat().st_size)


def _float_data_model(path: Path) -> Path:
    """Initializers in float_data and int64_data (not raw_data), a Constant node's tensor attribute."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("cv", TensorProto.FLOAT, [2], [1.0, 2.0])),
         helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Add", ["s", "c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2], np.array([3.0, 4.0]).tolist()),
                     helper.make_tensor("shape", TensorProto.INT64, [2], [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="t")
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("make", ["matmul", "float_data", "external"])
def test_a_skeleton_summarises_like_the_model_without_its_weights(tmp_path, make):
    from registry import onnxinfo
    from tests.models import external_data_model

    path = {"matmul": lambda: matmul_model(tmp_path / "m.onnx", k=300, n=300),
            "float_data": lambda: _float_data_model(tmp_path / "f.onnx"),
            "external": lambda: external_data_model(tmp_path / "ext")}[make]()
    outline = intake.skeleton(path)
    assert outline is not None and len(outline) <= path.stat().st_size
    if make == "matmul":
        assert len(outline) < 2000 < 300 * 300 * 4 < path.stat().st_size
    assert onnxinfo.summary(path, path.name, outline) == onnxinfo.summary(path, path.name)


def test_no_skeleton_of_garbage_and_a_broken_one_falls_back_to_the_file(tmp_path):
    from registry import onnxinfo

    (tmp_path / "g.onnx").write_bytes(b"\xff" * 100)
    assert intake.skeleton(tmp_path / "g.onnx") is None
    model = convnet(tmp_path / "c.onnx", channels=4, layers=2)
    assert onnxinfo.summary(model, "c.onnx", b"\xff\xff not a protobuf") == onnxinfo.summary(model, "c.onnx")


def _short_weights_model(path):
    """matmul_model with its weight's raw_data cut to 100,000 of its 360,000 bytes: onnx's checker refuses it."""
    import onnx

    model = onnx.load(str(matmul_model(path, k=300, n=300)))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.raw_data = weight.raw_data[:100_000]
    onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize("make", ["matmul", "short", "unknown_input"])
def test_the_checker_shown_references_to_the_weights_judges_like_the_file(tmp_path, make):
    """The referring skeleton holds no weight bytes; the checker's verdict over it, with the referred sizes checked,
    is the verdict over the file (a pass, raw_data too small, a broken graph), and its copy is removed."""
    import onnx

    from registry import onnxinfo

    path = tmp_path / "m.onnx"
    if make == "short":
        _short_weights_model(path)
    else:
        matmul_model(path, k=300, n=300)
    if make == "unknown_input":
        model = onnx.load(str(path))
        model.graph.node[0].input[0] = "nowhere"
        onnx.save_model(model, str(path))
    referring = intake.skeleton(path, refer=True)
    assert referring is not None and len(referring) < 2000 < path.stat().st_size
    verdicts = []
    for run in (lambda: onnxinfo.check(path, "m.onnx"), lambda: onnxinfo.check_referring(path, "m.onnx", referring)):
        try:
            run()
            verdicts.append(None)
        except InvalidModel as exc:
            verdicts.append(exc.message)
    assert verdicts[0] == verdicts[1], verdicts
    assert (verdicts[0] is None) == (make == "matmul")
    if make == "short":
        assert "raw_data size (100000 bytes) is too small" in verdicts[1] and "360000 bytes required" in verdicts[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
