"""Queue names, built in one place (docs/design.md "Queues and routing").

A build goes to `build.<toolchain>-<version>.<device>` where device is the build key's device
component (SKU slug, sm_XX, ampere_plus or a CPU device). A worker subscribes to every queue it can
serve: its SKU, its sm_XX and, with cc >= 8.0, ampere_plus (for each TensorRT it has that builds hardware-
compatible plans: 8.6 on); its CPU device for ONNX Runtime.
"""

from __future__ import annotations

from registry.targets import AMPERE_PLUS, cc_tuple

BUILD_TASK = "trtfarm.build"


def build_queue(toolchain: str, version: str, device: str) -> str:
    return f"build.{toolchain}-{version}.{device}"


AMPERE_PLUS_FEATURE = "hardware_compatibility=ampere_plus"  # what a TensorRT probe reports when it builds them


def gpu_devices_served(sku: str, cc: str, ampere_plus: bool = True) -> list[str]:
    devices = [sku, cc]
    if ampere_plus and cc_tuple(cc) >= (8, 0):
        devices.append(AMPERE_PLUS)
    return devices


def worker_queues(toolchains: list[dict], gpus: list[dict], cpu_device: str | None) -> list[str]:
    """Queues for a worker: toolchains are {kind, version} and, from the probe, `features` (a TensorRT whose
    features lack hardware_compatibility=ampere_plus, such as 8.5, serves no ampere_plus queue; without
    `features` it is assumed to); gpus are the GPUs it owns ({sku, cc})."""
    queues: list[str] = []
    for tc in toolchains:
        if tc["kind"] == "tensorrt":
            ampere_plus = "features" not in tc or AMPERE_PLUS_FEATURE in tc["features"]
            for gpu in gpus:
                queues += [build_queue("tensorrt", tc["version"], d)
                           for d in gpu_devices_served(gpu["sku"], gpu["cc"], ampere_plus)]
        elif tc["kind"] == "onnxruntime" and cpu_device:
            queues.append(build_queue("onnxruntime", tc["version"], cpu_device))
    return list(dict.fromkeys(queues))
