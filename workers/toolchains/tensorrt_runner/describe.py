"""What a plan is: its header, its engine's I/O and profiles, the engine inspector -- the build's metadata."""

from __future__ import annotations

import json

from ..common import RunnerError, log
from . import cuda

PLAN_MAGIC = b"ftrt"
# TensorRT data types numpy has no dtype for -> the names the metadata uses for them
NON_NUMPY_DTYPES = {"BF16": "bfloat16", "FP8": "float8_e4m3fn", "INT4": "int4", "FP4": "float4_e2m1fn",
                    "E8M0": "float8_e8m0fnu"}


def plan_header(plan: bytes) -> tuple[str | None, int | None]:
    """(TensorRT version that serialized the plan, its build number), or (None, None) for no plan."""
    if len(plan) < 28 or plan[:4] != PLAN_MAGIC:
        return None, None
    return f"{plan[24]}.{plan[25]}.{plan[26]}", plan[27]


def header_of(plan: bytes, built_by: str) -> dict:
    """What the plan's header says, checked against the TensorRT that built it: {"plan_version",
    "plan_build"}, with both None and a "plan_header" note saying why when the layout is not the one measured
    on 8.6 (magic "ftrt", the version at bytes 24..27): TensorRT 8.5.3.1 writes another layout."""
    version, build = plan_header(plan)
    if version is not None and built_by.startswith(version):
        return {"plan_version": version, "plan_build": build, "plan_header": "ftrt, version at bytes 24..27"}
    found = f"magic {plan[:4]!r}, bytes 24..27 = {'.'.join(str(b) for b in plan[24:28])}"
    return {"plan_version": None, "plan_build": None,
            "plan_header": f"unknown layout ({found}): TensorRT {built_by} does not write its version where "
                           "8.6 does; the version recorded is the builder's"}


def deserialize(trt, logger, plan: bytes):
    """(runtime, engine or None); the runtime must outlive the engine."""
    runtime = trt.Runtime(logger)
    if hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True  # version-compatible plans carry a lean runtime
    engine = runtime.deserialize_cuda_engine(plan)
    return runtime, engine


def describe_plan(trt, logger, plan: bytes, spec: dict, cache_info: dict, seconds: float) -> dict:
    _runtime, engine = deserialize(trt, logger, plan)  # the runtime must outlive the engine
    if engine is None:
        raise RunnerError("build_error", "TensorRT built a plan that it cannot deserialize: "
                                         + ("; ".join(logger.errors) or "no error logged"))
    return {
        "toolchain": "tensorrt",
        "version": trt.__version__,
        **header_of(plan, trt.__version__),
        "hardware_compatibility": spec["hardware_compatibility"],
        "version_compatible": bool(spec["version_compatible"]),
        "refittable": bool(engine.refittable),
        "io": describe_io(trt, engine),
        "num_profiles": int(engine.num_optimization_profiles),
        "layers": int(engine.num_layers),
        "device_memory_bytes": device_memory_bytes(engine),
        "inspector": inspect_engine(trt, engine) if spec["profiling_verbosity"] == "detailed" else None,
        "timing_cache": cache_info,
        "build_seconds": round(seconds, 3),
        "device": cuda.cuda_device_info(),
    }


def device_memory_bytes(engine) -> int:
    if hasattr(engine, "device_memory_size_v2"):  # 10.x; device_memory_size is deprecated there
        return int(engine.device_memory_size_v2)
    return int(engine.device_memory_size)


def dtype_name(trt, dtype) -> str:
    name = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]
    if name in NON_NUMPY_DTYPES:
        return NON_NUMPY_DTYPES[name]
    import numpy as np
    return np.dtype(trt.nptype(dtype)).name


def describe_io(trt, engine) -> list:
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        entry = {"name": name, "mode": "input" if is_input else "output",
                 "dtype": dtype_name(trt, engine.get_tensor_dtype(name)),
                 "shape": [int(d) for d in engine.get_tensor_shape(name)]}
        if is_input:
            entry["profiles"] = [profile_shapes(engine, name, k) for k in range(engine.num_optimization_profiles)]
        io.append(entry)
    return io


def profile_shapes(engine, name: str, k: int) -> dict:
    shapes = engine.get_tensor_profile_shape(name, k)
    return {which: [int(d) for d in shape] for which, shape in zip(("min", "opt", "max"), shapes)}


def inspect_engine(trt, engine):
    try:
        text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 - the inspector is a nice-to-have
        log(f"engine inspector failed: {exc}")
        return None
