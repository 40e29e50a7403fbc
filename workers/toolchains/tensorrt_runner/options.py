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
}

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
}

# The spec fields this runner reads (every one the table covers); the canonical spec also carries
# ONNX Runtime's options, which a TensorRT build ignores.
SPEC_FIELDS = tuple(dict.fromkeys(option.split("=")[0] for option in OPTIONS))
IGNORED_FIELDS = ("onnxruntime", "bench")  # the other runner's options; the worker's benchmark settings
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
    return wanted


def lookup_option(trt, option: str):
    """The TensorRT object an option maps to, or None where this TensorRT lacks it."""
    kind, attr, _ = OPTIONS[option]
    owner = getattr(trt, KIND_OWNER[kind], None)
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
