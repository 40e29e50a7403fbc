"""The option table: which spec options this TensorRT can apply (--probe's features, build's check) and
applying a spec to a builder config.

Every option is found by feature detection: getattr on TensorRT's enums and classes, never stored
integers. OPTIONS is the one table that decides both what --probe advertises and what build accepts.
"""

from __future__ import annotations

from ..common import RunnerError, load_spec
from .runtime import version_tuple

# spec option (or option=value) -> (kind of setting, TensorRT attribute, first TensorRT version that can
# use it). An option is supported when the attribute exists AND the version is at least the floor (FP8's
# enum member exists in 8.6, but FP8 builds need TensorRT 9).
OPTIONS: dict[str, tuple[str, str, str]] = {
    "precision=fp16": ("builder_flag", "FP16", "7.0"),
    "precision=bf16": ("builder_flag", "BF16", "9.0"),
    "precision=fp8": ("builder_flag", "FP8", "9.0"),
    "precision=int8": ("builder_flag", "INT8", "7.0"),
    "precision=int4": ("builder_flag", "INT4", "10.0"),
    "tf32": ("clear_builder_flag", "TF32", "7.1"),  # requested by tf32=false
    "strongly_typed": ("network_flag", "STRONGLY_TYPED", "9.0"),
    "workspace_mib": ("memory_pool", "WORKSPACE", "8.4"),
    "optimization_level": ("config_attr", "builder_optimization_level", "8.6"),
    "tactic_sources=cublas": ("tactic_source", "CUBLAS", "7.2"),
    "tactic_sources=cublas_lt": ("tactic_source", "CUBLAS_LT", "7.2"),
    "tactic_sources=cudnn": ("tactic_source", "CUDNN", "8.0"),
    "tactic_sources=edge_mask_convolutions": ("tactic_source", "EDGE_MASK_CONVOLUTIONS", "8.4"),
    "tactic_sources=jit_convolutions": ("tactic_source", "JIT_CONVOLUTIONS", "8.5"),
    "hardware_compatibility=ampere_plus": ("hardware_level", "AMPERE_PLUS", "8.6"),
    "hardware_compatibility=same_compute_capability": ("hardware_level", "SAME_COMPUTE_CAPABILITY", "10.9"),
    "version_compatible": ("builder_flag", "VERSION_COMPATIBLE", "8.6"),
    "exclude_lean_runtime": ("builder_flag", "EXCLUDE_LEAN_RUNTIME", "8.6"),
    "refit=refit": ("builder_flag", "REFIT", "7.0"),
    "refit=refit_identical": ("builder_flag", "REFIT_IDENTICAL", "10.0"),
    "strip_weights": ("builder_flag", "STRIP_PLAN", "10.0"),
    "weight_streaming": ("builder_flag", "WEIGHT_STREAMING", "10.0"),
    "dla_core": ("device_type", "DLA", "7.0"),
    "gpu_fallback": ("builder_flag", "GPU_FALLBACK", "7.0"),
    "profiling_verbosity=none": ("profiling_verbosity", "NONE", "8.2"),
    "profiling_verbosity=layer_names_only": ("profiling_verbosity", "LAYER_NAMES_ONLY", "8.2"),
    "profiling_verbosity=detailed": ("profiling_verbosity", "DETAILED", "8.2"),
    "profiles": ("builder_method", "create_optimization_profile", "7.0"),
    "precision_constraints=obey": ("builder_flag", "OBEY_PRECISION_CONSTRAINTS", "8.2"),
    "precision_constraints=prefer": ("builder_flag", "PREFER_PRECISION_CONSTRAINTS", "8.2"),
    # per-layer rules (ILayer.precision / set_output_type) are enforced by those flags, hence their floor
    "layer_precisions": ("layer_attr", "precision", "8.2"),
    # the INT8 calibrator a data set is calibrated with (calibration.py)
    "calibration_algorithm=entropy2": ("calibrator", "IInt8EntropyCalibrator2", "5.1"),
    "calibration_algorithm=entropy": ("calibrator", "IInt8EntropyCalibrator", "5.0"),
    "calibration_algorithm=minmax": ("calibrator", "IInt8MinMaxCalibrator", "6.0"),
    "calibration_algorithm=legacy": ("calibrator", "IInt8LegacyCalibrator", "5.0"),
}

# spec data type -> (TensorRT DataType member, first TensorRT version that can use it as a layer's or an
# I/O tensor's type). UINT8 appeared in 8.5, FP8 exists in 8.6 but builds need 9.0, BF16 came with 9.0,
# INT64 is listed from 9.x but supported from 10.0.
DATA_TYPES: dict[str, tuple[str, str]] = {
    "fp32": ("FLOAT", "7.0"), "fp16": ("HALF", "7.0"), "bf16": ("BF16", "9.0"), "fp8": ("FP8", "9.0"),
    "int8": ("INT8", "7.0"), "int32": ("INT32", "7.0"), "int64": ("INT64", "10.0"), "uint8": ("UINT8", "8.5"),
    "bool": ("BOOL", "7.0"),
}
# spec format -> (TensorRT TensorFormat member, first version that has it): DHWC8, CDHW32 and HWC came with
# 7.2, HWC16 with 8.0, DHWC with 8.6.
TENSOR_FORMATS: dict[str, tuple[str, str]] = {
    "linear": ("LINEAR", "7.0"), "chw2": ("CHW2", "7.0"), "hwc8": ("HWC8", "7.0"), "chw4": ("CHW4", "7.0"),
    "chw16": ("CHW16", "7.0"), "chw32": ("CHW32", "7.0"), "dhwc8": ("DHWC8", "7.2"), "cdhw32": ("CDHW32", "7.2"),
    "hwc": ("HWC", "7.2"), "hwc16": ("HWC16", "8.0"), "dhwc": ("DHWC", "8.6"),
}
OPTIONS.update({f"layer_precisions.dtype={name}": ("data_type", member, floor)
                for name, (member, floor) in DATA_TYPES.items()})
OPTIONS.update({f"io_formats.dtype={name}": ("data_type", member, floor)
                for name, (member, floor) in DATA_TYPES.items()})
OPTIONS.update({f"io_formats.format={name}": ("tensor_format", member, floor)
                for name, (member, floor) in TENSOR_FORMATS.items()})

# Where each kind of setting lives in the tensorrt module.
KIND_OWNER = {
    "builder_flag": "BuilderFlag",
    "clear_builder_flag": "BuilderFlag",
    "network_flag": "NetworkDefinitionCreationFlag",
    "memory_pool": "MemoryPoolType",
    "config_attr": "IBuilderConfig",
    "tactic_source": "TacticSource",
    "hardware_level": "HardwareCompatibilityLevel",
    "device_type": "DeviceType",
    "profiling_verbosity": "ProfilingVerbosity",
    "builder_method": "Builder",
    "layer_attr": "ILayer",
    "data_type": "DataType",
    "tensor_format": "TensorFormat",
    "calibrator": "tensorrt",  # the module itself
}

# The spec fields this runner reads (every one the table covers); the canonical spec also carries
# ONNX Runtime's options, which a TensorRT build ignores.
SPEC_FIELDS = tuple(dict.fromkeys(option.split("=")[0].split(".")[0] for option in OPTIONS))
# the other runner's options; the worker's benchmark settings; the worker's model rewriting (done before the
# runner sees the model)
IGNORED_FIELDS = ("onnxruntime", "bench", "sanitize")
BOOLEAN_OPTIONS = ("strongly_typed", "version_compatible", "exclude_lean_runtime", "strip_weights",
                   "weight_streaming", "gpu_fallback")
# What TensorRT does with a builder config left alone (IBuilderConfig's documented defaults): a spec
# asking for exactly that needs no setting, so it also builds where the setting is missing (e.g.
# optimization_level=3 on TensorRT 8.5, which has no builder_optimization_level).
TENSORRT_UNTOUCHED = {"optimization_level": 3, "profiling_verbosity": "layer_names_only"}


def read_spec(path: str) -> dict:
    """The canonical spec: every field this runner reads present, no field it does not know."""
    spec = load_spec(path, SPEC_FIELDS)
    known = set(SPEC_FIELDS) | set(IGNORED_FIELDS)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise RunnerError("invalid_input", f"unknown spec option(s) {', '.join(unknown)}; "
                                           f"known: {', '.join(sorted(known))}")
    return spec


def requested_options(spec: dict) -> list[str]:
    """The OPTIONS keys a spec asks for: every option that needs a TensorRT setting."""
    wanted = [f"precision={p}" for p in spec["precision"]]
    if not spec["tf32"]:
        wanted.append("tf32")
    wanted += [name for name in BOOLEAN_OPTIONS if spec[name]]
    if spec["workspace_mib"] is not None:
        wanted.append("workspace_mib")
    if spec["optimization_level"] != TENSORRT_UNTOUCHED["optimization_level"]:
        wanted.append("optimization_level")
    wanted += [f"tactic_sources={s}" for s in spec["tactic_sources"] or ()]
    for name in ("hardware_compatibility", "refit"):
        if spec[name] != "none":
            wanted.append(f"{name}={spec[name]}")
    if spec["dla_core"] is not None:
        wanted.append("dla_core")
    if spec["profiling_verbosity"] != TENSORRT_UNTOUCHED["profiling_verbosity"]:
        wanted.append(f"profiling_verbosity={spec['profiling_verbosity']}")
    if spec["profiles"]:
        wanted.append("profiles")
    if spec["calibration_algorithm"] is not None:
        wanted.append(f"calibration_algorithm={spec['calibration_algorithm']}")
    if spec["precision_constraints"] != "none":
        wanted.append(f"precision_constraints={spec['precision_constraints']}")
    if spec["layer_precisions"]:
        wanted.append("layer_precisions")
        wanted += [f"layer_precisions.dtype={t}" for t in layer_types(spec)]
    for io in spec["io_formats"].values():
        wanted += [f"io_formats.dtype={io['dtype']}", *(f"io_formats.format={f}" for f in io["formats"])]
    return list(dict.fromkeys(wanted))


def layer_types(spec: dict) -> list[str]:
    """Every data type the layer rules name (as precision or output type), in order of first mention."""
    named = []
    for rule in spec["layer_precisions"]:
        named += ([rule["precision"]] if rule["precision"] else []) + list(rule["output_types"])
    return list(dict.fromkeys(named))


def lookup_option(trt, option: str):
    """The TensorRT object an option maps to, or None where this TensorRT lacks it."""
    kind, attr, _ = OPTIONS[option]
    owner = trt if KIND_OWNER[kind] == "tensorrt" else getattr(trt, KIND_OWNER[kind], None)
    member = getattr(owner, attr, None) if owner is not None else None
    if member is None and kind == "memory_pool" and hasattr(getattr(trt, "IBuilderConfig", None), "max_workspace_size"):
        return "max_workspace_size"  # TensorRT < 8.4
    return member


def option_problem(trt, option: str) -> str | None:
    """Why this TensorRT cannot apply `option`, or None when it can. THE feature-detection function."""
    if option not in OPTIONS:
        return None
    floor = OPTIONS[option][2]
    if version_tuple(trt.__version__) < version_tuple(floor):
        return f"{option} needs TensorRT >= {floor}; this toolchain has {trt.__version__}"
    if lookup_option(trt, option) is None:
        kind, attr, _ = OPTIONS[option]
        return (f"{option} is not available in this toolchain's TensorRT {trt.__version__} "
                f"({KIND_OWNER[kind]}.{attr} is missing)")
    return None


def supported_features(trt) -> list[str]:
    return [option for option in OPTIONS if option_problem(trt, option) is None]


def check_options(trt, spec: dict) -> dict:
    """Every requested option -> its TensorRT object; unsupported_option naming each one this TensorRT lacks."""
    wanted = requested_options(spec)
    unknown = [option for option in wanted if option not in OPTIONS]
    if unknown:
        raise RunnerError("invalid_input", f"unknown spec value(s): {', '.join(unknown)}")
    problems = [p for p in (option_problem(trt, option) for option in wanted) if p]
    if problems:
        raise RunnerError("unsupported_option", " | ".join(problems))
    return {option: lookup_option(trt, option) for option in wanted}


# ---------------------------------------------------------------------------------------------------------
# Applying options to the builder config (network flags and profiles: network.py)
# ---------------------------------------------------------------------------------------------------------
def configure(trt, builder, config, spec: dict) -> None:
    """Apply every option except network flags and profiles to `config`."""
    members = check_options(trt, spec)
    for option, member in members.items():
        kind = OPTIONS[option][0]
        if kind == "builder_flag":
            config.set_flag(member)
        elif kind == "clear_builder_flag":
            config.clear_flag(member)
        elif kind == "hardware_level":
            config.hardware_compatibility_level = member
        elif kind == "profiling_verbosity":
            config.profiling_verbosity = member
    if "workspace_mib" in members:
        set_workspace(config, members["workspace_mib"], spec["workspace_mib"])
    if "optimization_level" in members:
        config.builder_optimization_level = spec["optimization_level"]
    if spec["tactic_sources"] is not None:
        config.set_tactic_sources(tactic_mask(trt, spec["tactic_sources"]))
    if "dla_core" in members:
        set_dla(builder, config, members["dla_core"], spec["dla_core"])


def set_workspace(config, pool, mib: int) -> None:
    if pool == "max_workspace_size":
        config.max_workspace_size = mib << 20
    else:
        config.set_memory_pool_limit(pool, mib << 20)


def tactic_mask(trt, names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << int(lookup_option(trt, f"tactic_sources={name}"))
    return mask


def set_dla(builder, config, dla_type, core: int) -> None:
    available = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if core >= available:
        raise RunnerError("unsupported_option",
                          f"dla_core={core} needs a device with DLA core {core}; this GPU has {available} DLA cores")
    config.default_device_type = dla_type
    config.DLA_core = core
