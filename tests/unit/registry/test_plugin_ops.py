"""Models with TensorRT plugin ops (an op ONNX does not define, in the default domain, which TensorRT's ONNX
parser builds as the plugin of that name): the intake's checker takes them (it checks everything else), the
summary counts them, `plugin_ops` names them and nothing else (ONNX ops, other domains, local functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import onnxinfo
from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.errors import InvalidModel
from registry.services.models import register_model
from registry.settings import Settings
from tests.models import efficient_nms_model, efficient_nms_proto


def test_a_model_with_a_plugin_op_passes_the_intake_and_keeps_its_op_counts(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url())
    db, blobs = Database(settings.resolved_database_url()), LocalBlobStore(tmp_path / "blobs")
    efficient_nms_model(tmp_path / "m" / "nms.onnx", batch="N")
    model, created = register_model(db, blobs, tmp_path / "m", "nms.onnx")
    assert created and model.op_types == {"EfficientNMS_TRT": 1}
    assert [o.name for o in model.outputs] == ["num_detections", "detection_boxes", "detection_scores",
                                               "detection_classes"]
    assert [o.dtype for o in model.outputs] == ["int32", "float32", "float32", "int32"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["nms.onnx"]  # the checker's copy is gone


def test_the_checker_still_checks_everything_else(tmp_path: Path):
    from onnx import helper

    proto = efficient_nms_proto()
    proto.graph.node.append(helper.make_node("Relu", ["boxes", "scores"], ["extra"]))  # Relu takes one input
    path = tmp_path / "bad.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(InvalidModel, match="bad.onnx fails the ONNX checker") as refused:
        onnxinfo.check(path, "bad.onnx")
    assert "Relu" in refused.value.details["checker"]
    unknown = efficient_nms_proto()
    unknown.graph.node[0].op_type = "NotAnOp"  # still a plugin op to TensorRT: the parser decides at build time
    path.write_bytes(unknown.SerializeToString())
    onnxinfo.check(path, "bad.onnx")


def test_plugin_ops_are_the_default_domains_unknown_ops_only():
    from onnx import helper

    proto = efficient_nms_proto()
    assert onnxinfo.plugin_ops(proto) == ["EfficientNMS_TRT"]
    proto.graph.node.extend([helper.make_node("Relu", ["boxes"], ["r"]),
                             helper.make_node("QuantizeLinear", ["r", "s"], ["q"], domain="com.microsoft"),
                             helper.make_node("MyFunction", ["r"], ["f"])])
    proto.functions.append(helper.make_function("", "MyFunction", ["x"], ["y"],
                                                [helper.make_node("Relu", ["x"], ["y"])],
                                                [helper.make_opsetid("", 13)]))
    assert onnxinfo.plugin_ops(proto) == ["EfficientNMS_TRT"]
