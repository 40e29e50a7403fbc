"""The few CUDA driver API calls the runner needs (libcuda.so.1 through ctypes): device info, the primary
context, device memory, copies, streams and events. Every CUresult is checked."""

from __future__ import annotations

import ctypes

from ..common import RunnerError, cc_slug, log, sku_slug

_P = ctypes.POINTER
CUDA_SIGNATURES = {
    "cuInit": [ctypes.c_uint],
    "cuDeviceGet": [_P(ctypes.c_int), ctypes.c_int],
    "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    "cuDeviceGetAttribute": [_P(ctypes.c_int), ctypes.c_int, ctypes.c_int],
    "cuDevicePrimaryCtxRetain": [_P(ctypes.c_void_p), ctypes.c_int],
    "cuCtxSetCurrent": [ctypes.c_void_p],
    "cuMemAlloc_v2": [_P(ctypes.c_uint64), ctypes.c_size_t],
    "cuMemFree_v2": [ctypes.c_uint64],
    "cuMemcpyHtoD_v2": [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t],
    "cuMemcpyDtoH_v2": [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t],
    "cuStreamCreate": [_P(ctypes.c_void_p), ctypes.c_uint],
    "cuStreamSynchronize": [ctypes.c_void_p],
    "cuEventCreate": [_P(ctypes.c_void_p), ctypes.c_uint],
    "cuEventRecord": [ctypes.c_void_p, ctypes.c_void_p],
    "cuEventSynchronize": [ctypes.c_void_p],
    "cuEventElapsedTime": [_P(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p],
    "cuGetErrorName": [ctypes.c_int, _P(ctypes.c_char_p)],
}
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class CudaDriver:
    """The few driver-API calls the runner needs; every CUresult is checked."""

    def __init__(self, library: str = "libcuda.so.1"):
        try:
            self.lib = ctypes.CDLL(library)
        except OSError as exc:
            raise RunnerError("run_error", f"cannot load the CUDA driver ({library}): {exc}") from None
        for name, argtypes in CUDA_SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        self.call("cuInit", 0)

    def call(self, name: str, *args) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RunnerError("run_error", f"{name} failed: {self.error_name(status)} ({status})")

    def error_name(self, status: int) -> str:
        text = ctypes.c_char_p()
        if self.lib.cuGetErrorName(status, ctypes.byref(text)) != 0 or not text.value:
            return "CUDA_ERROR_UNKNOWN"
        return text.value.decode()

    def device_info(self, ordinal: int = 0) -> dict:
        device = ctypes.c_int()
        self.call("cuDeviceGet", ctypes.byref(device), ordinal)
        name = ctypes.create_string_buffer(256)
        self.call("cuDeviceGetName", name, 256, device)
        major, minor = (self.attribute(a, device) for a in (CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                           CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
        text = name.value.decode(errors="replace")
        return {"name": text, "sku": sku_slug(text), "cc": cc_slug(major, minor)}

    def attribute(self, attribute: int, device) -> int:
        value = ctypes.c_int()
        self.call("cuDeviceGetAttribute", ctypes.byref(value), attribute, device)
        return value.value

    def make_current(self, ordinal: int = 0) -> None:
        """Retain the primary context (the one the CUDA runtime inside TensorRT uses) and make it current."""
        device, context = ctypes.c_int(), ctypes.c_void_p()
        self.call("cuDeviceGet", ctypes.byref(device), ordinal)
        self.call("cuDevicePrimaryCtxRetain", ctypes.byref(context), device)
        self.call("cuCtxSetCurrent", context)

    def alloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64()
        self.call("cuMemAlloc_v2", ctypes.byref(pointer), max(int(nbytes), 1))
        return pointer.value

    def free(self, pointer: int) -> None:
        self.call("cuMemFree_v2", pointer)

    def to_device(self, pointer: int, array) -> None:
        self.call("cuMemcpyHtoD_v2", pointer, array.ctypes.data, array.nbytes)

    def to_host(self, array, pointer: int) -> None:
        self.call("cuMemcpyDtoH_v2", array.ctypes.data, pointer, array.nbytes)

    def stream(self) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self.call("cuStreamCreate", ctypes.byref(handle), 0)
        return handle

    def synchronize(self, stream) -> None:
        self.call("cuStreamSynchronize", stream)

    def event(self) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self.call("cuEventCreate", ctypes.byref(handle), 0)
        return handle

    def record(self, event, stream) -> None:
        self.call("cuEventRecord", event, stream)

    def elapsed_ms(self, start, end) -> float:
        self.call("cuEventSynchronize", end)
        ms = ctypes.c_float()
        self.call("cuEventElapsedTime", ctypes.byref(ms), start, end)
        return ms.value


def cuda_device_info() -> dict | None:
    """name/sku/cc of device 0 of the visible ones, or None (logged) where the driver cannot say."""
    try:
        return CudaDriver().device_info(0)
    except (RunnerError, AttributeError) as exc:
        log(f"could not read the build GPU through the CUDA driver: {exc}")
        return None
