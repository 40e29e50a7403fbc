"""Targets (`kind==version@device`), device classes, GPU SKU slugs, compute capabilities, CPU devices."""

from __future__ import annotations

import pytest

from registry.errors import InvalidTarget
from registry.targets import Target, cc_slug, cc_tuple, cpu_device, device_class, parse_target, sku_slug

# ----------------------------------------------------------------------------------------- SKU slugs

# Names as the NVIDIA driver reports them (nvidia-smi --query-gpu=name / NVML nvmlDeviceGetName).
SKUS = [
    ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"),
    ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"),
    ("NVIDIA GeForce RTX 4090", "geforce-rtx-4090"),
    ("Tesla T4", "t4"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA A10G", "a10g"),
    ("NVIDIA RTX A6000", "rtx-a6000"),
    ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb"),
    ("Tesla V100-PCIE-32GB", "v100-pcie-32gb"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA L40S", "l40s"),
    ("NVIDIA GH200 480GB", "gh200-480gb"),
    ("NVIDIA B200", "b200"),
    ("Quadro RTX 8000", "quadro-rtx-8000"),
    ("NVIDIA Tesla T4", "t4"),  # some driver releases keep both prefixes
    ("  NVIDIA  H100 80GB HBM3\n", "h100-80gb-hbm3"),  # stray whitespace from nvidia-smi output
]


@pytest.mark.parametrize(("name", "slug"), SKUS)
def test_sku_slug_from_driver_names(name, slug):
    assert sku_slug(name) == slug
    assert device_class(slug) == "sku"
    assert parse_target(f"tensorrt==8.6.0@{slug}").device == slug


def test_sku_slug_of_nothing_is_an_error():
    with pytest.raises(InvalidTarget, match="gives no SKU slug"):
        sku_slug("  ---  ")


def test_sku_slug_matches_the_runners_copy():
    """Runners cannot import registry, so workers/toolchains/common.py carries its own copy: both must agree."""
    from workers.toolchains.common import sku_slug as runner_slug

    for name, slug in SKUS:
        assert runner_slug(name) == slug, name


# ---------------------------------------------------------------------------------- compute capability


@pytest.mark.parametrize(("given", "slug", "as_tuple"), [
    ("9.0", "sm_90", (9, 0)),
    ((9, 0), "sm_90", (9, 0)),
    ("8.6", "sm_86", (8, 6)),
    ((8, 9), "sm_89", (8, 9)),
    ("7.5", "sm_75", (7, 5)),
    ("sm_80", "sm_80", (8, 0)),
    ("10.0", "sm_100", (10, 0)),  # Blackwell: two-digit major
    ((12, 0), "sm_120", (12, 0)),
    ("sm_100", "sm_100", (10, 0)),
])
def test_cc_slug_and_tuple(given, slug, as_tuple):
    assert cc_slug(given) == slug
    assert cc_tuple(slug) == as_tuple
    assert device_class(slug) == "cc"


@pytest.mark.parametrize("bad", ["nine", "9", "9.0.1", "sm9", ""])
def test_cc_slug_errors(bad):
    with pytest.raises(InvalidTarget, match="should look like 9.0 or sm_90"):
        cc_slug(bad)


# ------------------------------------------------------------------------------------------ devices


@pytest.mark.parametrize(("device", "cls"), [
    ("h100-80gb-hbm3", "sku"), ("t4", "sku"), ("sm_90", "cc"), ("sm_75", "cc"), ("sm_100", "cc"),
    ("ampere_plus", "ampere_plus"), ("x86_64-avx2", "cpu"), ("x86_64-avx512", "cpu"), ("aarch64-neon", "cpu"),
])
def test_device_class(device, cls):
    assert device_class(device) == cls


@pytest.mark.parametrize("bad", ["H100", "h100_80gb", "-h100", "h100-", "", "sm_", "ampere-plus+"])
def test_device_class_errors(bad):
    with pytest.raises(InvalidTarget, match="is not a GPU SKU slug, sm_XX, ampere_plus or <arch>-<isa>"):
        device_class(bad)


AVX512 = {"avx512f", "avx512bw", "avx512vl", "avx2", "avx", "sse4_2"}


@pytest.mark.parametrize(("machine", "flags", "device"), [
    ("x86_64", AVX512, "x86_64-avx512"),
    ("x86_64", {"avx512f", "avx2", "avx"}, "x86_64-avx2"),  # avx512f alone (no BW/VL, e.g. Knights Landing)
    ("x86_64", {"avx2", "avx", "fma"}, "x86_64-avx2"),
    ("x86_64", {"avx", "sse4_2"}, "x86_64-avx"),
    ("x86_64", {"sse", "sse2", "sse4_2"}, "x86_64-sse"),
    ("x86_64", set(), "x86_64-sse"),
    ("AMD64", {"avx2"}, "x86_64-avx2"),  # Windows' name for it
    ("aarch64", {"fp", "asimd", "sve"}, "aarch64-sve"),
    ("aarch64", {"fp", "asimd"}, "aarch64-neon"),
    ("arm64", {"asimd"}, "aarch64-neon"),  # macOS' name for it
    ("riscv64", {"rv64imafdc"}, "riscv64-generic"),
])
def test_cpu_device_from_flags(machine, flags, device):
    assert cpu_device(machine, flags) == device


def test_cpu_device_of_this_host_is_a_cpu_device():
    device = cpu_device()
    if device.startswith(("x86_64-", "aarch64-")):
        assert device_class(device) == "cpu"


def test_cpu_device_matches_the_runners_rule():
    """The runners' copy of the CPU rule (workers/toolchains/common.py) must agree with registry's."""
    from workers.toolchains import common

    cases = [("x86_64", AVX512), ("x86_64", {"avx512f", "avx2", "avx"}), ("x86_64", {"avx2"}), ("x86_64", {"avx"}),
             ("x86_64", set()), ("AMD64", {"avx2"}), ("x64", {"avx"}), ("aarch64", {"sve"}), ("aarch64", set()),
             ("arm64", {"asimd"}), ("riscv64", {"rv64imafdc"})]
    for machine, flags in cases:
        arch = common.cpu_arch(machine)
        assert f"{arch}-{common.cpu_isa(arch, flags)}" == cpu_device(machine, flags), (machine, flags)
        cpuinfo = f"model name\t: Some CPU\nflags\t\t: {' '.join(sorted(flags))}\n"
        assert common.cpu_device(cpuinfo, machine)["device"] == cpu_device(machine, flags), (machine, flags)
    assert common.cpu_device()["device"] == cpu_device()  # this host, read the same way by both


# ------------------------------------------------------------------------------------------ targets


@pytest.mark.parametrize(("text", "target"), [
    ("tensorrt==8.6.0@h100-80gb-hbm3", Target("tensorrt", "8.6.0", "h100-80gb-hbm3")),
    ("tensorrt==8.6.0@sm_90", Target("tensorrt", "8.6.0", "sm_90")),
    ("tensorrt==8.6.0@ampere_plus", Target("tensorrt", "8.6.0", "ampere_plus")),
    ("tensorrt==10.3.0.26@sm_100", Target("tensorrt", "10.3.0.26", "sm_100")),
    ("onnxruntime==1.23.2@x86_64-avx2", Target("onnxruntime", "1.23.2", "x86_64-avx2")),
    ("onnxruntime==1.23.2@aarch64-neon", Target("onnxruntime", "1.23.2", "aarch64-neon")),
    ("onnxruntime", Target("onnxruntime")),
    ("tensorrt", Target("tensorrt")),
    ("tensorrt==8.6.0", Target("tensorrt", "8.6.0")),
    ("tensorrt@h100-80gb-hbm3", Target("tensorrt", None, "h100-80gb-hbm3")),
    ("onnxruntime@x86_64-avx512", Target("onnxruntime", None, "x86_64-avx512")),
    ("tensorrt==10@sm_90", Target("tensorrt", "10", "sm_90")),
])
def test_parse_and_format_round_trip(text, target):
    parsed = parse_target(text)
    assert parsed == target
    assert str(parsed) == text
    assert parse_target(str(parsed)) == parsed
    assert parsed.complete == bool(target.version and target.device)


@pytest.mark.parametrize(("text", "normal"), [
    ("  tensorrt==8.6.0@sm_90  ", "tensorrt==8.6.0@sm_90"),
    ("tensorrt==8.6.0@SM_90", "tensorrt==8.6.0@sm_90"),
    ("tensorrt==8.6.0@H100-80GB-HBM3", "tensorrt==8.6.0@h100-80gb-hbm3"),
])
def test_parse_normalizes(text, normal):
    assert str(parse_target(text)) == normal


@pytest.mark.parametrize(("text", "expected"), [
    ("", "is not kind==version@device; examples: tensorrt==8.6.0@h100-80gb-hbm3"),
    ("tensorrt==8.6.0@", "is not kind==version@device"),
    ("tensorrt==8.6.0@h100 80gb", "is not kind==version@device"),
    ("TensorRT==8.6.0", "is not kind==version@device"),
    ("tensorrt=8.6.0", "is not kind==version@device"),
    ("openvino==2024.1@x86_64-avx2", "unknown toolchain 'openvino'; known: tensorrt, onnxruntime"),
    ("tensorrt==abc@sm_90", "version 'abc' should look like 8.6.0"),
    ("tensorrt==1.2.3.4.5", "version '1.2.3.4.5' should look like 8.6.0"),
    ("tensorrt==8.6.0@x86_64-avx2", "tensorrt builds for a GPU (SKU slug, sm_XX or ampere_plus), not 'x86_64-avx2'"),
    ("onnxruntime==1.23.2@sm_90", "onnxruntime builds for a CPU device like x86_64-avx2, not 'sm_90'"),
    ("onnxruntime@ampere_plus", "onnxruntime builds for a CPU device"),
    ("onnxruntime@h100-80gb-hbm3", "onnxruntime builds for a CPU device"),
    ("tensorrt==8.6.0@h100_80gb", "is not a GPU SKU slug, sm_XX, ampere_plus or <arch>-<isa>"),
])
def test_parse_errors(text, expected):
    with pytest.raises(InvalidTarget) as info:
        parse_target(text)
    assert expected in str(info.value)
    assert info.value.code == "invalid_target"
