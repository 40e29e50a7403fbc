"""registry.runtime: runtime strings and detection with injected probes (no GPU, no toolchain needed)."""

from __future__ import annotations

import subprocess

import pytest

import registry.runtime as runtime_mod
from registry.compat import Runtime
from registry.errors import InvalidInput
from registry.runtime import (
    GpuInfo,
    Probes,
    as_runtime,
    detect_runtime,
    gpu_from_nvidia_smi,
    normalize_version,
    parse_nvidia_smi,
    parse_runtime,
    probe_gpu,
    visible_gpu,
)

H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))


def fakes(trt: str | None = None, lean: str | None = None, ort: str | None = None, gpu: GpuInfo | None = None,
          cpu: str = "x86_64-avx2") -> Probes:
    return Probes(tensorrt=lambda: trt, tensorrt_lean=lambda: lean, onnxruntime=lambda: ort, gpu=lambda: gpu,
                  cpu=lambda: cpu)


NOTHING = fakes()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tensorrt==8.6.0@h100-80gb-hbm3", Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3")),
        ("tensorrt==8.6.0@h100-80gb-hbm3/sm_90", Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")),
        ("tensorrt==8.6.0@sm_90/h100-80gb-hbm3", Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")),
        ("tensorrt==8.6.0@sm_90", Runtime("tensorrt", "8.6.0", cc="sm_90")),
        ("tensorrt==8.6.0@H100-80GB-HBM3/9.0", Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")),
        ("tensorrt==10.3.0.26@a100-sxm4-40gb", Runtime("tensorrt", "10.3.0.26", sku="a100-sxm4-40gb")),
        ("onnxruntime==1.23.2@x86_64-avx2", Runtime("onnxruntime", "1.23.2", cpu="x86_64-avx2")),
        ("  onnxruntime==1.23.2@aarch64-neon ", Runtime("onnxruntime", "1.23.2", cpu="aarch64-neon")),
        ("tensorrt==10.3.0@sm_90,allow_cross_sku",
         Runtime("tensorrt", "10.3.0", cc="sm_90", allow_cross_sku=True)),
        ("tensorrt==10.3.0@l4/sm_89,lean_runtime,engine_host_code_allowed",
         Runtime("tensorrt", "10.3.0", sku="l4", cc="sm_89", lean_runtime=True, engine_host_code_allowed=True)),
    ],
)
def test_parse_runtime_explicit(text: str, expected: Runtime) -> None:
    assert parse_runtime(text, NOTHING) == expected  # NOTHING: a full string never probes the host


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("tensorrt==8.6.0@ampere_plus", "one concrete device"),
        ("tensorrt==8.6.0@x86_64-avx2", "runs on a GPU"),
        ("onnxruntime==1.23.2@h100-80gb-hbm3", "runs on a CPU"),
        ("onnxruntime==1.23.2@x86_64-avx2/sm_90", "runs on a CPU"),
        ("tensorrt==8.6.0@sm_90/sm_80", "one concrete device"),
        ("tensorrt==8.6.0@H100!", "one concrete device"),
        ("tensorrt==eight@sm_90", "should look like 8.6.0"),
        ("tensorrt==8.6.0@sm_90,fast", "unknown flag(s) fast"),
        ("pytorch==2.0@sm_90", "unknown toolchain 'pytorch'"),
        ("tensorrt 8.6", "kind==version@device"),
    ],
)
def test_parse_runtime_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_runtime(text, NOTHING)
    assert fragment in str(info.value)


def test_str_round_trips() -> None:
    for text in ("tensorrt==8.6.0@h100-80gb-hbm3/sm_90", "tensorrt==10.3.0@sm_90,allow_cross_sku",
                 "onnxruntime==1.23.2@x86_64-avx2"):
        assert str(parse_runtime(text, NOTHING)) == text
        assert parse_runtime(str(parse_runtime(text, NOTHING)), NOTHING) == parse_runtime(text, NOTHING)


def test_to_query_and_target() -> None:
    rt = Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90", allow_cross_sku=True)
    assert rt.to_query() == {
        "toolchain": "tensorrt", "version": "8.6.0", "sku": "h100-80gb-hbm3", "cc": "sm_90",
        "allow_cross_sku": "true", "lean_runtime": "false", "engine_host_code_allowed": "false",
    }
    assert rt.target() == "tensorrt==8.6.0@h100-80gb-hbm3"
    assert Runtime("tensorrt", "8.6.0", cc="sm_90").target() == "tensorrt==8.6.0@sm_90"
    cpu = Runtime("onnxruntime", "1.23.2", cpu="x86_64-avx2")
    assert cpu.target() == "onnxruntime==1.23.2@x86_64-avx2"
    assert "sku" not in cpu.to_query() and cpu.to_query()["cpu"] == "x86_64-avx2"


# ------------------------------------------------------------------------------------- detection


def test_detect_tensorrt_with_gpu() -> None:
    rt = detect_runtime(probes=fakes(trt="8.6.0", ort="1.23.2", gpu=H100))
    assert rt == Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")


def test_detect_lean_tensorrt() -> None:
    rt = detect_runtime("tensorrt", fakes(lean="10.3.0", gpu=H100))
    assert rt.lean_runtime and rt.version == "10.3.0"


def test_detect_falls_back_to_onnxruntime() -> None:
    assert detect_runtime(probes=fakes(ort="1.23.2")) == Runtime("onnxruntime", "1.23.2", cpu="x86_64-avx2")
    # tensorrt importable but no GPU visible: ONNX Runtime on the CPU still serves
    assert detect_runtime(probes=fakes(trt="8.6.0", ort="1.23.2")).toolchain == "onnxruntime"


def test_detect_restricted_to_one_toolchain() -> None:
    assert detect_runtime("onnxruntime", fakes(trt="8.6.0", ort="1.23.2", gpu=H100)).toolchain == "onnxruntime"
    with pytest.raises(InvalidInput, match="tensorrt is not importable here"):
        detect_runtime("tensorrt", fakes(ort="1.23.2"))
    with pytest.raises(InvalidInput, match="no NVIDIA GPU found"):
        detect_runtime("tensorrt", fakes(trt="8.6.0", ort="1.23.2"))
    with pytest.raises(InvalidInput, match="unknown toolchain"):
        detect_runtime("tvm", NOTHING)


def test_detect_nothing_says_what_to_pass() -> None:
    with pytest.raises(InvalidInput) as info:
        detect_runtime(probes=NOTHING)
    assert "no tensorrt or onnxruntime importable here" in str(info.value)
    assert "runtime='tensorrt==8.6.0@h100-80gb-hbm3'" in str(info.value)
    with pytest.raises(InvalidInput, match="no NVIDIA GPU"):  # tensorrt without GPU, no ORT: the GPU is the problem
        detect_runtime(probes=fakes(trt="8.6.0"))


def test_parse_fills_missing_parts_from_the_host() -> None:
    host = fakes(trt="8.6.0", ort="1.23.2", gpu=H100, cpu="x86_64-avx512")
    assert parse_runtime("auto", host) == Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")
    assert parse_runtime("tensorrt", host) == Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")
    assert parse_runtime("tensorrt==10.3.0", host).version == "10.3.0"
    assert parse_runtime("tensorrt==10.3.0", host).sku == "h100-80gb-hbm3"
    assert parse_runtime("tensorrt@sm_80", host) == Runtime("tensorrt", "8.6.0", cc="sm_80")
    assert parse_runtime("onnxruntime", host) == Runtime("onnxruntime", "1.23.2", cpu="x86_64-avx512")
    assert parse_runtime("tensorrt,allow_cross_sku", host).allow_cross_sku
    with pytest.raises(InvalidInput, match="tensorrt is not importable"):
        parse_runtime("tensorrt@sm_90", fakes(ort="1.23.2"))


def test_as_runtime_takes_a_runtime_a_string_or_auto() -> None:
    rt = Runtime("onnxruntime", "1.23.2", cpu="x86_64-avx2")
    assert as_runtime(rt) is rt
    assert as_runtime("onnxruntime==1.23.2@x86_64-avx2") == rt
    assert as_runtime(str(rt)) == rt  # str() is the runtime string parse_runtime reads back
    with pytest.raises(InvalidInput):
        as_runtime(42)


# ---------------------------------------------------------------------------------------- probes


@pytest.mark.parametrize(
    "env, expected",
    [({}, 0), ({"CUDA_VISIBLE_DEVICES": "3,1"}, 3), ({"CUDA_VISIBLE_DEVICES": " 2 "}, 2),
     ({"CUDA_VISIBLE_DEVICES": "GPU-8f3c,GPU-1"}, "GPU-8f3c"), ({"CUDA_VISIBLE_DEVICES": ""}, None),
     ({"CUDA_VISIBLE_DEVICES": "-1"}, None), ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None)],
)
def test_visible_gpu(env: dict[str, str], expected: int | str | None) -> None:
    assert visible_gpu(env) == expected


def test_probe_gpu_tries_probes_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object]] = []

    def failing(selector: object) -> None:
        calls.append(("pynvml", selector))
        raise RuntimeError("NVML driver/library mismatch")

    def missing(selector: object) -> None:
        calls.append(("ctypes", selector))

    def smi(selector: object) -> GpuInfo:
        calls.append(("smi", selector))
        return H100

    monkeypatch.setattr(runtime_mod, "GPU_PROBES", (failing, missing, smi))
    assert probe_gpu({"CUDA_VISIBLE_DEVICES": "1"}) == H100
    assert calls == [("pynvml", 1), ("ctypes", 1), ("smi", 1)]
    calls.clear()
    assert probe_gpu({"CUDA_VISIBLE_DEVICES": ""}) is None and calls == []


def test_nvidia_smi_parsing() -> None:
    assert parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\n") == H100
    assert parse_nvidia_smi("NVIDIA GeForce RTX 4090, 8.9\nNVIDIA GeForce RTX 4090, 8.9\n") == GpuInfo(
        "NVIDIA GeForce RTX 4090", (8, 9))
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("NVIDIA A100, [N/A]") is None


def test_nvidia_smi_probe_command() -> None:
    seen: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="NVIDIA H100 80GB HBM3, 9.0\n", stderr="")

    def absent(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("nvidia-smi")

    assert gpu_from_nvidia_smi(2, run=run) == H100
    assert "--id=2" in seen[0] and "--query-gpu=name,compute_cap" in seen[0]
    assert gpu_from_nvidia_smi(0, run=absent) is None


@pytest.mark.parametrize("text, expected", [("8.6.0", "8.6.0"), ("8.6.1.post1", "8.6.1"), ("10.3.0.26", "10.3.0.26"),
                                            ("1.23.2", "1.23.2"), ("", None), ("dev", None)])
def test_normalize_version(text: str, expected: str | None) -> None:
    assert normalize_version(text) == expected
