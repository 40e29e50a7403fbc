"""--probe: the TensorRT version, the spec options it supports, and the GPUs (NVML, else nvidia-smi, else
none)."""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
import sys

from ..common import cc_slug, log, sku_slug
from .options import supported_features
from .runtime import import_trt


class NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def cmd_probe(args=None) -> dict:
    trt = import_trt()
    return {"kind": "tensorrt", "version": trt.__version__, "python": platform.python_version(),
            "executable": sys.executable, "features": supported_features(trt), "devices": probe_gpus()}


def probe_gpus() -> list:
    try:
        return nvml_gpus()
    except (OSError, RuntimeError, AttributeError) as exc:
        log(f"NVML unavailable ({exc}); trying nvidia-smi")
    try:
        return smi_gpus()
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        log(f"nvidia-smi unavailable ({exc}); reporting no GPUs")
    return []


def nvml_gpus() -> list:
    nvml = ctypes.CDLL("libnvidia-ml.so.1")

    def check(status, what):
        if status != 0:
            nvml.nvmlErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{what}: {nvml.nvmlErrorString(status).decode()}")

    check(nvml.nvmlInit_v2(), "nvmlInit_v2")
    try:
        driver = ctypes.create_string_buffer(96)
        check(nvml.nvmlSystemGetDriverVersion(driver, 96), "nvmlSystemGetDriverVersion")
        count = ctypes.c_uint()
        check(nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)), "nvmlDeviceGetCount_v2")
        return [nvml_gpu(nvml, check, i, driver.value.decode()) for i in range(count.value)]
    finally:
        nvml.nvmlShutdown()


def nvml_gpu(nvml, check, index: int, driver: str) -> dict:
    handle = ctypes.c_void_p()
    check(nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)), "GetHandleByIndex")
    name, uuid = ctypes.create_string_buffer(96), ctypes.create_string_buffer(96)
    check(nvml.nvmlDeviceGetName(handle, name, 96), "nvmlDeviceGetName")
    check(nvml.nvmlDeviceGetUUID(handle, uuid, 96), "nvmlDeviceGetUUID")
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)), "GetCudaCC")
    memory = NvmlMemory()
    check(nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)), "nvmlDeviceGetMemoryInfo")
    text = name.value.decode()
    return {"index": index, "name": text, "sku": sku_slug(text), "cc": cc_slug(major.value, minor.value),
            "memory_mib": memory.total // (1024 * 1024), "driver": driver, "uuid": uuid.value.decode()}


def smi_gpus() -> list:
    if shutil.which("nvidia-smi") is None:
        raise RuntimeError("nvidia-smi is not on PATH")
    query = "--query-gpu=index,name,compute_cap,driver_version,memory.total,uuid"
    out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return [smi_gpu(line) for line in out.splitlines() if line.strip()]


def smi_gpu(line: str) -> dict:
    index, name, cc, driver, memory, uuid = [field.strip() for field in line.split(",")]
    major, minor = cc.split(".")
    return {"index": int(index), "name": name, "sku": sku_slug(name), "cc": cc_slug(int(major), int(minor)),
            "memory_mib": int(float(memory)), "driver": driver, "uuid": uuid}
