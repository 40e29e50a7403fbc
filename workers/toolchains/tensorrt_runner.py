"""TensorRT toolchain runner: build, run, bench and merge timing caches inside a TensorRT interpreter.

Runs in the toolchain's own Python (3.10, tensorrt 8.6.0 .. 10.x, numpy) and imports only the standard
library, numpy and tensorrt -- both lazily, so `--help` works anywhere. Protocol (version 1): see
workers/toolchains/__init__.py.

    tensorrt_runner.py --probe
    tensorrt_runner.py build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
                             [--timing-cache-in F] [--timing-cache-out F] [--plugin LIB]...
                             [--calibration-cache F] [--verbose]
    tensorrt_runner.py run   --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json [--profile K]
    tensorrt_runner.py bench --engine ENGINE --inputs IN.npz --result R.json
                             [--iterations N] [--warmup W] [--profile K]
    tensorrt_runner.py merge --cache A --cache B [--cache ...] --out C --result R.json

Every spec option is applied by feature detection (getattr on TensorRT's enums and classes, never stored
integers). OPTIONS below is the one table that decides both what `--probe` advertises and what `build`
accepts. Device memory, copies, streams and events go through the CUDA driver API (libcuda.so.1, ctypes);
`--probe` finds GPUs through NVML (libnvidia-ml.so.1, ctypes), else nvidia-smi.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

# ---------------------------------------------------------------------------------------------------------
# The option table: spec option (or option=value) -> (kind of setting, TensorRT attribute, first TensorRT
# version that can use it). An option is supported when the attribute exists AND the version is at least
# the floor (FP8's enum member exists in 8.6, but FP8 builds need TensorRT 9).
# ---------------------------------------------------------------------------------------------------------
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

# The canonical spec (registry.keys.spec_canonical) with its defaults; missing keys take these.
SPEC_DEFAULTS = {
    "precision": [],
    "tf32": True,
    "strongly_typed": False,
    "profiles": [],
    "workspace_mib": None,
    "optimization_level": 3,
    "tactic_sources": None,
    "hardware_compatibility": "none",
    "version_compatible": False,
    "exclude_lean_runtime": False,
    "refit": "none",
    "strip_weights": False,
    "weight_streaming": False,
    "dla_core": None,
    "gpu_fallback": False,
    "profiling_verbosity": "layer_names_only",
    "onnxruntime": {},
}
BOOLEAN_OPTIONS = ("strongly_typed", "version_compatible", "exclude_lean_runtime", "strip_weights",
                   "weight_streaming", "gpu_fallback")

EXIT_CODES = {"unsupported_option": 2, "invalid_input": 2}
DEFAULT_ERROR_CODE = {"build": "build_error", "merge": "build_error", "run": "run_error", "bench": "run_error"}
TIMING_CACHE_UNUSED = re.compile(r"timing cache will not be used", re.IGNORECASE)
SHARED_SYMBOL_HINT = ("TensorRT treats every dynamic dimension with the same symbolic name as one symbol: "
                      "dims named '{name}' in {where} must be equal in every profile")
GENERIC_SYMBOL_HINT = ("TensorRT treats every dynamic dimension with the same symbolic name as one symbol: "
                       "dims that share a name in the ONNX model must be equal in every profile")
LEAN_RUNTIME_MESSAGE = ("version_compatible needs TensorRT's lean runtime (libnvinfer_lean); "
                        "this toolchain (TensorRT {version}) does not ship it")
NON_NUMPY_DTYPES = {"BF16": "bfloat16", "FP8": "float8_e4m3fn", "INT4": "int4", "FP4": "float4_e2m1fn",
                    "E8M0": "float8_e8m0fnu"}
PLAN_MAGIC = b"ftrt"


class RunnerError(Exception):
    """A failure reported through the protocol: code, message, optional hint."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def result(self) -> dict:
        return {"ok": False, "error": {"code": self.code, "message": self.message, "hint": self.hint}}


# ---------------------------------------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    sys.stderr.write(f"[trtfarm-runner] {message}\n")
    sys.stderr.flush()


def version_tuple(text: str) -> tuple[int, ...]:
    """'8.6.0' -> (8, 6, 0); '10.3.0.post1' -> (10, 3, 0)."""
    parts = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_bytes(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RunnerError("invalid_input", f"cannot read {what} {path}: {exc.strerror or exc}") from None


def sku_slug(driver_name: str) -> str:
    """Same rule as registry.targets.sku_slug: 'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'."""
    name = " ".join(driver_name.split()).lower()
    for prefix in ("nvidia ", "tesla "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def cc_slug(major: int, minor: int) -> str:
    return f"sm_{major}{minor}"


def nearest_rank(sorted_values: list[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "p50": round(nearest_rank(ordered, 50), 5),
        "p99": round(nearest_rank(ordered, 99), 5),
        "mean": round(sum(ordered) / len(ordered), 5),
        "min": round(ordered[0], 5),
        "iterations": len(ordered),
    }


# ---------------------------------------------------------------------------------------------------------
# Spec and feature detection (the single source of truth for --probe and build)
# ---------------------------------------------------------------------------------------------------------
def load_spec(path: str) -> dict:
    try:
        data = json.loads(read_bytes(path, "spec"))
    except ValueError as exc:
        raise RunnerError("invalid_input", f"spec {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunnerError("invalid_input", f"spec {path} must be a JSON object")
    unknown = sorted(set(data) - set(SPEC_DEFAULTS))
    if unknown:
        raise RunnerError("invalid_input", f"unknown spec option(s) {', '.join(unknown)}; "
                                           f"known: {', '.join(sorted(SPEC_DEFAULTS))}")
    return {**SPEC_DEFAULTS, **data}


def requested_options(spec: dict) -> list[str]:
    """The OPTIONS keys a spec asks for: every option set away from its default."""
    wanted = [f"precision={p}" for p in spec["precision"]]
    if not spec["tf32"]:
        wanted.append("tf32")
    wanted += [name for name in BOOLEAN_OPTIONS if spec[name]]
    if spec["workspace_mib"] is not None:
        wanted.append("workspace_mib")
    if spec["optimization_level"] != SPEC_DEFAULTS["optimization_level"]:
        wanted.append("optimization_level")
    wanted += [f"tactic_sources={s}" for s in spec["tactic_sources"] or ()]
    for name in ("hardware_compatibility", "refit"):
        if spec[name] != "none":
            wanted.append(f"{name}={spec[name]}")
    if spec["dla_core"] is not None:
        wanted.append("dla_core")
    if spec["profiling_verbosity"] != SPEC_DEFAULTS["profiling_verbosity"]:
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
# Applying options to the network flags, the builder config and the optimization profiles
# ---------------------------------------------------------------------------------------------------------
def network_flags(trt, spec: dict) -> int:
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    explicit = getattr(creation, "EXPLICIT_BATCH", None)
    if explicit is not None and version_tuple(trt.__version__) < (10,):
        flags |= 1 << int(explicit)
    if spec["strongly_typed"]:
        flags |= 1 << int(check_options(trt, spec)["strongly_typed"])
    return flags


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


def network_inputs(network) -> dict:
    """name -> {"shape": [...], "shape_tensor": bool, "tensor": ITensor} in network order."""
    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = {"shape": [int(d) for d in tensor.shape],
                               "shape_tensor": bool(getattr(tensor, "is_shape_tensor", False)),
                               "tensor": tensor}
    return inputs


def shape_text(shape) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape)


def validate_profiles(spec: dict, inputs: dict) -> None:
    dynamic = {n: i["shape"] for n, i in inputs.items() if any(d < 0 for d in i["shape"]) or i["shape_tensor"]}
    if dynamic and not spec["profiles"]:
        listed = ", ".join(describe_input(n, inputs[n]) for n in dynamic)
        first = next(iter(dynamic))
        raise RunnerError("invalid_input",
                          f"the model has dynamic inputs ({listed}) and the spec gives no optimization profile",
                          hint=profile_hint(first, inputs[first]))
    for k, profile in enumerate(spec["profiles"]):
        validate_profile(k, profile, inputs, dynamic)


def describe_input(name: str, info: dict) -> str:
    if info["shape_tensor"]:
        return f"{name}: a shape tensor of {shape_text(info['shape'])} values"
    return f"{name} {shape_text(info['shape'])}"


def profile_hint(name: str, info: dict) -> str:
    shape = info["shape"]
    if info["shape_tensor"]:
        count = shape[0] if len(shape) == 1 and shape[0] > 0 else 1
        example = ",".join("x".join([str(v)] * count) for v in (1, 4, 8))
        return (f"{name} is a shape tensor: TensorRT needs the range of its values, not of its shape; give them "
                f"with --shape {name}:MIN,OPT,MAX, each the tensor's {shape_text(shape)} values "
                f"(e.g. --shape {name}:{example})")
    fill = [shape_text(shape).replace("?", str(n)) for n in (1, 4, 8)]
    return (f"give every dynamic input a shape range with --shape NAME:MIN,OPT,MAX, each a full shape with "
            f"every ? filled in (one shape alone means min = opt = max), e.g. for {name} {shape_text(shape)}: "
            f"--shape {name}:{','.join(fill)}")


def validate_profile(k: int, profile: dict, inputs: dict, dynamic: dict) -> None:
    strangers = sorted(set(profile) - set(inputs))
    if strangers:
        real = ", ".join(f"{n} {shape_text(i['shape'])}" for n, i in inputs.items())
        raise RunnerError("invalid_input", f"profile {k} names {', '.join(strangers)}, which the network lacks; "
                                           f"its inputs are: {real}")
    missing = [n for n in dynamic if n not in profile]
    if missing:
        raise RunnerError("invalid_input", f"profile {k} gives no shapes for dynamic input(s) "
                                           + ", ".join(f"{n} {shape_text(dynamic[n])}" for n in missing))
    for name, ranges in profile.items():
        if not inputs[name]["shape_tensor"]:
            check_range_fits(k, name, ranges, inputs[name]["shape"])


def check_range_fits(k: int, name: str, ranges: dict, shape: list) -> None:
    for which in ("min", "opt", "max"):
        given = list(ranges[which])
        if len(given) != len(shape):
            raise RunnerError("invalid_input", f"profile {k}, input {name}: {which} {shape_text(given)} has rank "
                                               f"{len(given)} but the input is {shape_text(shape)} (rank {len(shape)})")
        for axis, (want, got) in enumerate(zip(shape, given)):
            if want >= 0 and want != got:
                raise RunnerError("invalid_input", f"profile {k}, input {name}: dimension {axis} is fixed at {want} "
                                                   f"in the model but {which} gives {got}")


def add_profiles(builder, config, spec: dict, inputs: dict) -> list:
    profiles = []
    for k, ranges in enumerate(spec["profiles"]):
        profile = builder.create_optimization_profile()
        for name, r in ranges.items():
            setter = profile.set_shape_input if inputs[name]["shape_tensor"] else profile.set_shape
            try:
                setter(name, tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
            except (RuntimeError, ValueError, TypeError) as exc:
                raise RunnerError("invalid_input", f"profile {k}, input {name}: TensorRT rejected "
                                                   f"min/opt/max {r['min']}/{r['opt']}/{r['max']}: {exc}") from None
        if config.add_optimization_profile(profile) < 0:
            raise RunnerError("invalid_input", f"TensorRT rejected optimization profile {k}: {ranges}")
        profiles.append(profile)
    return profiles


# ---------------------------------------------------------------------------------------------------------
# Dimensions that share a symbolic name (TensorRT makes them one symbol)
# ---------------------------------------------------------------------------------------------------------
def shared_symbols(inputs: dict, model_path: str) -> dict:
    """symbol -> [(input, axis), ...] for every dim_param used at least twice; {} when names are unknowable."""
    groups = symbols_from_network(inputs) or symbols_from_onnx(model_path)
    return {name: places for name, places in groups.items() if len(places) > 1}


def symbols_from_network(inputs: dict) -> dict:
    groups: dict = {}
    for name, info in inputs.items():
        getter = getattr(info["tensor"], "get_dimension_name", None)
        for axis, dim in enumerate(info["shape"]):
            symbol = getter(axis) if getter is not None and dim < 0 else None
            if symbol:
                groups.setdefault(symbol, []).append((name, axis))
    return groups


def symbols_from_onnx(model_path: str) -> dict:
    try:
        import onnx  # optional: only where the toolchain has it
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - absent package or unreadable model: names stay unknown
        return {}
    initializers = {t.name for t in model.graph.initializer}
    groups: dict = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                groups.setdefault(dim.dim_param, []).append((value.name, axis))
    return groups


def check_shared_symbols(spec: dict, groups: dict) -> None:
    for k, profile in enumerate(spec["profiles"]):
        for symbol, places in groups.items():
            sizes = {(inp, axis): tuple(profile[inp][w][axis] for w in ("min", "opt", "max"))
                     for inp, axis in places if inp in profile and axis < len(profile[inp]["min"])}
            if len(set(sizes.values())) > 1:
                where = symbol_places(places)
                detail = ", ".join(f"{inp}[{axis}] min/opt/max {'/'.join(map(str, s))}"
                                   for (inp, axis), s in sizes.items())
                raise RunnerError("invalid_input", f"profile {k}: dimensions named '{symbol}' differ ({detail})",
                                  hint=SHARED_SYMBOL_HINT.format(name=symbol, where=where))


def symbol_places(places) -> str:
    return ", ".join(f"{inp}[{axis}]" for inp, axis in places)


# ---------------------------------------------------------------------------------------------------------
# TensorRT objects: import, logger, plugins, parser, timing cache, calibrator
# ---------------------------------------------------------------------------------------------------------
def import_trt():
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken native library
        raise RunnerError(
            "invalid_input",
            f"tensorrt is not importable in the interpreter that ran this runner "
            f"({sys.executable}, Python {platform.python_version()}): {type(exc).__name__}: {exc}",
            hint="point TRTFARM_TOOLCHAINS at a TensorRT interpreter, e.g. tensorrt=/opt/trt86/bin/python") from None
    return trt


def make_logger(trt, verbose: bool = False):
    class RunnerLogger(trt.ILogger):
        """Writes every message to stderr with its severity; remembers errors and timing-cache misses."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []
            self.partial_miss = False

        def log(self, severity, msg):
            name = str(getattr(severity, "name", severity)).rsplit(".", 1)[-1]
            if name == "VERBOSE" and not verbose:
                return
            sys.stderr.write(f"[TRT] [{name}] {msg}\n")
            if name in ("ERROR", "INTERNAL_ERROR"):
                self.errors.append(msg)
            elif name == "WARNING":
                self.warnings.append(msg)
            if name in ("ERROR", "WARNING"):  # 8.6 logs "The timing cache will not be used!" as an ERROR
                self.partial_miss = self.partial_miss or bool(TIMING_CACHE_UNUSED.search(msg))

    return RunnerLogger()


def load_plugins(trt, logger, libraries: list[str]) -> list:
    handles = []
    for path in libraries:
        try:
            handles.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
        except OSError as exc:
            raise RunnerError("invalid_input", f"cannot load plugin library {path}: {exc}") from None
        log(f"loaded plugin library {path}")
    try:
        trt.init_libnvinfer_plugins(logger, "")
    except Exception as exc:  # noqa: BLE001 - TensorRT's own plugins are optional for most models
        if libraries:
            raise RunnerError("build_error", f"init_libnvinfer_plugins failed: {exc}") from None
        log(f"TensorRT's plugin library did not initialise ({exc}); models that need its plugins will fail")
    return handles


def parse_model(trt, network, logger, model_path: str):
    """Parse by path (external data beside the model works). The parser owns weights: keep it alive."""
    if not Path(model_path).is_file():
        raise RunnerError("invalid_input", f"model {model_path} does not exist")
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(model_path)):
        return parser
    errors = [parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)]
    detail = "; ".join(errors) or "; ".join(logger.errors) or "the parser reported no error"
    raise RunnerError("parse_error", f"TensorRT's ONNX parser rejected {Path(model_path).name}: {detail}")


def parser_error_text(error) -> str:
    where = [f"node {error.node()}"]
    for extra in ("node_name", "node_operator"):
        getter = getattr(error, extra, None)
        value = getter() if callable(getter) else None
        if value:
            where.append(f"{extra.replace('_', ' ')} {value}")
    return f"{error.desc()} ({', '.join(where)}, code {error.code()})"


def attach_timing_cache(config, logger, path: str | None) -> dict:
    """Load --timing-cache-in; a cache TensorRT rejects is a miss (logged), never a failure."""
    info = {"in_bytes": None, "out_bytes": 0, "rejected": False, "partial_miss": False}
    cache = None
    if path:
        cache, reason = load_timing_cache(config, logger, path, info)
        if cache is None:
            log(f"timing cache rejected: {reason}; building with an empty cache")
            info["rejected"] = True
    if cache is None:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return info


def load_timing_cache(config, logger, path: str, info: dict):
    """The cache is used whenever set_timing_cache accepts it. TensorRT 8.6 on an H100 logs
    "Myelin error from unknown graph" and "The timing cache will not be used!" as ERRORs while loading a
    cache of its own making, accepts it, and uses the rest of it (DESIGN.md): that is a partial miss, not
    a rejection."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    info["in_bytes"] = len(data)
    errors_before = len(logger.errors)
    try:
        cache = config.create_timing_cache(data)
        accepted = cache is not None and bool(config.set_timing_cache(cache, False))
    except Exception as exc:  # noqa: BLE001 - TensorRT raises for malformed caches
        cache, accepted = None, False
        logger.errors.append(f"{type(exc).__name__}: {exc}")
    new_errors = logger.errors[errors_before:]
    del logger.errors[errors_before:]  # a rejected cache must not colour a later build error
    if accepted:
        if new_errors:
            logger.partial_miss = True
            log(f"timing cache {path}: loaded; TensorRT reported a partial miss: {'; '.join(new_errors)}")
        return cache, None
    return None, "; ".join(new_errors) or "TensorRT did not accept it (version, device or format mismatch)"


def make_calibrator(trt, cache: bytes):
    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        """Serves a stored INT8 calibration cache; never feeds batches."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names, *args):
            return None

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, data, *args):
            return None

    return CacheOnlyCalibrator()


def attach_calibrator(trt, config, spec: dict, path: str | None, profiles: list):
    if not path:
        return None
    if "int8" not in spec["precision"]:
        log(f"--calibration-cache {path} ignored: the spec does not ask for int8")
        return None
    calibrator = make_calibrator(trt, read_bytes(path, "calibration cache"))
    config.int8_calibrator = calibrator
    if profiles and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profiles[0])
    return calibrator


# ---------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------
def cmd_build(args) -> dict:
    trt = import_trt()
    spec = load_spec(args.spec)
    check_options(trt, spec)  # fail fast, before touching the GPU
    logger = make_logger(trt, args.verbose)
    keep_alive = [load_plugins(trt, logger, args.plugin)]
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, spec))
    keep_alive.append(parse_model(trt, network, logger, args.model))
    inputs = network_inputs(network)
    validate_profiles(spec, inputs)
    symbols = shared_symbols(inputs, args.model) if spec["profiles"] else {}
    check_shared_symbols(spec, symbols)
    config = builder.create_builder_config()
    configure(trt, builder, config, spec)
    profiles = add_profiles(builder, config, spec, inputs)
    cache_info = attach_timing_cache(config, logger, args.timing_cache_in)
    keep_alive.append(attach_calibrator(trt, config, spec, args.calibration_cache, profiles))
    plan, seconds = run_builder(trt, builder, network, config, logger, spec, symbols, args)
    atomic_write(args.out, plan)
    cache_info["partial_miss"] = logger.partial_miss
    cache_info["out_bytes"] = write_timing_cache(config, args.timing_cache_out)
    metadata = describe_plan(trt, logger, plan, spec, cache_info, seconds)
    return {"ok": True, "metadata": metadata}


def run_builder(trt, builder, network, config, logger, spec, symbols, args) -> tuple[bytes, float]:
    started = time.perf_counter()
    try:
        plan = builder.build_serialized_network(network, config)
    except Exception as exc:  # noqa: BLE001 - some releases raise instead of returning None
        logger.errors.append(f"{type(exc).__name__}: {exc}")
        plan = None
    seconds = time.perf_counter() - started
    if plan is None:
        raise build_failure(trt, logger, spec, symbols, args)
    data = bytes(plan)
    log(f"built a {len(data)}-byte plan in {seconds:.2f} s")
    return data, seconds


def build_failure(trt, logger, spec, symbols, args) -> RunnerError:
    text = "; ".join(logger.errors) or "build_serialized_network returned no plan and logged no error"
    everything = text + " " + " ".join(logger.warnings)
    if spec["version_compatible"] and "libnvinfer_lean" in everything:
        return RunnerError("unsupported_option", LEAN_RUNTIME_MESSAGE.format(version=trt.__version__))
    return RunnerError("build_error", text, build_hint(text, spec, symbols, args))


def build_hint(text: str, spec: dict, symbols: dict, args) -> str | None:
    lowered = text.lower()
    if any(word in lowered for word in ("dynamic", "profile", "dimension")) and spec["profiles"]:
        if symbols:
            name, places = next(iter(symbols.items()))
            return SHARED_SYMBOL_HINT.format(name=name, where=symbol_places(places))
        return GENERIC_SYMBOL_HINT
    if "calibrat" in lowered and "int8" in spec["precision"] and not args.calibration_cache:
        return "int8 needs a calibration cache (--calibration-cache) or a model with Q/DQ nodes"
    return None


def write_timing_cache(config, path: str | None) -> int:
    cache = config.get_timing_cache()
    data = bytes(cache.serialize()) if cache is not None else b""
    if path:
        atomic_write(path, data)
    return len(data)


def plan_header(plan: bytes) -> tuple[str | None, int | None]:
    if len(plan) < 28 or plan[:4] != PLAN_MAGIC:
        return None, None
    return f"{plan[24]}.{plan[25]}.{plan[26]}", plan[27]


def deserialize(trt, logger, plan: bytes):
    runtime = trt.Runtime(logger)
    if hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True  # version-compatible plans carry a lean runtime
    engine = runtime.deserialize_cuda_engine(plan)
    return runtime, engine


def describe_plan(trt, logger, plan: bytes, spec: dict, cache_info: dict, seconds: float) -> dict:
    runtime, engine = deserialize(trt, logger, plan)
    if engine is None:
        raise RunnerError("build_error", "TensorRT built a plan that it cannot deserialize: "
                                         + ("; ".join(logger.errors) or "no error logged"))
    plan_version, plan_build = plan_header(plan)
    return {
        "toolchain": "tensorrt",
        "version": trt.__version__,
        "plan_version": plan_version,
        "plan_build": plan_build,
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
        "device": cuda_device_info(),
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


# ---------------------------------------------------------------------------------------------------------
# The CUDA driver API through ctypes
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# run and bench: one engine, one execution context, buffers on the device
# ---------------------------------------------------------------------------------------------------------
def float32_to_bf16_bits(np, array):
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (bits >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def bf16_bits_to_float32(np, bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


class EngineSession:
    """Deserialize a plan, bind inputs (converted to the engine's dtypes), allocate outputs, execute."""

    def __init__(self, trt, np, cuda: CudaDriver, logger, engine_path: str, profile: int):
        self.trt, self.np, self.cuda, self.logger = trt, np, cuda, logger
        plan = read_bytes(engine_path, "engine")
        self.runtime, self.engine = deserialize(trt, logger, plan)
        if self.engine is None:
            built_by = plan_header(plan)[0] or "unknown"
            raise RunnerError("run_error", f"TensorRT {trt.__version__} cannot deserialize {engine_path} "
                                           f"(plan built by TensorRT {built_by}): " + "; ".join(logger.errors))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RunnerError("run_error", "create_execution_context failed: " + "; ".join(logger.errors))
        self.stream = cuda.stream()
        self.buffers: dict = {}  # name -> (device pointer, host array)
        self.select_profile(profile)

    @property
    def stream_handle(self) -> int:
        return self.stream.value or 0

    def names(self, mode) -> list:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [n for n in names if self.engine.get_tensor_mode(n) == mode]

    def select_profile(self, profile: int) -> None:
        count = self.engine.num_optimization_profiles
        if not 0 <= profile < count:
            raise RunnerError("invalid_input", f"--profile {profile}: the engine has {count} profile(s)")
        if profile != 0:
            self.context.set_optimization_profile_async(profile, self.stream_handle)
            self.cuda.synchronize(self.stream)
        self.profile = profile

    def bind(self, arrays: dict) -> None:
        inputs = self.names(self.trt.TensorIOMode.INPUT)
        missing = [n for n in inputs if n not in arrays]
        if missing:
            expected = ", ".join(f"{n} {shape_text(self.engine.get_tensor_shape(n))}" for n in inputs)
            raise RunnerError("invalid_input", f"inputs lack {', '.join(missing)}; the engine expects: {expected}")
        for extra in sorted(set(arrays) - set(inputs)):
            log(f"input {extra} is not an engine input; ignored")
        for name in inputs:
            self.bind_input(name, arrays[name])
        for name in self.names(self.trt.TensorIOMode.OUTPUT):
            self.bind_output(name)

    def bind_input(self, name: str, array) -> None:
        host = self.to_engine_dtype(name, array)
        if not self.context.set_input_shape(name, tuple(int(d) for d in array.shape)):
            ranges = profile_shapes(self.engine, name, self.profile)
            raise RunnerError("invalid_input", f"input {name} shape {shape_text(array.shape)} is outside profile "
                                               f"{self.profile} (min {ranges['min']}, max {ranges['max']})")
        if self.on_host(name):
            self.buffers[name] = (None, host)
            self.context.set_tensor_address(name, host.ctypes.data)
            return
        pointer = self.cuda.alloc(host.nbytes)
        self.buffers[name] = (pointer, host)
        self.cuda.to_device(pointer, host)
        self.context.set_tensor_address(name, pointer)

    def bind_output(self, name: str) -> None:
        shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise RunnerError("run_error", f"output {name} has a data-dependent shape {shape_text(shape)}; "
                                           "this runner does not support output allocators")
        host = self.np.empty(shape, dtype=self.storage_dtype(name))
        pointer = self.cuda.alloc(host.nbytes)
        self.buffers[name] = (pointer, host)
        self.context.set_tensor_address(name, pointer)

    def on_host(self, name: str) -> bool:
        location = getattr(self.engine, "get_tensor_location", None)
        host = getattr(getattr(self.trt, "TensorLocation", None), "HOST", None)
        return location is not None and host is not None and location(name) == host

    def storage_dtype(self, name: str):
        kind = dtype_name(self.trt, self.engine.get_tensor_dtype(name))
        if kind == "bfloat16":
            return self.np.uint16
        if kind in NON_NUMPY_DTYPES.values():
            raise RunnerError("run_error", f"tensor {name} has dtype {kind}, which numpy cannot hold")
        return self.np.dtype(kind)

    def to_engine_dtype(self, name: str, array):
        if dtype_name(self.trt, self.engine.get_tensor_dtype(name)) == "bfloat16":
            return float32_to_bf16_bits(self.np, array)
        return self.np.ascontiguousarray(array, dtype=self.storage_dtype(name))

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream_handle):
            raise RunnerError("run_error", "execute_async_v3 failed: " + "; ".join(self.logger.errors))

    def fetch(self) -> dict:
        self.cuda.synchronize(self.stream)
        outputs = {}
        for name in self.names(self.trt.TensorIOMode.OUTPUT):
            pointer, host = self.buffers[name]
            self.cuda.to_host(host, pointer)
            is_bf16 = dtype_name(self.trt, self.engine.get_tensor_dtype(name)) == "bfloat16"
            outputs[name] = bf16_bits_to_float32(self.np, host) if is_bf16 else host
        return outputs

    def close(self) -> None:
        for pointer, _ in self.buffers.values():
            if pointer is not None:
                self.cuda.free(pointer)
        self.buffers.clear()


def open_session(args):
    trt = import_trt()
    import numpy as np
    logger = make_logger(trt, getattr(args, "verbose", False))
    arrays = load_inputs(np, args.inputs)
    cuda = CudaDriver()
    cuda.make_current(0)
    session = EngineSession(trt, np, cuda, logger, args.engine, args.profile)
    session.bind(arrays)
    return session


def load_inputs(np, path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise RunnerError("invalid_input", f"cannot read inputs {path}: {exc}") from None


def cmd_run(args) -> dict:
    session = open_session(args)
    try:
        session.execute()
        outputs = session.fetch()
    finally:
        session.close()
    write_npz(session.np, args.outputs, outputs)
    return {"ok": True, "outputs": {name: list(array.shape) for name, array in outputs.items()}}


def write_npz(np, path: str, arrays: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def cmd_bench(args) -> dict:
    if args.iterations < 1 or args.warmup < 0:
        raise RunnerError("invalid_input", "--iterations must be >= 1 and --warmup >= 0")
    session = open_session(args)
    try:
        gpu_ms, wall_ms = time_iterations(session, args.warmup, args.iterations)
    finally:
        session.close()
    return {"ok": True, "latency_ms": latency_summary(gpu_ms), "wall_ms": latency_summary(wall_ms)}


def time_iterations(session: EngineSession, warmup: int, iterations: int) -> tuple[list, list]:
    cuda, stream = session.cuda, session.stream
    for _ in range(warmup):
        session.execute()
    cuda.synchronize(stream)
    start, end = cuda.event(), cuda.event()
    gpu_ms, wall_ms = [], []
    for _ in range(iterations):
        began = time.perf_counter()
        cuda.record(start, stream)
        session.execute()
        cuda.record(end, stream)
        gpu_ms.append(cuda.elapsed_ms(start, end))
        wall_ms.append((time.perf_counter() - began) * 1000.0)
    return gpu_ms, wall_ms


# ---------------------------------------------------------------------------------------------------------
# merge: TensorRT's own combine of timing caches
# ---------------------------------------------------------------------------------------------------------
def cmd_merge(args) -> dict:
    trt = import_trt()
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    merged = config.create_timing_cache(b"")
    sizes, ignored = [], []
    for path in args.cache:
        data = read_bytes(path, "timing cache")
        sizes.append(len(data))
        reason = combine_cache(config, merged, data, logger)
        if reason:
            log(f"timing cache {path} ignored: {reason}")
            ignored.append(path)
    out = bytes(merged.serialize())
    atomic_write(args.out, out)
    return {"ok": True, "size": len(out), "inputs": sizes, "ignored": ignored}


def combine_cache(config, merged, data: bytes, logger) -> str | None:
    """None when combined; else why TensorRT rejected it."""
    errors_before = len(logger.errors)
    try:
        cache = config.create_timing_cache(data)
        if cache is None or len(logger.errors) > errors_before:
            return "; ".join(logger.errors[errors_before:]) or "TensorRT could not read it"
        if not merged.combine(cache, False):
            return "combine returned false (different TensorRT version or device)"
    except Exception as exc:  # noqa: BLE001 - TensorRT raises for malformed caches
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------------------
# --probe: TensorRT version, features, GPUs (NVML, else nvidia-smi, else none)
# ---------------------------------------------------------------------------------------------------------
class NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def cmd_probe() -> dict:
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


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2 without a result file
        raise RunnerError("invalid_input", f"{self.prog}: {message}")


def build_parser() -> Parser:
    parser = Parser(prog="tensorrt_runner.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="store_true", help="print kind, version, features and GPUs as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = commands.add_parser("build", help="build a plan from an ONNX model and a spec")
    build.add_argument("--model", required=True, help="the .onnx file (external data beside it)")
    build.add_argument("--spec", required=True, help="canonical spec JSON")
    build.add_argument("--out", required=True, help="where to write the plan")
    build.add_argument("--timing-cache-in", help="timing cache to start from (a rejected one is a miss)")
    build.add_argument("--timing-cache-out", help="where to write the timing cache after the build")
    build.add_argument("--plugin", action="append", default=[], help="plugin library to load (repeatable)")
    build.add_argument("--calibration-cache", help="INT8 calibration cache (with precision int8)")
    build.add_argument("--verbose", action="store_true", help="also log TensorRT's VERBOSE messages")
    for name in ("run", "bench"):
        sub = commands.add_parser(name, help="run the engine once" if name == "run" else "time the engine")
        sub.add_argument("--engine", required=True)
        sub.add_argument("--inputs", required=True, help=".npz with one array per input name")
        if name == "run":
            sub.add_argument("--outputs", required=True, help=".npz to write, one array per output name")
        else:
            sub.add_argument("--iterations", type=int, default=100)
            sub.add_argument("--warmup", type=int, default=10)
        sub.add_argument("--profile", type=int, default=0, help="optimization profile index")
        sub.add_argument("--verbose", action="store_true")
    merge = commands.add_parser("merge", help="combine timing caches")
    merge.add_argument("--cache", action="append", required=True, help="input cache (repeatable)")
    merge.add_argument("--out", required=True)
    for sub in (build, commands.choices["run"], commands.choices["bench"], merge):
        sub.add_argument("--result", required=True, help="where to write the JSON result")
    return parser


COMMANDS = {"build": cmd_build, "run": cmd_run, "bench": cmd_bench, "merge": cmd_merge}


def result_path_from(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--result" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--result="):
            return arg.split("=", 1)[1]
    return None


def exit_code(result: dict) -> int:
    if "error" not in result:  # the probe object carries no "ok"
        return 0
    return EXIT_CODES.get(result["error"]["code"], 1)


def dispatch(argv: list[str]) -> tuple[str | None, dict]:
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = "probe" if args.probe else args.command
        if command is None:
            raise RunnerError("invalid_input", "give --probe or a command: build, run, bench, merge (see --help)")
        return command, (cmd_probe() if command == "probe" else COMMANDS[command](args))
    except RunnerError as exc:
        return command, exc.result()
    except Exception as exc:  # noqa: BLE001 - the protocol wants a result, not a traceback
        traceback.print_exc(file=sys.stderr)
        code = DEFAULT_ERROR_CODE.get(command, "build_error")
        return command, RunnerError(code, f"{type(exc).__name__}: {exc}").result()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, result = dispatch(argv)
    destination = None if command == "probe" else result_path_from(argv)
    text = json.dumps(result, indent=None, sort_keys=True)
    if destination:
        atomic_write(destination, text.encode())
    else:
        sys.stdout.write(text + "\n")
    if "error" in result:
        log(f"{result['error']['code']}: {result['error']['message']}")
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
