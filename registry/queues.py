"""Queue names, built in one place (docs/design.md "Queues and routing").

A build goes to `build.<toolchain>-<version>.<device>` where device is the build key's device
component (SKU slug, sm_XX, ampere_plus or a CPU device). A worker subscribes to every queue it can
serve: its SKU, its sm_XX and, with cc >= 8.0, ampere_plus (for each TensorRT it has); its CPU device
for ONNX Runtime.
"""

from __future__ import annotations

from registry.targets import AMPERE_PLUS, cc_tuple

BUILD_TASK = "trtfarm.build"


def build_queue(toolchain: str, version: str, device: str) -> str:
    return f"build.{toolchain}-{version}.{device}"


def gpu_devices_served(sku: str, cc: str) -> list[str]:
    devices = [sku, cc]
    if cc_tuple(cc) >= (8, 0):
        devices.append(AMPERE_PLUS)
    return devices


def worker_queues(toolchains: list[dict], gpus: list[dict], cpu_device: str | None) -> list[str]:
    """Queues for a worker: toolchains are {kind, version}; gpus are the GPUs it owns ({sku, cc})."""
    queues: list[str] = []
    for tc in toolchains:
        if tc["kind"] == "tensorrt":
            for gpu in gpus:
                queues += [build_queue("tensorrt", tc["version"], d) for d in gpu_devices_served(gpu["sku"], gpu["cc"])]
        elif tc["kind"] == "onnxruntime" and cpu_device:
            queues.append(build_queue("onnxruntime", tc["version"], cpu_device))
    return list(dict.fromkeys(queues))
