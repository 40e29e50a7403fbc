"""What this ONNX Runtime supports (--probe) and what a canonical spec asks of it."""

from __future__ import annotations

import platform
from typing import Any

from ..common import RunnerError, cpu_device, load_spec

KIND = "onnxruntime"

# spec level name -> ONNX Runtime enum member name (looked up by name, never by integer value)
LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
# the first ONNX Runtime release that has a level (others exist in every release this runner supports)
LEVEL_SINCE = {"layout": "1.23"}
FORMATS = ("ort", "onnx")
ORT_OPTIONS = ("graph_optimization_level", "optimized_model_format")

# The spec's TensorRT-only options (the names of registry.spec.TENSORRT_ONLY, which this runner cannot
# import): one that asks TensorRT for anything cannot be honoured by an onnxruntime build.
TENSORRT_ONLY = (
    "precision", "strongly_typed", "workspace_mib", "tactic_sources", "hardware_compatibility",
    "version_compatible", "exclude_lean_runtime", "refit", "strip_weights", "weight_streaming",
    "dla_core", "gpu_fallback", "layer_precisions", "precision_constraints", "io_formats", "calibration_algorithm",
)
EMPTY_MEANS_NOTHING = ("precision", "layer_precisions", "io_formats")  # an empty list or object asks nothing
NULL_MEANS_NOTHING = ("calibration_algorithm",)  # a choice whose default is null
# The canonical spec's fields this runner reads.
SPEC_FIELDS = (*TENSORRT_ONLY, "profiles", *(f"onnxruntime.{name}" for name in ORT_OPTIONS))


def features() -> list[str]:
    import onnxruntime as ort

    levels = [f"onnxruntime.graph_optimization_level={name}" for name, member in LEVELS.items()
              if hasattr(ort.GraphOptimizationLevel, member)]
    return [*levels, *(f"onnxruntime.optimized_model_format={f}" for f in FORMATS), "profiles"]


def probe(args: Any = None) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "kind": KIND,
        "version": ort.__version__,
        "python": platform.python_version(),
        "features": features(),
        "devices": [cpu_device()],
    }


def read_spec(path: str) -> dict[str, Any]:
    return load_spec(path, SPEC_FIELDS)


def check_spec(spec: dict[str, Any]) -> tuple[str, str]:
    """(level, format) from the canonical spec; a TensorRT-only option that asks for anything fails."""
    import onnxruntime as ort

    for name in TENSORRT_ONLY:
        value = spec[name]
        if asks_tensorrt(name, value):
            message = f"{name}={_show(value)} is a TensorRT option; {_tensorrt_only_why(name)}"
            raise RunnerError("unsupported_option", message,
                              hint=f"leave {name} at its default ({_untouched(name, value)}) for an onnxruntime target")
    options = spec["onnxruntime"]
    unknown = sorted(set(options) - set(ORT_OPTIONS))
    if unknown:
        raise RunnerError("invalid_input", f"unknown onnxruntime option(s): {', '.join(unknown)}")
    level, fmt = options["graph_optimization_level"], options["optimized_model_format"]
    if level not in LEVELS:
        raise RunnerError("invalid_input",
                          f"onnxruntime.graph_optimization_level={level!r}; known: {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise RunnerError("invalid_input", f"onnxruntime.optimized_model_format={fmt!r}; known: {', '.join(FORMATS)}")
    if not hasattr(ort.GraphOptimizationLevel, LEVELS[level]):
        since = LEVEL_SINCE.get(level, "a newer release")
        raise RunnerError("unsupported_option",
                          f"onnxruntime.graph_optimization_level={level} needs ONNX Runtime >= {since}; "
                          f"this toolchain has {ort.__version__}",
                          hint="pick another level or a target with a newer onnxruntime")
    return level, fmt


def asks_tensorrt(name: str, value: Any) -> bool:
    """Whether a TensorRT-only option's value asks TensorRT for something. precision lists what is added
    to fp32 (none added asks nothing); elsewhere only null, false and "none" ask nothing
    (tactic_sources=[] restricts the sources, dla_core=0 names a core)."""
    if name in EMPTY_MEANS_NOTHING:
        return bool(value)
    return not (value is None or value is False or value == "none")


def _untouched(name: str, value: Any) -> str:
    """The value of `name` that asks TensorRT for nothing, written like _show writes values."""
    if name in EMPTY_MEANS_NOTHING:
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, bool):
        return "false"
    return "none" if isinstance(value, str) and name not in NULL_MEANS_NOTHING else "null"


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "[]"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _tensorrt_only_why(name: str) -> str:
    if name == "precision":
        return "onnxruntime builds keep the model's precision"
    return "onnxruntime builds have no such setting"
