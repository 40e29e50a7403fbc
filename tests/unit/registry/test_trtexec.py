"""trtexec's build flags as a spec (registry/trtexec.py) and `trtfarm submit --trtexec` (registry/clitrtexec.py):
every flag form, unknown and refused flags, --tacticSources relative to the version's defaults, I/O formats in
the model's order, --memPoolSize units, profiles, layer rules, and the merge with --spec and the other flags."""

from __future__ import annotations

import types

import pytest
from typer.testing import CliRunner

from registry import cli
from registry.errors import InvalidSpec
from registry.spec import parse_spec
from registry.trtexec import default_tactic_sources, layer_rules, spec_from_trtexec


def names(inputs=("images", "mask"), outputs=("logits",)):  # noqa: ANN001, ANN201
    calls = []

    def model_io():  # noqa: ANN202
        calls.append(1)
        return list(inputs), list(outputs)

    model_io.calls = calls
    return model_io


def spec_of(text: str, **kw) -> dict:  # noqa: ANN003
    return spec_from_trtexec(text, **kw).spec


# ---------------------------------------------------------------------------------------------------------
# flag forms
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "--builderOptimizationLevel=5", "--builderOptimizationLevel 5", "  --builderOptimizationLevel='5' ",
    '--builderOptimizationLevel "5"'])
def test_a_value_after_an_equals_sign_or_as_the_next_word(text: str) -> None:
    assert spec_of(text) == {"optimization_level": 5}


def test_switches_and_precisions() -> None:
    found = spec_from_trtexec("--fp16 --bf16 --int8 --fp8 --int4 --noTF32 --refit --versionCompatible "
                              "--excludeLeanRuntime --skipInference")
    assert found.spec == {"precision": ["bf16", "fp16", "fp8", "int4", "int8"], "tf32": False, "refit": "refit",
                          "version_compatible": True, "exclude_lean_runtime": True, "bench": {"enabled": False}}
    assert found.sources["precision"] == "--fp16 --bf16 --int8 --fp8 --int4"
    assert spec_of("--vc --stripAllWeights --stronglyTyped") == {
        "version_compatible": True, "refit": "refit", "strip_weights": True, "strongly_typed": True}
    assert spec_of("--useDLACore=0 --allowGPUFallback") == {"dla_core": 0, "gpu_fallback": True}
    parse_spec(spec_of("--fp16 --noTF32 --refit --vc --excludeLeanRuntime"))


def test_best_is_fp16_and_int8_and_says_so() -> None:
    found = spec_from_trtexec("--best --fp16")
    assert found.spec == {"precision": ["fp16", "int8"]}
    assert any("--best: precision fp16 and int8" in n and "--bf16" in n for n in found.notes)


@pytest.mark.parametrize(("value", "expected"), [
    ("none", "none"), ("ampere+", "ampere_plus"), ("Ampere+", "ampere_plus"),
    ("sameComputeCapability", "same_compute_capability")])
def test_hardware_compatibility_levels(value: str, expected: str) -> None:
    assert spec_of(f"--hardwareCompatibilityLevel={value}") == {"hardware_compatibility": expected}


def test_profiling_verbosity_precision_constraints_and_bench() -> None:
    found = spec_from_trtexec("--profilingVerbosity=verbose --precisionConstraints=prefer --iterations=20")
    assert found.spec == {"profiling_verbosity": "detailed", "precision_constraints": "prefer",
                          "bench": {"iterations": 20}}
    assert any("deprecated name of detailed" in n for n in found.notes)
    with pytest.raises(InvalidSpec, match="--precisionConstraints=always: give one of none, prefer, obey"):
        spec_of("--precisionConstraints=always")


def test_ignored_flags_leave_a_note() -> None:
    found = spec_from_trtexec("--timingCacheFile=/tmp/t.cache --explicitBatch --verbose")
    assert found.spec == {}
    assert [n.split()[0] for n in found.notes] == ["--timingCacheFile", "--explicitBatch", "--verbose"]
    assert "the farm keeps its own timing cache" in found.notes[0]


# ---------------------------------------------------------------------------------------------------------
# refused and unknown flags
# ---------------------------------------------------------------------------------------------------------
def test_unknown_and_refused_flags_are_named_all_at_once() -> None:
    with pytest.raises(InvalidSpec) as caught:
        spec_of("--fp61 --useCudaGraph --warmUp=200 --sparsity=enable --onnx=m.onnx --saveEngine e.plan --frobnicate")
    text = str(caught.value)
    assert text.startswith("--trtexec: unknown trtexec flag --fp61 (did you mean --fp16?)")
    for part in ("--useCudaGraph is not supported: a run-time option", "--warmUp is not supported: trtexec warms "
                 "up for N milliseconds", "--sparsity is not supported: a build option the farm's spec has no",
                 "--onnx is not supported: the model is submit's MODEL argument",
                 "--saveEngine is not supported: the farm stores the engine: `trtfarm fetch MODEL -o FILE`",
                 "unknown trtexec flag --frobnicate"):
        assert part in text
    assert "unknown trtexec flag e.plan" not in text  # --saveEngine's value, not a flag


@pytest.mark.parametrize(("text", "message"), [
    ("--fp16=false", "--fp16 takes no value (trtexec would ignore 'false')"),
    ("--memPoolSize", "--memPoolSize needs a value"),
    ("--builderOptimizationLevel=3 --builderOptimizationLevel=4", "--builderOptimizationLevel is given twice"),
    ("--builderOptimizationLevel=high", "--builderOptimizationLevel=high: give a whole number"),
    ("model.onnx --fp16", "'model.onnx' is not a flag"),
    ("--fp16 'unterminated", "No closing quotation"),
    ("--plugins=libfoo.so", "plugin libraries go with `trtfarm submit --plugin FILE`"),
    ("--calib=c.cache", "--calib needs --int8 or --best"),
])
def test_malformed_flags(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_of(text)


# ---------------------------------------------------------------------------------------------------------
# --memPoolSize
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "mib"), [
    ("workspace:1024", 1024), ("workspace:1024M", 1024), ("workspace:1024m", 1024), ("workspace:4G", 4096),
    ("workspace:2097152K", 2048), ("workspace:1048576B", 1), ("workspace:0.5G", 512), ("workspace:1.5", 2),
    ("workspace:1000K", 1)])
def test_mem_pool_size_units_default_to_mib(value: str, mib: int) -> None:
    found = spec_from_trtexec(f"--memPoolSize={value}")
    assert found.spec == {"workspace_mib": mib}
    assert bool(found.notes) == (value in ("workspace:1.5", "workspace:1000K"))  # rounded up to whole MiB


def test_mem_pool_size_other_pools_and_bad_sizes() -> None:
    assert spec_of("--workspace=256") == {"workspace_mib": 256}  # trtexec 8.x
    with pytest.raises(InvalidSpec, match="pool 'dlaSRAM' has no spec setting"):
        spec_of("--memPoolSize=workspace:1G,dlaSRAM:1M")
    with pytest.raises(InvalidSpec, match="pool 'scratch' is unknown"):
        spec_of("--memPoolSize=scratch:1G")
    for size in ("0", "-1G", "1T", "lots"):
        with pytest.raises(InvalidSpec, match="should be a positive number with an optional unit"):
            spec_of(f"--memPoolSize=workspace:{size}")


# ---------------------------------------------------------------------------------------------------------
# --tacticSources
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "expected"), [
    ("8.6.1", ["cublas", "cublas_lt", "edge_mask_convolutions", "jit_convolutions"]),  # cudnn off
    ("8.4.3", ["cublas", "cublas_lt", "edge_mask_convolutions"]),
    ("10.0.1", ["cublas", "cublas_lt", "edge_mask_convolutions", "jit_convolutions"]),
    ("10.3", ["cublas", "edge_mask_convolutions", "jit_convolutions"]),
])
def test_tactic_sources_are_relative_to_the_versions_defaults(version: str, expected: list[str]) -> None:
    found = spec_from_trtexec("--tacticSources=-CUDNN,+CUBLAS", version=version)
    assert found.spec == {"tactic_sources": expected}
    assert any(f"relative to TensorRT {version}'s defaults" in n for n in found.notes)
    parse_spec(found.spec)


def test_tactic_sources_naming_all_five_need_no_version() -> None:
    text = "--tacticSources=+cublas,-cublasLt,-CUDNN,+EDGE_MASK_CONVOLUTIONS,-JIT_CONVOLUTIONS"
    assert spec_of(text) == {"tactic_sources": ["cublas", "edge_mask_convolutions"]}


def test_tactic_sources_without_a_version_or_malformed() -> None:
    for version in (None, "8", "10"):
        with pytest.raises(InvalidSpec, match="differ by version .* name it \\(--target tensorrt==10.3@"):
            spec_of("--tacticSources=-CUDNN", version=version)
    with pytest.raises(InvalidSpec, match="'CUDNN' must start with \\+ \\(enable\\) or - \\(disable\\)"):
        spec_of("--tacticSources=CUDNN", version="8.6")
    with pytest.raises(InvalidSpec, match="unknown tactic source 'CUDA'"):
        spec_of("--tacticSources=-CUDA", version="8.6")
    with pytest.raises(InvalidSpec, match="cannot enable and disable cudnn"):
        spec_of("--tacticSources=-CUDNN,+cudnn", version="8.6")
    assert default_tactic_sources("11.0") == {"edge_mask_convolutions", "jit_convolutions"}
    assert default_tactic_sources("9.3.0") == default_tactic_sources("8.5.3.1")


# ---------------------------------------------------------------------------------------------------------
# I/O formats
# ---------------------------------------------------------------------------------------------------------
def test_io_formats_follow_the_models_order() -> None:
    model_io = names()
    found = spec_from_trtexec("--inputIOFormats=fp16:chw,int32:chw --outputIOFormats=fp16:hwc8+chw", model_io=model_io)
    assert found.spec == {"io_formats": {"images": {"dtype": "fp16", "formats": ["linear"]},
                                         "mask": {"dtype": "int32", "formats": ["linear"]},
                                         "logits": {"dtype": "fp16", "formats": ["hwc8", "linear"]}}}
    assert len(model_io.calls) == 1  # asked once
    assert "--inputIOFormats: images=fp16:linear, mask=int32:linear" in found.notes
    parse_spec(found.spec)


def test_one_io_format_is_for_every_input() -> None:
    assert spec_of("--inputIOFormats=fp16:chw16", model_io=names())["io_formats"] == {
        "images": {"dtype": "fp16", "formats": ["chw16"]}, "mask": {"dtype": "fp16", "formats": ["chw16"]}}


def test_io_formats_wrong_count_type_or_format() -> None:
    model_io = names(inputs=("a", "b", "c"))
    with pytest.raises(InvalidSpec, match=r"2 formats for the model's 3 inputs \(a, b, c\); give one per input"):
        spec_of("--inputIOFormats=fp16:chw,fp16:chw", model_io=model_io)
    with pytest.raises(InvalidSpec, match="type 'half' has no spec name"):
        spec_of("--inputIOFormats=half:chw", model_io=model_io)
    with pytest.raises(InvalidSpec, match="format dla_linear is for DLA"):
        spec_of("--inputIOFormats=fp16:dla_linear", model_io=model_io)
    with pytest.raises(InvalidSpec, match="unknown format 'nhwc'"):
        spec_of("--inputIOFormats=fp16:nhwc", model_io=model_io)
    with pytest.raises(InvalidSpec, match="should be TYPE:FORMAT"):
        spec_of("--outputIOFormats=fp16", model_io=model_io)
    with pytest.raises(InvalidSpec, match="needs the model's input and output names"):
        spec_of("--inputIOFormats=fp16:chw")


def test_flags_that_need_no_names_never_ask_for_them() -> None:
    model_io = names()
    spec_of("--fp16 --minShapes=x:1x3 --maxShapes=x:4x3", model_io=model_io)
    assert model_io.calls == []


# ---------------------------------------------------------------------------------------------------------
# shapes and profiles
# ---------------------------------------------------------------------------------------------------------
def test_min_opt_max_shapes_make_one_profile() -> None:
    found = spec_from_trtexec("--minShapes=images:1x3x224x224,mask:1x1 --optShapes=images:8x3x224x224,mask:8x1 "
                              "--maxShapes=images:32x3x224x224,mask:32x1")
    assert found.spec == {"profiles": [{"images": {"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224],
                                                   "max": [32, 3, 224, 224]},
                                        "mask": {"min": [1, 1], "opt": [8, 1], "max": [32, 1]}}]}
    assert found.sources["profiles"] == "--minShapes --optShapes --maxShapes"
    parse_spec(found.spec)


@pytest.mark.parametrize(("text", "expected"), [
    ("--optShapes=x:4x3", {"min": [4, 3], "opt": [4, 3], "max": [4, 3]}),  # trtexec's processShapes
    ("--minShapes=x:1x3 --maxShapes=x:8x3", {"min": [1, 3], "opt": [8, 3], "max": [8, 3]}),
    ("--minShapes=x:1x3 --optShapes=x:2x3", {"min": [1, 3], "opt": [2, 3], "max": [2, 3]}),
    ("--maxShapes=x:8x3", {"min": [8, 3], "opt": [8, 3], "max": [8, 3]}),
    ("--optShapes=x:scalar", {"min": [], "opt": [], "max": []}),
    ("--optShapes=x:", {"min": [], "opt": [], "max": []}),
])
def test_a_missing_min_opt_or_max_is_filled_as_trtexec_does(text: str, expected: dict) -> None:
    assert spec_of(text) == {"profiles": [{"x": expected}]}


def test_shape_names_with_colons_and_wildcards() -> None:
    assert spec_of("--optShapes=ns:input:1x3") == {"profiles": [{"ns:input": {"min": [1, 3], "opt": [1, 3],
                                                                              "max": [1, 3]}}]}
    assert spec_of(r"--optShapes=\'in:0\':1x3") == {"profiles": [{"in:0": {"min": [1, 3], "opt": [1, 3],
                                                                           "max": [1, 3]}}]}
    model_io = names(inputs=("input_ids", "attention_mask", "pixel"))
    found = spec_of("--minShapes=*:1x16,pixel:1x3 --maxShapes=*:4x128,pixel:4x3", model_io=model_io)
    assert found == {"profiles": [{"pixel": {"min": [1, 3], "opt": [4, 3], "max": [4, 3]},
                                   "input_ids": {"min": [1, 16], "opt": [4, 128], "max": [4, 128]},
                                   "attention_mask": {"min": [1, 16], "opt": [4, 128], "max": [4, 128]}}]}
    with pytest.raises(InvalidSpec, match="shape name\\(s\\) zz\\* match no other input"):
        spec_of("--optShapes=zz*:1", model_io=model_io)


def test_several_profiles_with_profile() -> None:
    found = spec_from_trtexec("--profile=0 --minShapes=x:1x3 --optShapes=x:2x3 --maxShapes=x:4x3 --fp16 "
                              "--profile=1 --minShapes=x:5x3 --maxShapes=x:16x3")
    assert found.spec == {"profiles": [{"x": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}},
                                       {"x": {"min": [5, 3], "opt": [16, 3], "max": [16, 3]}}],
                          "precision": ["fp16"]}
    parse_spec(found.spec)


@pytest.mark.parametrize(("text", "message"), [
    ("--minShapes=x:1 --minShapes=x:2", "--minShapes is given twice"),
    ("--profile=0 --minShapes=x:1 --fp16 --maxShapes=x:2", "--maxShapes is outside a --profile group"),
    ("--profile=1 --optShapes=x:1", r"profile indices \[1\]: number them 0, 1, ... without gaps"),
    ("--profile=0 --optShapes=x:1 --profile=0 --optShapes=x:2", "--profile=0 is given twice"),
    ("--profile=0 --fp16", "a --profile without shape flags after it"),
    ("--profile=0 --minShapes=x:1 --minShapes=x:2", "--minShapes twice in one profile"),
    ("--minShapes=x:1x3,y:1 --maxShapes=x:4x3", r"missing: y \(no --maxShapes\)"),
    ("--optShapes=x:-1x3", "a build shape has no -1"),
    ("--optShapes=x:1xN", "dimensions are integers joined by 'x'"),
    ("--optShapes=1x3", "'1x3' should be NAME:VALUE"),
])
def test_bad_shapes(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        spec_of(text)


# ---------------------------------------------------------------------------------------------------------
# layer precisions
# ---------------------------------------------------------------------------------------------------------
def test_layer_rules_exact_names_first_with_the_types_a_pattern_gives_them() -> None:
    found = spec_from_trtexec("--layerPrecisions=conv*:fp16,conv0:fp32,conv0:int8 --layerOutputTypes=conv1:fp32,"
                              "split:fp16+fp32 --precisionConstraints=obey")
    assert found.spec["layer_precisions"] == [
        {"pattern": "conv0", "precision": "int8"},  # the later conv0 overrides the earlier, as in trtexec
        {"pattern": "conv1", "precision": "fp16", "output_types": ["fp32"]},  # conv* gives conv1 its precision
        {"pattern": "split", "output_types": ["fp16", "fp32"]},
        {"pattern": "conv*", "precision": "fp16"}]
    assert found.defaults == {"profiling_verbosity": "detailed"}
    parse_spec({**found.spec, **found.defaults})


def test_layer_names_with_fnmatch_characters_stay_literal() -> None:
    assert layer_rules({"/blocks[0]/conv?": ["fp32"]}, {}) == [{"pattern": "/blocks[[]0]/conv[?]",
                                                                 "precision": "fp32"}]
    with pytest.raises(InvalidSpec, match="has more than one '\\*'"):
        spec_of("--layerPrecisions=*a*:fp16")
    with pytest.raises(InvalidSpec, match="should be LAYER:TYPE"):
        spec_of("--layerPrecisions=conv0:half")


# ---------------------------------------------------------------------------------------------------------
# trtfarm submit --trtexec
# ---------------------------------------------------------------------------------------------------------
class FakeFarm:
    def __init__(self, sent: dict) -> None:
        self.sent = sent

    def submit(self, model, target, spec, wait=False, **more):  # noqa: ANN001, ANN003, ANN201
        self.sent.update(model=model, target=target, spec=spec, **more)
        return types.SimpleNamespace(id="b" * 32, status="queued", target=target, key="k" * 64,
                                     waiting_reason=None, error=None, warnings=[], engine_id=None)

    def model(self, model):  # noqa: ANN001, ANN201
        self.sent["asked_model"] = model
        return types.SimpleNamespace(inputs=[types.SimpleNamespace(name="input")],
                                     outputs=[types.SimpleNamespace(name="logits")])

    def upload_calibration(self, path, kind=None):  # noqa: ANN001, ANN201
        self.sent["uploaded"] = (path, kind)
        return types.SimpleNamespace(digest="sha256:" + "c" * 64)


MODEL = "sha256:" + "0" * 64


def submit(monkeypatch, *args: str) -> tuple[object, dict]:  # noqa: ANN001
    sent: dict = {}
    monkeypatch.setattr(cli, "_farm", lambda: FakeFarm(sent))
    done = CliRunner().invoke(cli.app, ["submit", MODEL, *args])
    return done, sent


def test_submit_maps_the_flags_and_prints_the_notes(monkeypatch) -> None:  # noqa: ANN001
    done, sent = submit(monkeypatch, "-t", "tensorrt==10.3@h100", "--bench-seconds", "2", "--trtexec",
                        "--fp16 --int8 --calib=calib.cache --inputIOFormats=fp16:chw --memPoolSize=workspace:2G "
                        "--tacticSources=+CUBLAS --timingCacheFile=x --iterations=10 --optShapes=input:8x3x16x16")
    assert done.exit_code == 0, done.output
    assert sent["spec"] == {"precision": ["fp16", "int8"], "workspace_mib": 2048,
                            "tactic_sources": ["cublas", "edge_mask_convolutions", "jit_convolutions"],
                            "io_formats": {"input": {"dtype": "fp16", "formats": ["linear"]}},
                            "bench": {"max_seconds": 2.0, "iterations": 10},
                            "profiles": [{"input": {"min": [8, 3, 16, 16], "opt": [8, 3, 16, 16],
                                                    "max": [8, 3, 16, 16]}}]}
    assert sent["asked_model"] == MODEL  # the input names, from the farm's record of the model
    assert sent["uploaded"] == ("calib.cache", "cache") and sent["calibration"] == "sha256:" + "c" * 64
    assert "note: --trtexec --timingCacheFile ignored" in done.output
    assert "note: --trtexec --tacticSources: relative to TensorRT 10.3's defaults" in done.output


def test_submit_refuses_a_field_set_twice_naming_both(monkeypatch) -> None:  # noqa: ANN001
    done, sent = submit(monkeypatch, "-t", "tensorrt", "--precision", "int8", "--spec", '{"optimization_level": 2}',
                        "--trtexec", "--fp16 --builderOptimizationLevel=5 --iterations=3", "--bench-iterations", "4")
    assert done.exit_code != 0 and not sent
    message = str(done.exception)
    assert '--trtexec --fp16 sets precision=["fp16"] but --precision sets ["int8"]' in message
    assert "--trtexec --builderOptimizationLevel sets optimization_level=5 but --spec sets 2" in message
    assert "--trtexec --iterations sets bench.iterations=3 but --bench-iterations sets 4" in message


def test_submit_accepts_the_same_setting_twice_and_fills_defaults(monkeypatch) -> None:  # noqa: ANN001
    done, sent = submit(monkeypatch, "-t", "tensorrt", "--precision", "fp16", "--spec", '{"precision": ["int8", '
                        '"fp16"], "profiling_verbosity": "none"}', "--trtexec",
                        "--fp16 --int8 --layerPrecisions=conv0:fp32 --precisionConstraints=prefer")
    assert done.exit_code != 0  # --precision replaced --spec's precision: fp16 alone, int8 from --trtexec differs
    done, sent = submit(monkeypatch, "-t", "tensorrt", "--spec", '{"precision": ["int8", "fp16"], '
                        '"profiling_verbosity": "none"}', "--trtexec",
                        "--fp16 --int8 --layerPrecisions=conv0:fp32 --precisionConstraints=prefer")
    assert done.exit_code == 0, done.output
    assert sent["spec"] == {"precision": ["int8", "fp16"], "profiling_verbosity": "none",
                            "layer_precisions": [{"pattern": "conv0", "precision": "fp32"}],
                            "precision_constraints": "prefer"}


def test_submit_layer_rules_need_constraints_and_one_calibration(monkeypatch) -> None:  # noqa: ANN001
    done, _ = submit(monkeypatch, "-t", "tensorrt", "--trtexec", "--layerPrecisions=conv0:fp32")
    assert "layer precisions apply only with --precisionConstraints=obey or prefer" in str(done.exception)
    done, sent = submit(monkeypatch, "-t", "tensorrt", "--precision-constraints", "obey",
                        "--trtexec", "--layerPrecisions=conv0:fp32")
    assert done.exit_code == 0, done.output
    assert sent["spec"]["profiling_verbosity"] == "detailed"
    done, _ = submit(monkeypatch, "-t", "tensorrt", "--calibration", "sha256:" + "d" * 64,
                     "--trtexec", "--int8 --calib=c.cache")
    assert "--trtexec --calib and --calibration both name an INT8 calibration" in str(done.exception)


def test_submit_reads_the_input_names_from_a_local_onnx_file(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("onnx")
    from tests.models import convnet

    path = convnet(tmp_path / "net.onnx", channels=4, layers=1)
    sent: dict = {}
    monkeypatch.setattr(cli, "_farm", lambda: FakeFarm(sent))
    done = CliRunner().invoke(cli.app, ["submit", str(path), "-t", "tensorrt", "--trtexec",
                                        "--outputIOFormats=fp16:chw --inputIOFormats=fp16:chw"])
    assert done.exit_code == 0, done.output
    assert "asked_model" not in sent
    assert sent["spec"]["io_formats"] == {"input": {"dtype": "fp16", "formats": ["linear"]},
                                          "logits": {"dtype": "fp16", "formats": ["linear"]}}
