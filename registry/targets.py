"""Targets (`kind==version@device`), devices, GPU SKU slugs, CPU ISA detection.

Device selectors:
- GPU SKU slug from the driver's name: "NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3"
- compute capability: "sm_90"
- "ampere_plus" (TensorRT hardware compatibility, cc >= 8.0)
- CPU: "<arch>-<isa>", e.g. "x86_64-avx2"
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

from registry.errors import InvalidTarget

TOOLCHAINS = ("tensorrt", "onnxruntime")
AMPERE_PLUS = "ampere_plus"
_CC = re.compile(r"^sm_(\d+)(\d)$")  # the minor is one digit: sm_90 = 9.0, sm_100 = 10.0, sm_120 = 12.0
_CPU = re.compile(r"^(x86_64|aarch64)-[a-z0-9]+$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_TARGET = re.compile(r"^(?P<kind>[a-z]+)(==(?P<version>[^@\s]+))?(@(?P<device>[A-Za-z0-9_.-]+))?$")


@dataclass(frozen=True)
class Target:
    kind: str
    version: str | None = None
    device: str | None = None

    def __str__(self) -> str:
        text = self.kind
        if self.version:
            text += f"=={self.version}"
        if self.device:
            text += f"@{self.device}"
        return text

    @property
    def complete(self) -> bool:
        return bool(self.version and self.device)


def parse_target(text: str) -> Target:
    m = _TARGET.match(text.strip())
    if not m:
        raise InvalidTarget(
            f"target {text!r} is not kind==version@device; examples: "
            "tensorrt==8.6.0@h100-80gb-hbm3, tensorrt==8.6.0@sm_90, onnxruntime==1.23.2@x86_64-avx2, onnxruntime"
        )
    kind, version, device = m["kind"], m["version"], m["device"]
    if kind not in TOOLCHAINS:
        raise InvalidTarget(f"target {text!r}: unknown toolchain {kind!r}; known: {', '.join(TOOLCHAINS)}")
    if version and not _VERSION.match(version):
        raise InvalidTarget(f"target {text!r}: version {version!r} should look like 8.6.0")
    if device:
        device = device.lower()
        _check_device(kind, device, text)
    return Target(kind, version, device)


def _check_device(kind: str, device: str, text: str) -> None:
    cls = device_class(device)
    if kind == "onnxruntime" and cls != "cpu":
        raise InvalidTarget(f"target {text!r}: onnxruntime builds for a CPU device like x86_64-avx2, not {device!r}")
    if kind == "tensorrt" and cls == "cpu":
        raise InvalidTarget(f"target {text!r}: tensorrt builds for a GPU (SKU slug, sm_XX or ampere_plus), "
                            f"not {device!r}")


def device_class(device: str) -> str:
    """'cc', 'ampere_plus', 'cpu' or 'sku'."""
    if _CC.match(device):
        return "cc"
    if device == AMPERE_PLUS:
        return "ampere_plus"
    if _CPU.match(device):
        return "cpu"
    if _SLUG.match(device):
        return "sku"
    raise InvalidTarget(f"device {device!r} is not a GPU SKU slug, sm_XX, ampere_plus or <arch>-<isa>")


def sku_slug(driver_name: str) -> str:
    """The SKU slug of a GPU from the name its driver reports."""
    name = " ".join(driver_name.split()).lower()
    for prefix in ("nvidia ", "tesla "):
        name = name.removeprefix(prefix)
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    if not slug:
        raise InvalidTarget(f"GPU name {driver_name!r} gives no SKU slug")
    return slug


def cc_slug(cc: str | tuple[int, int]) -> str:
    """'9.0' or (9, 0) -> 'sm_90'."""
    if isinstance(cc, str):
        if _CC.match(cc):
            return cc
        try:
            major, minor = (int(p) for p in cc.split("."))
        except ValueError:
            raise InvalidTarget(f"compute capability {cc!r} should look like 9.0 or sm_90") from None
    else:
        major, minor = cc
    return f"sm_{major}{minor}"


def cc_tuple(cc: str) -> tuple[int, int]:
    m = _CC.match(cc_slug(cc))
    assert m
    return int(m[1]), int(m[2])


def cpu_device(machine: str | None = None, flags: set[str] | None = None) -> str:
    arch = _arch(machine or platform.machine())
    if flags is None:
        flags = _cpu_flags()
    return f"{arch}-{_isa(arch, flags)}"


def _arch(machine: str) -> str:
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _isa(arch: str, flags: set[str]) -> str:
    if arch == "x86_64":
        if {"avx512f", "avx512bw", "avx512vl"} <= flags:
            return "avx512"
        if "avx2" in flags:
            return "avx2"
        return "avx" if "avx" in flags else "sse"
    if arch == "aarch64":
        return "sve" if "sve" in flags else "neon"
    return "generic"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()
