"""Queue names and routing (registry.queues), filling partial targets from the fleet
(registry.services.fleet.complete_target) and the features a spec needs — pure logic on in-memory offers."""

from __future__ import annotations

import pytest

from registry.errors import AmbiguousTarget, InvalidTarget, UnservedTarget
from registry.queues import BUILD_TASK, build_queue, gpu_devices_served, worker_queues
from registry.services.fleet import Offer, complete_target, serves, spec_features, unsupported_features
from registry.spec import parse_spec
from registry.targets import parse_target

H100 = "h100-80gb-hbm3"
H100_PCIE = "h100-pcie"
A100 = "a100-sxm4-40gb"
T4 = "t4"
CPU = "x86_64-avx2"


def gpu(version: str, sku: str, cc: str, worker: str = "w", features=None) -> Offer:
    return Offer("tensorrt", version, sku, cc, None, features, worker)


def cpu(version: str = "1.23.2", device: str = CPU, worker: str = "c", features=None) -> Offer:
    return Offer("onnxruntime", version, None, None, device, features, worker)


H100_86 = gpu("8.6.0", H100, "sm_90", "h100-a")
H100_103 = gpu("10.3.0", H100, "sm_90", "h100-b")
H100P_86 = gpu("8.6.0", H100_PCIE, "sm_90", "h100p")
A100_86 = gpu("8.6.0", A100, "sm_80", "a100")
T4_86 = gpu("8.6.0", T4, "sm_75", "t4")
ORT = cpu()
ORT_NEW = cpu("1.32.0")
ORT_AVX512 = cpu(device="x86_64-avx512", worker="c512")

# ---------------------------------------------------------------------------------------------- queues


def test_build_queue_names():
    assert BUILD_TASK == "trtfarm.build"
    assert build_queue("tensorrt", "8.6.0", H100) == "build.tensorrt-8.6.0.h100-80gb-hbm3"
    assert build_queue("tensorrt", "8.6.0", "sm_90") == "build.tensorrt-8.6.0.sm_90"
    assert build_queue("tensorrt", "10.3.0", "ampere_plus") == "build.tensorrt-10.3.0.ampere_plus"
    assert build_queue("onnxruntime", "1.23.2", CPU) == "build.onnxruntime-1.23.2.x86_64-avx2"


@pytest.mark.parametrize(("sku", "cc", "devices"), [
    (T4, "sm_75", [T4, "sm_75"]),  # Turing: no ampere_plus
    ("v100-sxm2-16gb", "sm_70", ["v100-sxm2-16gb", "sm_70"]),
    (A100, "sm_80", [A100, "sm_80", "ampere_plus"]),
    ("a10g", "sm_86", ["a10g", "sm_86", "ampere_plus"]),
    ("l4", "sm_89", ["l4", "sm_89", "ampere_plus"]),
    (H100, "sm_90", [H100, "sm_90", "ampere_plus"]),
    ("b200", "sm_100", ["b200", "sm_100", "ampere_plus"]),  # two-digit major: 10.0 >= 8.0
    ("geforce-rtx-5090", "sm_120", ["geforce-rtx-5090", "sm_120", "ampere_plus"]),
])
def test_gpu_devices_served(sku, cc, devices):
    assert gpu_devices_served(sku, cc) == devices


TRT86 = {"kind": "tensorrt", "version": "8.6.0"}
TRT103 = {"kind": "tensorrt", "version": "10.3.0"}
ORT_TC = {"kind": "onnxruntime", "version": "1.23.2"}


@pytest.mark.parametrize(("toolchains", "gpus", "cpu_device", "queues"), [
    ([TRT86], [{"sku": T4, "cc": "sm_75"}], None,
     ["build.tensorrt-8.6.0.t4", "build.tensorrt-8.6.0.sm_75"]),
    ([TRT86], [{"sku": H100, "cc": "sm_90"}], None,
     ["build.tensorrt-8.6.0.h100-80gb-hbm3", "build.tensorrt-8.6.0.sm_90", "build.tensorrt-8.6.0.ampere_plus"]),
    ([TRT86, TRT103], [{"sku": H100, "cc": "sm_90"}], None,
     ["build.tensorrt-8.6.0.h100-80gb-hbm3", "build.tensorrt-8.6.0.sm_90", "build.tensorrt-8.6.0.ampere_plus",
      "build.tensorrt-10.3.0.h100-80gb-hbm3", "build.tensorrt-10.3.0.sm_90", "build.tensorrt-10.3.0.ampere_plus"]),
    ([TRT86, ORT_TC], [{"sku": T4, "cc": "sm_75"}], CPU,
     ["build.tensorrt-8.6.0.t4", "build.tensorrt-8.6.0.sm_75", "build.onnxruntime-1.23.2.x86_64-avx2"]),
    # two identical GPUs (one worker owning both): every queue once
    ([TRT86], [{"sku": H100, "cc": "sm_90"}, {"sku": H100, "cc": "sm_90"}], None,
     ["build.tensorrt-8.6.0.h100-80gb-hbm3", "build.tensorrt-8.6.0.sm_90", "build.tensorrt-8.6.0.ampere_plus"]),
    ([ORT_TC], [], CPU, ["build.onnxruntime-1.23.2.x86_64-avx2"]),
    ([ORT_TC], [], None, []),  # no CPU device detected: nothing to serve
    ([TRT86], [], CPU, []),  # TensorRT without a GPU: nothing to serve
    ([], [{"sku": H100, "cc": "sm_90"}], CPU, []),
])
def test_worker_queues(toolchains, gpus, cpu_device, queues):
    assert worker_queues(toolchains, gpus, cpu_device) == queues


def test_sm75_worker_never_subscribes_to_ampere_plus_and_sm90_does():
    t4 = worker_queues([TRT86], [{"sku": T4, "cc": "sm_75"}], None)
    h100 = worker_queues([TRT86], [{"sku": H100, "cc": "sm_90"}], None)
    ampere_queue = build_queue("tensorrt", "8.6.0", "ampere_plus")
    assert ampere_queue not in t4
    assert ampere_queue in h100


def test_a_tensorrt_without_hardware_compatibility_serves_no_ampere_plus_queue():
    """TensorRT 8.5 builds no hardware-compatible plans (its probe lacks the feature; the H100 run of 2026-12-05
    showed an 8.5 worker subscribed to ampere_plus all the same): its worker serves its SKU and sm_XX only."""
    trt85 = {"kind": "tensorrt", "version": "8.5.3.1", "features": ("precision=fp16", "tf32")}
    trt86 = {**TRT86, "features": ("precision=fp16", "hardware_compatibility=ampere_plus")}
    queues = worker_queues([trt85, trt86], [{"sku": H100, "cc": "sm_90"}], None)
    assert queues == ["build.tensorrt-8.5.3.1.h100-80gb-hbm3", "build.tensorrt-8.5.3.1.sm_90",
                      "build.tensorrt-8.6.0.h100-80gb-hbm3", "build.tensorrt-8.6.0.sm_90",
                      "build.tensorrt-8.6.0.ampere_plus"]


def test_every_completed_target_routes_to_a_queue_some_offer_serves():
    """The queue a build goes to (key device) is one a worker holding the matching offer subscribes to."""
    fleet = [H100_86, A100_86, T4_86, ORT]
    cases = [("tensorrt==8.6.0@h100-80gb-hbm3", {}), ("tensorrt==8.6.0@t4", {}), ("tensorrt@ampere_plus", {}),
             ("tensorrt==8.6.0@sm_80", {"hardware_compatibility": "same_compute_capability"}), ("onnxruntime", {})]
    for text, spec in cases:
        target, _ = complete_target(parse_target(text), parse_spec(spec), fleet)
        queue = build_queue(target.kind, target.version, target.device)
        served = set()
        for o in fleet:
            if o.kind == "tensorrt":
                served |= set(worker_queues([{"kind": o.kind, "version": o.version}],
                                            [{"sku": o.sku, "cc": o.cc}], None))
            else:
                served |= set(worker_queues([{"kind": o.kind, "version": o.version}], [], o.cpu))
        assert queue in served, (text, queue)


# ----------------------------------------------------------------------------------------------- serves


@pytest.mark.parametrize(("offer", "kind", "version", "device", "expected"), [
    (H100_86, "tensorrt", None, None, True),
    (H100_86, "tensorrt", "8.6.0", H100, True),
    (H100_86, "tensorrt", "10.3.0", None, False),
    (H100_86, "onnxruntime", None, None, False),
    (H100_86, "tensorrt", None, "sm_90", True),
    (H100_86, "tensorrt", None, "sm_80", False),
    (H100_86, "tensorrt", None, A100, False),
    (H100_86, "tensorrt", None, "ampere_plus", True),
    (A100_86, "tensorrt", None, "ampere_plus", True),
    (T4_86, "tensorrt", None, "ampere_plus", False),
    (gpu("10.8.0", "b200", "sm_100"), "tensorrt", None, "ampere_plus", True),
    (ORT, "onnxruntime", None, CPU, True),
    (ORT, "onnxruntime", None, "x86_64-avx512", False),
    (ORT, "onnxruntime", "1.23.2", None, True),
])
def test_serves(offer, kind, version, device, expected):
    assert serves(offer, kind, version, device) is expected


# ------------------------------------------------------------------------------------- complete_target

# (id, target, spec, fleet, completed target, hardware_compatibility after)
COMPLETE = [
    ("fill version and SKU", "tensorrt", {}, [H100_86], "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
    ("fill version", "tensorrt@h100-80gb-hbm3", {}, [H100_86, A100_86], "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
    ("fill SKU", "tensorrt==8.6.0", {}, [H100_86, H100_103], "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
    ("fill SKU from sm_XX", "tensorrt==8.6.0@sm_90", {}, [H100_86, A100_86], "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
    ("version by device", "tensorrt@a100-sxm4-40gb", {}, [H100_103, A100_86], "tensorrt==8.6.0@a100-sxm4-40gb", "none"),
    ("full target, empty fleet", "tensorrt==8.6.0@h100-80gb-hbm3", {}, [], "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
    ("full target, other fleet", "tensorrt==10.3.0@t4", {}, [H100_86], "tensorrt==10.3.0@t4", "none"),
    ("@ampere_plus sets the level", "tensorrt@ampere_plus", {}, [H100_86, T4_86], "tensorrt==8.6.0@ampere_plus",
     "ampere_plus"),
    ("@ampere_plus, full, no fleet", "tensorrt==8.6.0@ampere_plus", {}, [], "tensorrt==8.6.0@ampere_plus",
     "ampere_plus"),
    ("ampere_plus level from spec", "tensorrt==8.6.0@h100-80gb-hbm3", {"hardware_compatibility": "ampere_plus"},
     [H100_86], "tensorrt==8.6.0@ampere_plus", "ampere_plus"),
    ("ampere_plus level, target sm_90", "tensorrt==8.6.0@sm_90", {"hardware_compatibility": "ampere_plus"}, [],
     "tensorrt==8.6.0@ampere_plus", "ampere_plus"),
    ("same_compute_capability -> sm_XX", "tensorrt==8.6.0", {"hardware_compatibility": "same_compute_capability"},
     [H100_86], "tensorrt==8.6.0@sm_90", "same_compute_capability"),
    ("same_compute_capability from SKU", "tensorrt==8.6.0@h100-80gb-hbm3",
     {"hardware_compatibility": "same_compute_capability"}, [H100_86, A100_86], "tensorrt==8.6.0@sm_90",
     "same_compute_capability"),
    ("same_compute_capability two SKUs one cc", "tensorrt==8.6.0",
     {"hardware_compatibility": "same_compute_capability"}, [H100_86, H100P_86], "tensorrt==8.6.0@sm_90",
     "same_compute_capability"),
    ("same_compute_capability full sm target", "tensorrt==8.6.0@sm_86",
     {"hardware_compatibility": "same_compute_capability"}, [], "tensorrt==8.6.0@sm_86", "same_compute_capability"),
    ("onnxruntime fill all", "onnxruntime", {}, [ORT, H100_86], "onnxruntime==1.23.2@x86_64-avx2", "none"),
    ("onnxruntime fill device", "onnxruntime==1.32.0", {}, [ORT, ORT_NEW], "onnxruntime==1.32.0@x86_64-avx2", "none"),
    ("onnxruntime fill version", "onnxruntime@x86_64-avx512", {}, [ORT_AVX512, ORT_NEW],
     "onnxruntime==1.23.2@x86_64-avx512", "none"),
    ("onnxruntime full, no fleet", "onnxruntime==1.17.0@aarch64-neon", {}, [], "onnxruntime==1.17.0@aarch64-neon",
     "none"),
    ("same offer twice", "tensorrt", {}, [H100_86, gpu("8.6.0", H100, "sm_90", "other")],
     "tensorrt==8.6.0@h100-80gb-hbm3", "none"),
]


@pytest.mark.parametrize(("target", "spec", "fleet", "completed", "level"),
                         [pytest.param(*row[1:], id=row[0]) for row in COMPLETE])
def test_complete_target(target, spec, fleet, completed, level):
    done, new_spec = complete_target(parse_target(target), parse_spec(spec), fleet)
    assert str(done) == completed
    assert done.complete
    assert new_spec.hardware_compatibility == level


def test_complete_target_keeps_the_rest_of_the_spec():
    spec = parse_spec({"precision": ["fp16"], "workspace_mib": 512})
    _, new_spec = complete_target(parse_target("tensorrt@ampere_plus"), spec, [H100_86])
    assert new_spec.precision == ("fp16",) and new_spec.workspace_mib == 512
    assert spec.hardware_compatibility == "none"  # the caller's spec is not changed


# (id, target, spec, fleet, choices)
AMBIGUOUS = [
    ("two versions", "tensorrt", {}, [H100_86, H100_103], ["10.3.0", "8.6.0"]),
    ("two SKUs", "tensorrt==8.6.0", {}, [H100_86, A100_86, T4_86], [A100, H100, T4]),
    ("two SKUs same cc", "tensorrt==8.6.0@sm_90", {}, [H100_86, H100P_86], [H100, H100_PCIE]),
    ("two ccs", "tensorrt==8.6.0", {"hardware_compatibility": "same_compute_capability"}, [H100_86, A100_86],
     ["sm_80", "sm_90"]),
    ("two ORT versions", "onnxruntime", {}, [ORT, ORT_NEW], ["1.23.2", "1.32.0"]),
    ("two CPU devices", "onnxruntime==1.23.2", {}, [ORT, ORT_AVX512], [CPU, "x86_64-avx512"]),
]


@pytest.mark.parametrize(("target", "spec", "fleet", "choices"),
                         [pytest.param(*row[1:], id=row[0]) for row in AMBIGUOUS])
def test_ambiguous_target_lists_the_choices(target, spec, fleet, choices):
    with pytest.raises(AmbiguousTarget) as info:
        complete_target(parse_target(target), parse_spec(spec), fleet)
    assert info.value.code == "ambiguous_target"
    assert info.value.details["choices"] == choices
    message = str(info.value)
    assert "is ambiguous" in message and "Name one in the target" in message
    assert all(c in message for c in choices)


# (id, target, spec, fleet, words in the message)
UNSERVED = [
    ("empty fleet", "tensorrt", {}, [], ["no live worker offers a matching version", "nothing (no live worker)",
                                         "Give the full target kind==version@device"]),
    ("no such version", "tensorrt==9.0.0", {}, [H100_86], ["GPU SKU", "tensorrt==8.6.0@h100-80gb-hbm3"]),
    ("no such SKU", "tensorrt@a100-sxm4-40gb", {}, [H100_86], ["version for device a100-sxm4-40gb",
                                                              "tensorrt==8.6.0@h100-80gb-hbm3"]),
    ("ampere_plus on Turing only", "tensorrt@ampere_plus", {}, [T4_86], ["version for device ampere_plus",
                                                                          "tensorrt==8.6.0@t4"]),
    ("onnxruntime on a GPU-only fleet", "onnxruntime", {}, [H100_86], ["matching version",
                                                                       "tensorrt==8.6.0@h100-80gb-hbm3"]),
    ("no such CPU", "onnxruntime@aarch64-neon", {}, [ORT], ["version for device aarch64-neon",
                                                            "onnxruntime==1.23.2@x86_64-avx2"]),
    ("same_compute_capability, no cc", "tensorrt==8.6.0@h100-80gb-hbm3",
     {"hardware_compatibility": "same_compute_capability"}, [], ["compute capability"]),
]


@pytest.mark.parametrize(("target", "spec", "fleet", "words"), [pytest.param(*row[1:], id=row[0]) for row in UNSERVED])
def test_unserved_target_says_what_the_fleet_offers(target, spec, fleet, words):
    with pytest.raises(UnservedTarget) as info:
        complete_target(parse_target(target), parse_spec(spec), fleet)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert "offered" in info.value.details


@pytest.mark.parametrize(("target", "spec", "words"), [
    ("tensorrt==8.6.0@sm_75", {"hardware_compatibility": "ampere_plus"}, "ampere_plus needs compute capability >= 8.0"),
    ("tensorrt==8.6.0@ampere_plus", {"hardware_compatibility": "same_compute_capability"},
     "builds an ampere_plus plan, but the spec asks for hardware_compatibility 'same_compute_capability'"),
])
def test_contradictory_target_and_spec(target, spec, words):
    with pytest.raises(InvalidTarget) as info:
        complete_target(parse_target(target), parse_spec(spec), [A100_86, T4_86])
    assert words in str(info.value)


# ------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize(("spec", "features"), [
    ({}, []),
    ({"profiles": [{"x": {"min": [1], "opt": [1], "max": [1]}}]}, []),
    ({"onnxruntime": {"graph_optimization_level": "all"}}, []),
    ({"precision": ["int8", "fp16"]}, ["precision=fp16", "precision=int8"]),
    ({"tactic_sources": ["jit_convolutions", "edge_mask_convolutions"]},
     ["tactic_sources=edge_mask_convolutions", "tactic_sources=jit_convolutions"]),
    ({"tf32": False}, ["tf32"]),
    ({"strongly_typed": True}, ["strongly_typed"]),
    ({"workspace_mib": 1024, "optimization_level": 5}, ["workspace_mib", "optimization_level"]),
    ({"optimization_level": 3}, []),  # the default is no feature
    ({"version_compatible": True, "exclude_lean_runtime": True}, ["version_compatible", "exclude_lean_runtime"]),
    ({"refit": "refit", "strip_weights": True}, ["strip_weights", "refit=refit"]),
    ({"weight_streaming": True}, ["weight_streaming"]),
    ({"dla_core": 0, "gpu_fallback": True}, ["dla_core", "gpu_fallback"]),
    ({"hardware_compatibility": "ampere_plus"}, ["hardware_compatibility=ampere_plus"]),
    ({"hardware_compatibility": "same_compute_capability", "profiling_verbosity": "detailed"},
     ["hardware_compatibility=same_compute_capability", "profiling_verbosity=detailed"]),
])
def test_spec_features(spec, features):
    assert spec_features(parse_spec(spec)) == features


def test_unsupported_features():
    spec = parse_spec({"precision": ["fp16", "fp8"], "version_compatible": True})
    assert unsupported_features(spec, ("precision=fp16", "precision=int8", "version_compatible")) == ["precision=fp8"]
    assert unsupported_features(spec, ()) == ["precision=fp16", "precision=fp8", "version_compatible"]
    assert unsupported_features(parse_spec({}), ()) == []
