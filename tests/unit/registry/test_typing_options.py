"""layer_precisions, precision_constraints and io_formats on the registry's side: the spec's rules, the
submit check, the features a build needs, the typed `io` of an engine, and the CLI flags that write them."""

from __future__ import annotations

import types
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from registry import cli, clitypes
from registry.errors import InvalidSpec
from registry.keys import build_key
from registry.schemas import EngineInfo, EngineTensor
from registry.services import builds, fleet
from registry.spec import parse_spec

RULE = {"pattern": "conv0", "precision": "fp32"}


# ---------------------------------------------------------------------------------------------------------
# spec
# ---------------------------------------------------------------------------------------------------------
def test_layer_rules_need_constraints_and_no_strong_typing():
    with pytest.raises(InvalidSpec, match="layer_precisions need precision_constraints 'obey' or 'prefer'"):
        parse_spec({"layer_precisions": [RULE]})
    with pytest.raises(InvalidSpec, match="strongly_typed takes every layer's type from the model"):
        parse_spec({"layer_precisions": [RULE], "precision_constraints": "obey", "strongly_typed": True})
    spec = parse_spec({"layer_precisions": [RULE], "precision_constraints": "obey"})
    assert spec.uses_tensorrt_options() == ["layer_precisions", "precision_constraints"]


def test_the_new_options_at_their_default_keep_every_earlier_key():
    model, target = "sha256:" + "0" * 64, "tensorrt==8.6.0@h100"
    old = build_key(model=model, target=target, spec=parse_spec({"precision": ["fp16"]}))
    same = parse_spec({"precision": ["fp16"], "layer_precisions": [], "precision_constraints": "none",
                       "io_formats": {}})
    assert build_key(model=model, target=target, spec=same) == old
    typed = parse_spec({"precision": ["fp16"], "io_formats": {"x": {"dtype": "fp16"}}})
    assert build_key(model=model, target=target, spec=typed) != old


def test_features_a_build_needs():
    spec = parse_spec({"layer_precisions": [{"pattern": "a", "precision": "fp32", "output_types": ["fp16"]},
                                            {"pattern": "b", "output_types": ["fp16", "int8"]}],
                       "precision_constraints": "prefer",
                       "io_formats": {"x": {"dtype": "fp16", "formats": ["hwc8", "chw2"]}}})
    assert fleet.spec_features(spec) == [
        "precision_constraints=prefer", "layer_precisions", "layer_precisions.dtype=fp32",
        "layer_precisions.dtype=fp16", "layer_precisions.dtype=int8", "io_formats.dtype=fp16",
        "io_formats.format=chw2", "io_formats.format=hwc8"]
    probed_86 = ("precision_constraints=prefer", "layer_precisions", "layer_precisions.dtype=fp32",
                 "layer_precisions.dtype=fp16", "layer_precisions.dtype=int8", "io_formats.dtype=fp16",
                 "io_formats.format=chw2")  # say hwc8 were missing
    assert fleet.unsupported_features(spec, probed_86) == ["io_formats.format=hwc8"]
    assert fleet.spec_features(parse_spec({})) == []


def test_submit_refuses_io_formats_naming_no_model_tensor():
    model = types.SimpleNamespace(inputs=[{"name": "input"}], outputs=[{"name": "logits"}])
    builds._check_io_formats(parse_spec({"io_formats": {"input": {"dtype": "fp16"}, "logits": {"dtype": "fp16"}}}),
                             model)
    with pytest.raises(InvalidSpec) as caught:
        builds._check_io_formats(parse_spec({"io_formats": {"images": {"dtype": "fp16"}}}), model)
    assert str(caught.value) == ("spec.io_formats.images: the model has no input or output 'images'; its inputs: "
                                 "input; its outputs: logits")


# ---------------------------------------------------------------------------------------------------------
# an engine's io
# ---------------------------------------------------------------------------------------------------------
def engine(metadata: dict, **given) -> EngineInfo:
    return EngineInfo(id="e" * 32, build_id="b" * 32, build_key="k", model="sha256:" + "0" * 64,
                      toolchain="tensorrt", version="8.6.1", device="h100", hardware_compatibility="none",
                      version_compatible=False, refittable=False, spec={}, digest="sha256:" + "1" * 64, size=1,
                      filename="f.plan", metadata=metadata, created_at=datetime.now(timezone.utc), **given)


def test_engine_io_is_read_from_the_metadata():
    meta = {"io": [{"name": "x", "mode": "input", "dtype": "float16", "shape": [-1, 3, 8, 8], "format": "hwc8",
                    "format_desc": "Eight channel format", "profiles": [{"min": [1, 3, 8, 8]}]},
                   {"name": "y", "mode": "output", "dtype": "float32", "shape": [-1, 10]}]}  # ORT: no format
    info = engine(meta)
    assert info.io == [EngineTensor(name="x", mode="input", dtype="float16", shape=[-1, 3, 8, 8], format="hwc8"),
                       EngineTensor(name="y", mode="output", dtype="float32", shape=[-1, 10], format="linear")]
    assert EngineInfo.model_validate_json(info.model_dump_json()).io == info.io  # what the API sends, read back
    assert engine({}).io == [] and engine({"io": [{"name": "broken"}]}).io == []  # never fails the answer


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
def test_layer_rules_from_flags():
    rules = clitypes.layer_rules(["conv0:fp32", "/backbone/*:FP16", "a:b:int8"], ["conv0:fp32", "split:fp16+fp32"])
    assert rules == [{"pattern": "conv0", "precision": "fp32", "output_types": ["fp32"]},
                     {"pattern": "/backbone/*", "precision": "fp16"}, {"pattern": "a:b", "precision": "int8"},
                     {"pattern": "split", "output_types": ["fp16", "fp32"]}]
    with pytest.raises(InvalidSpec, match="--layer-precision 'conv0': give PATTERN:PRECISION"):
        clitypes.layer_rules(["conv0"], [])
    with pytest.raises(InvalidSpec, match="unknown data type 'half'; known: fp32, fp16, bf16"):
        clitypes.layer_rules(["conv0:half"], [])
    with pytest.raises(InvalidSpec, match="one precision per pattern"):
        clitypes.layer_rules(["conv0:fp16+fp32"], [])


def test_io_formats_from_flags():
    assert clitypes.io_formats(["input:fp16:hwc8+chw2", "logits:fp16", "ns:out:int32:linear"]) == {
        "input": {"dtype": "fp16", "formats": ["hwc8", "chw2"]}, "logits": {"dtype": "fp16", "formats": ["linear"]},
        "ns:out": {"dtype": "int32", "formats": ["linear"]}}
    with pytest.raises(InvalidSpec, match="unknown format 'nhwc'"):
        clitypes.io_formats(["input:fp16:nhwc"])
    with pytest.raises(InvalidSpec, match="give NAME:DTYPE"):
        clitypes.io_formats(["input"])
    with pytest.raises(InvalidSpec, match="names 'x' twice"):
        clitypes.io_formats(["x:fp16", "x:fp32"])


def test_layer_rules_default_to_obey_and_a_detailed_layer_table_unless_the_spec_says():
    flags = {"layer_output_types": [], "precision_constraints": None, "io_format": []}
    spec = clitypes.apply_flags({}, layer_precision=["conv0:fp32"], **flags)
    assert spec == {"layer_precisions": [RULE], "precision_constraints": "obey", "profiling_verbosity": "detailed"}
    parse_spec(spec)
    given = {"precision_constraints": "prefer", "profiling_verbosity": "none"}
    assert clitypes.apply_flags(dict(given), layer_precision=["conv0:fp32"], **flags) == {**given,
                                                                                           "layer_precisions": [RULE]}
    assert clitypes.apply_flags({}, layer_precision=[], **flags) == {}


def test_submit_maps_the_flags_onto_the_spec(monkeypatch):
    sent = {}

    class FakeFarm:
        def submit(self, model, target, spec, wait=False, **more):  # noqa: ANN001, ANN003
            sent.update(model=model, target=target, spec=spec)
            return types.SimpleNamespace(id="b" * 32, status="queued", target=target, key="k" * 64,
                                         waiting_reason=None, error=None, warnings=[], engine_id=None)

    monkeypatch.setattr(cli, "_farm", FakeFarm)
    done = CliRunner().invoke(cli.app, [
        "submit", "sha256:" + "0" * 64, "-t", "tensorrt", "--precision", "fp16",
        "--layer-precision", "conv0:fp32", "--layer-output-types", "conv0:fp32", "--precision-constraints", "prefer",
        "--io-format", "input:fp16:hwc8", "--io-format", "logits:fp16"])
    assert done.exit_code == 0, done.output
    assert sent["spec"] == {
        "precision": ["fp16"],
        "layer_precisions": [{"pattern": "conv0", "precision": "fp32", "output_types": ["fp32"]}],
        "precision_constraints": "prefer", "profiling_verbosity": "detailed",
        "io_formats": {"input": {"dtype": "fp16", "formats": ["hwc8"]},
                       "logits": {"dtype": "fp16", "formats": ["linear"]}}}
    parse_spec(sent["spec"])
