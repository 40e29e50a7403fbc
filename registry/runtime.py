"""Which runtime this process has: detected here, or parsed from a runtime string (docs/design.md, "Fetch").

A runtime is a toolchain kind + exact version + the device it runs on: a GPU (SKU slug and/or compute
capability) for TensorRT, a CPU (`<arch>-<isa>`) for ONNX Runtime. It is either detected here or given
as a string:

    tensorrt==8.6.0@h100-80gb-hbm3            SKU only
    tensorrt==8.6.0@h100-80gb-hbm3/sm_90      SKU and compute capability
    tensorrt==8.6.0@sm_90                     compute capability only
    onnxruntime==1.23.2@x86_64-avx2
    tensorrt==10.3.0@sm_90,allow_cross_sku    flags after commas (see FLAGS)
    tensorrt, onnxruntime==1.23.2             missing parts detected on this host
    auto                                      everything detected

Only the standard library here: tensorrt, onnxruntime and pynvml are imported lazily, inside probes, and
each probe is a plain function that unit tests replace (see `Probes`).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.compat import RUNTIME_FLAGS as FLAGS
from registry.compat import Runtime
from registry.errors import InvalidInput, InvalidTarget
from registry.targets import TOOLCHAINS, cc_slug, cpu_device, device_class, sku_slug

EXAMPLE = "tensorrt==8.6.0@h100-80gb-hbm3"
_RUNTIME = re.compile(r"^(?P<kind>[a-z_]+)(==(?P<version>[^@,\s]+))?(@(?P<device>[^,\s]+))?(?P<flags>(,[a-z_]+)*)$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}")
_CC_NUMBER = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class GpuInfo:
    name: str  # as the driver reports it: "NVIDIA H100 80GB HBM3"
    cc: tuple[int, int]  # (9, 0)


# ---------------------------------------------------------------------------------------------- probes


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - ImportError, or a broken install raising anything at import
        return None
    return normalize_version(str(getattr(module, "__version__", "") or ""))


def tensorrt_version() -> str | None:
    return _module_version("tensorrt")


def tensorrt_lean_version() -> str | None:
    return _module_version("tensorrt_lean")


def onnxruntime_version() -> str | None:
    return _module_version("onnxruntime")


def normalize_version(text: str) -> str | None:
    """'8.6.1.post1' -> '8.6.1', '1.23.2' -> '1.23.2', '' -> None."""
    m = _VERSION.match(text.strip())
    return m[0] if m else None


def visible_gpu(env: Mapping[str, str] | None = None) -> int | str | None:
    """The device CUDA would call GPU 0: an NVML index, a UUID, or None when CUDA sees no GPU.

    (CUDA orders devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML by PCI bus id. On a
    host with one kind of GPU both orders name the same SKU.)
    """
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return 0
    first = value.split(",")[0].strip()
    if first.isdigit():
        return int(first)
    if first.startswith(("GPU-", "MIG-")):
        return first
    return None  # "", "-1", "NoDevFiles": no GPU visible


def gpu_from_pynvml(selector: int | str) -> GpuInfo | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - absent, or a broken install
        return None
    pynvml.nvmlInit()
    try:
        if isinstance(selector, int):
            handle = pynvml.nvmlDeviceGetHandleByIndex(selector)
        else:
            handle = pynvml.nvmlDeviceGetHandleByUUID(selector)
        name = pynvml.nvmlDeviceGetName(handle)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    finally:
        pynvml.nvmlShutdown()
    return GpuInfo(name.decode() if isinstance(name, bytes) else str(name), (int(major), int(minor)))


def gpu_from_libnvml(selector: int | str, library: str = "libnvidia-ml.so.1") -> GpuInfo | None:
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return None
    if lib.nvmlInit_v2() != 0:
        return None
    try:
        handle = ctypes.c_void_p()
        if isinstance(selector, int):
            rc = lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(selector), ctypes.byref(handle))
        else:
            rc = lib.nvmlDeviceGetHandleByUUID(selector.encode(), ctypes.byref(handle))
        name = ctypes.create_string_buffer(96)
        major, minor = ctypes.c_int(), ctypes.c_int()
        if rc or lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(96)):
            return None
        if lib.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)):
            return None
        return GpuInfo(name.value.decode(), (major.value, minor.value))
    finally:
        lib.nvmlShutdown()


def gpu_from_nvidia_smi(selector: int | str, run: Callable[..., Any] = subprocess.run) -> GpuInfo | None:
    cmd = ["nvidia-smi", f"--id={selector}", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(output: str) -> GpuInfo | None:
    """'NVIDIA H100 80GB HBM3, 9.0' -> GpuInfo."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return None
    name, _, cap = lines[0].rpartition(",")
    try:
        major, minor = (int(p) for p in cap.strip().split("."))
    except ValueError:
        return None
    return GpuInfo(name.strip(), (major, minor)) if name.strip() else None


GPU_PROBES: tuple[Callable[[int | str], GpuInfo | None], ...] = (gpu_from_pynvml, gpu_from_libnvml, gpu_from_nvidia_smi)


def probe_gpu(env: Mapping[str, str] | None = None) -> GpuInfo | None:
    """The GPU this process would use: pynvml, else libnvidia-ml through ctypes, else nvidia-smi."""
    selector = visible_gpu(env)
    if selector is None:
        return None
    for probe in GPU_PROBES:
        try:
            gpu = probe(selector)
        except Exception:  # noqa: BLE001 - a driver/library mismatch is "this probe can't tell", not a crash
            gpu = None
        if gpu is not None:
            return gpu
    return None


@dataclass
class Probes:
    """The host facts detection needs; tests pass fakes."""

    tensorrt: Callable[[], str | None] = tensorrt_version
    tensorrt_lean: Callable[[], str | None] = tensorrt_lean_version
    onnxruntime: Callable[[], str | None] = onnxruntime_version
    gpu: Callable[[], GpuInfo | None] = field(default=probe_gpu)
    cpu: Callable[[], str] = field(default=cpu_device)


# ------------------------------------------------------------------------------------------- detection


def _hint(what: str) -> str:
    return f"{what}; pass runtime='{EXAMPLE}' (or 'onnxruntime==1.23.2@x86_64-avx2')"


def _gpu_fields(probes: Probes) -> dict[str, str]:
    gpu = probes.gpu()
    if gpu is None:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f" (CUDA_VISIBLE_DEVICES={cvd!r})" if cvd is not None else ""
        raise InvalidInput(_hint(f"no NVIDIA GPU found through NVML or nvidia-smi{seen}"))
    return {"sku": sku_slug(gpu.name), "cc": cc_slug(gpu.cc)}


def _tensorrt_version(probes: Probes) -> tuple[str, bool] | None:
    """(version, lean_runtime) of the TensorRT importable here, the full one preferred."""
    if version := probes.tensorrt():
        return version, False
    if version := probes.tensorrt_lean():
        return version, True
    return None


def detect_tensorrt(probes: Probes) -> Runtime | None:
    """TensorRT + this process's GPU; None when tensorrt is not importable; InvalidInput when no GPU."""
    found = _tensorrt_version(probes)
    if found is None:
        return None
    version, lean = found
    return Runtime("tensorrt", version, lean_runtime=lean, **_gpu_fields(probes))


def detect_onnxruntime(probes: Probes) -> Runtime | None:
    version = probes.onnxruntime()
    return Runtime("onnxruntime", version, cpu=probes.cpu()) if version else None


def detect_runtime(toolchain: str | None = None, probes: Probes | None = None) -> Runtime:
    """The runtime this process has: TensorRT on its GPU if importable, else ONNX Runtime on its CPU.

    `toolchain` restricts detection to one kind. Raises InvalidInput saying what is missing.
    """
    if toolchain not in (None, *TOOLCHAINS):
        raise InvalidInput(f"unknown toolchain {toolchain!r}; known: {', '.join(TOOLCHAINS)}")
    probes = probes or Probes()
    gpu_problem: InvalidInput | None = None
    if toolchain in (None, "tensorrt"):
        try:
            if found := detect_tensorrt(probes):
                return found
        except InvalidInput as exc:
            if toolchain == "tensorrt":
                raise
            gpu_problem = exc  # tensorrt but no GPU: ONNX Runtime on the CPU may still serve
    if toolchain in (None, "onnxruntime") and (found := detect_onnxruntime(probes)):
        return found
    if gpu_problem is not None:
        raise gpu_problem
    missing = {None: "no tensorrt or onnxruntime importable here", "tensorrt": "tensorrt is not importable here",
               "onnxruntime": "onnxruntime is not importable here"}[toolchain]
    raise InvalidInput(_hint(missing))


# --------------------------------------------------------------------------------------------- parsing


def parse_runtime(text: str, probes: Probes | None = None) -> Runtime:
    """Parse a runtime string (module docstring); 'auto' and missing parts are detected on this host."""
    text = text.strip()
    if text in ("", "auto"):
        return detect_runtime(probes=probes)
    m = _RUNTIME.match(text)
    if not m:
        raise InvalidInput(
            f"runtime {text!r} is not kind==version@device; examples: {EXAMPLE}, "
            "tensorrt==8.6.0@h100-80gb-hbm3/sm_90, onnxruntime==1.23.2@x86_64-avx2, auto"
        )
    kind = m["kind"]
    if kind not in TOOLCHAINS:
        raise InvalidInput(f"runtime {text!r}: unknown toolchain {kind!r}; known: {', '.join(TOOLCHAINS)}")
    flags = _parse_flags(text, m["flags"])
    devices = _parse_devices(text, kind, m["device"]) if m["device"] else None
    version = _parse_version(text, m["version"]) if m["version"] else None
    if version is None or devices is None:
        probes = probes or Probes()
        if version is None:
            version, lean = _detected_version(kind, probes)
            flags["lean_runtime"] = flags.get("lean_runtime", False) or lean
        devices = devices if devices is not None else _detected_devices(kind, probes)
    return Runtime(kind, version, **devices, **flags)


def _parse_version(text: str, version: str) -> str:
    if normalize_version(version) != version:
        raise InvalidInput(f"runtime {text!r}: version {version!r} should look like 8.6.0")
    return version


def _parse_flags(text: str, flags: str) -> dict[str, bool]:
    names = [f for f in flags.split(",") if f]
    unknown = [f for f in names if f not in FLAGS]
    if unknown:
        raise InvalidInput(f"runtime {text!r}: unknown flag(s) {', '.join(unknown)}; known: {', '.join(FLAGS)}")
    return {name: True for name in names}


def _parse_devices(text: str, kind: str, device: str) -> dict[str, str]:
    parts = [p for p in device.lower().split("/") if p]
    found: dict[str, str] = {}
    for part in parts:
        try:
            cls = "cc" if _CC_NUMBER.match(part) else device_class(part)
        except InvalidTarget:
            cls = "?"
        if cls == "ampere_plus" or cls == "?" or cls in found:
            raise InvalidInput(
                f"runtime {text!r}: device {device!r} should be a GPU SKU slug and/or sm_XX "
                "(h100-80gb-hbm3/sm_90) or a CPU like x86_64-avx2; a runtime runs on one concrete device"
            )
        found[cls] = cc_slug(part) if cls == "cc" else part
    if kind == "tensorrt" and "cpu" in found:
        raise InvalidInput(f"runtime {text!r}: tensorrt runs on a GPU (SKU slug and/or sm_XX), not {found['cpu']!r}")
    if kind == "onnxruntime" and set(found) != {"cpu"}:
        raise InvalidInput(f"runtime {text!r}: onnxruntime runs on a CPU device like x86_64-avx2, not {device!r}")
    return found


def _detected_version(kind: str, probes: Probes) -> tuple[str, bool]:
    """(version, lean_runtime) of `kind` importable here."""
    found = _tensorrt_version(probes) if kind == "tensorrt" else (probes.onnxruntime(), False)
    if not found or not found[0]:
        raise InvalidInput(_hint(f"no version given and {kind} is not importable here"))
    return found  # type: ignore[return-value]


def _detected_devices(kind: str, probes: Probes) -> dict[str, str]:
    return _gpu_fields(probes) if kind == "tensorrt" else {"cpu": probes.cpu()}


# ------------------------------------------------------------------------------------------ conversion


def as_runtime(value: Any, probes: Probes | None = None) -> Runtime:
    """'auto' (or None), a runtime string, or a Runtime."""
    if isinstance(value, Runtime):
        return value
    if value is None or isinstance(value, str):
        return parse_runtime(value or "auto", probes)
    raise InvalidInput(f"runtime must be 'auto', a string like {EXAMPLE!r} or a Runtime; got {value!r}")


__all__ = [
    "FLAGS", "GpuInfo", "Probes", "Runtime", "as_runtime", "detect_runtime", "parse_runtime", "probe_gpu",
    "visible_gpu",
]
