"""What a plan is: its header, its engine's I/O and profiles, the engine inspector -- the build's metadata."""

from __future__ import annotations

import json
import re

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


def describe_plan(trt, logger, plan: bytes, spec: dict, cache_info: dict, seconds: float,
                  applied: list | None = None) -> dict:
    _runtime, engine = deserialize(trt, logger, plan)  # the runtime must outlive the engine
    if engine is None:
        raise RunnerError("build_error", "TensorRT built a plan that it cannot deserialize: "
                                         + ("; ".join(logger.errors) or "no error logged"))
    inspector = inspect_engine(trt, engine) if spec["profiling_verbosity"] == "detailed" else None
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
        "inspector": inspector,
        "layer_precisions": layer_report(spec, applied or [], inspector),
        "timing_cache": cache_info,
        "build_seconds": round(seconds, 3),
        "device": cuda.cuda_device_info(),
    }


def device_memory_bytes(engine) -> int:
    if hasattr(engine, "device_memory_size_v2"):  # 10.x; device_memory_size is deprecated there
        return int(engine.device_memory_size_v2)
    return int(engine.device_memory_size)


def member_name(value) -> str:
    """An enum member's name ('DataType.HALF' -> 'HALF'), whatever the binding's repr."""
    return str(getattr(value, "name", value)).rsplit(".", 1)[-1]


def dtype_name(trt, dtype) -> str:
    name = member_name(dtype)
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
                 "shape": [int(d) for d in engine.get_tensor_shape(name)],
                 "format": tensor_format(engine, name)}
        describe = getattr(engine, "get_tensor_format_desc", None)
        if describe is not None:
            entry["format_desc"] = str(describe(name))
        if is_input:
            entry["profiles"] = [profile_shapes(engine, name, k) for k in range(engine.num_optimization_profiles)]
        io.append(entry)
    return io


def profile_shapes(engine, name: str, k: int) -> dict:
    shapes = engine.get_tensor_profile_shape(name, k)
    return {which: [int(d) for d in shape] for which, shape in zip(("min", "opt", "max"), shapes)}


def inspect_engine(trt, engine):
    """The engine inspector's JSON document, or {"error": why} (the metadata says why there is no layer table)."""
    text = ""
    try:
        inspector = engine.create_engine_inspector()
        context = shaped_context(trt, engine)
        if context is not None:  # else a dynamic engine's layers read "N/A due to dynamic shapes"
            inspector.execution_context = context
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        # TensorRT 8.6 writes control characters inside JSON strings (NVIDIA/TensorRT#2779): not strict JSON
        found = json.loads(text, strict=False)
        return found if isinstance(found, dict) else {"error": f"not a JSON object: {text[:300]!r}"}
    except Exception as exc:  # noqa: BLE001 - the inspector is a nice-to-have
        log(f"engine inspector failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"[:500] + (f" (text began {text[:200]!r})" if text else "")}


def shaped_context(trt, engine):
    """An execution context whose inputs have profile 0's opt shapes, for the inspector to report concrete layer
    formats and types; None for a static engine, or where the name-based shape API is missing (before 8.5)."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)] if hasattr(engine, "num_io_tensors") \
        else []
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    if not any(-1 in tuple(engine.get_tensor_shape(n)) for n in inputs):
        return None
    context = engine.create_execution_context()
    for name in inputs:
        if engine.is_shape_inference_io(name):  # a shape tensor's values, not its shape
            continue
        context.set_input_shape(name, tuple(engine.get_tensor_profile_shape(name, 0)[1]))
    infer = getattr(context, "infer_shapes", None)
    if infer is not None:  # the inspector reads concrete formats only once the shapes are propagated (8.6)
        infer()
    return context


def tensor_format(engine, name: str) -> str:
    """The I/O tensor's memory layout as the spec names formats ('linear', 'hwc8', ...; TensorRT's member name in
    lower case): the name-based API (8.5+), else the binding API; 'linear' where neither exists."""
    getter = getattr(engine, "get_tensor_format", None)
    if getter is not None:
        return member_name(getter(name)).lower()
    binding = getattr(engine, "get_binding_format", None)
    if binding is not None:
        return member_name(binding(engine.get_binding_index(name))).lower()
    return "linear"


# ---------------------------------------------------------------------------------------------------------
# The layer table of a build with layer precision rules
# ---------------------------------------------------------------------------------------------------------
# words in the inspector's "Format/Datatype" text -> the spec's type names (longest first: BF16 before FP16,
# UINT8 before INT8, BFLOAT16 before FLOAT)
INSPECTOR_TYPES = (("BFLOAT16", "bf16"), ("BF16", "bf16"), ("FP8", "fp8"), ("FP16", "fp16"), ("HALF", "fp16"),
                   ("FP32", "fp32"), ("FLOAT", "fp32"), ("UINT8", "uint8"), ("INT8", "int8"), ("INT32", "int32"),
                   ("INT64", "int64"), ("BOOL", "bool"))


def layer_report(spec: dict, applied: list, inspector) -> dict | None:
    """What the rules did (`rules`, from constraints.apply_layer_precisions) and the engine's layers as TensorRT's
    inspector reports them (`engine_layers`: name, type, each output's Format/Datatype text and the type read
    from it, the rules whose layers it holds) -- only with profiling_verbosity=detailed; else `note` says why."""
    if not spec["layer_precisions"]:
        return None
    report = {"rules": applied, "engine_layers": None, "note": None}
    if spec["profiling_verbosity"] != "detailed":
        report["note"] = (f"profiling_verbosity is {spec['profiling_verbosity']}: TensorRT's engine inspector "
                          "reports no layer types; build with profiling_verbosity=detailed to record the engine's "
                          "layer table here")
    elif not isinstance(inspector, dict) or not isinstance(inspector.get("Layers"), list):
        why = inspector.get("error") if isinstance(inspector, dict) and inspector.get("error") else (
            f"keys {sorted(inspector)[:8]}" if isinstance(inspector, dict) else "nothing")
        report["note"] = f"TensorRT's engine inspector gave no layer table: {why}"
    else:
        report["engine_layers"] = [engine_layer(layer, applied) for layer in inspector["Layers"]]
    return report


def engine_layer(layer, applied: list) -> dict:
    if not isinstance(layer, dict):
        return {"name": str(layer)}
    outputs = [str(o.get("Format/Datatype", "")) for o in layer.get("Outputs") or [] if isinstance(o, dict)]
    text = f"{layer.get('Name', '')} {layer.get('Metadata', '')}"
    # a reformatting layer names the layer it feeds or drains ("Reformatting CopyNode for Input Tensor 0 to
    # conv0"): it converts to or from the constrained types, it is not the constrained layer
    reformat = layer.get("LayerType") == "Reformat" or str(layer.get("Name", "")).startswith("Reformatting ")
    rules = [] if reformat else [r["pattern"] for r in applied if any(holds(text, n) for n in r["names"])]
    return {"name": layer.get("Name"), "type": layer.get("LayerType"), "outputs": outputs,
            "output_types": [type_in(o) for o in outputs], "constrained_by": rules}


def type_in(text: str) -> str | None:
    upper = text.upper()
    return next((name for word, name in INSPECTOR_TYPES if word in upper), None)


def holds(text: str, layer_name: str) -> bool:
    """Whether an engine layer's name (fused layers: 'conv1 + relu1') holds a network layer's name as a whole
    name, not as the start of a longer one ('conv1' is not in 'conv10')."""
    return re.search(rf"(?<![\w]){re.escape(layer_name)}(?![\w])", text) is not None
