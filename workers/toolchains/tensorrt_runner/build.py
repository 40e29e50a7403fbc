"""The build command: ONNX model + canonical spec -> plan, with the timing cache attached before and
written after, and hints for the failures users can fix."""

from __future__ import annotations

import time
from pathlib import Path

from ..common import RunnerError, atomic_write, log
from .calibration import attach_calibrator, finish_calibration, release_calibration
from .constraints import apply_io_formats, apply_layer_precisions
from .describe import describe_plan
from .network import (
    GENERIC_SYMBOL_HINT,
    SHARED_SYMBOL_HINT,
    add_profiles,
    check_shared_symbols,
    network_flags,
    network_inputs,
    parse_model,
    shared_symbols,
    symbol_places,
    validate_profiles,
)
from .options import check_options, configure, read_spec
from .runtime import import_trt, load_plugins, make_logger

IO_FORMAT_HINT = ("io_formats: each vectorized format is bound to some data types (e.g. hwc8 and chw2 to fp16 or "
                  "bf16, chw4 to int8) and needs a tensor of rank >= 3 (>= 4 for dhwc8, cdhw32, dhwc); linear takes "
                  "every type. TensorRT's TensorFormat documentation lists the pairs each release accepts")
LEAN_RUNTIME_MESSAGE = ("version_compatible needs TensorRT's lean runtime (libnvinfer_lean); "
                        "this toolchain (TensorRT {version}) does not ship it")


def cmd_build(args) -> dict:
    trt = import_trt()
    spec = read_spec(args.spec)
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
    applied = apply_layer_precisions(trt, network, spec)
    apply_io_formats(trt, network, spec)
    config = builder.create_builder_config()
    configure(trt, builder, config, spec)
    profiles = add_profiles(builder, config, spec, inputs)
    cache_info = attach_timing_cache(config, logger, args.timing_cache_in)
    calibration = attach_calibrator(trt, config, spec, args, network, profiles)
    try:
        plan, seconds = run_builder(trt, builder, network, config, logger, spec, symbols, args)
    finally:
        release_calibration(calibration)  # the batches' device buffers (a warm runner lives on)
    atomic_write(args.out, plan)
    cache_info["partial_miss"] = logger.partial_miss
    cache_info["out_bytes"] = write_timing_cache(config, args.timing_cache_out)
    metadata = describe_plan(trt, logger, plan, spec, cache_info, seconds, applied)
    calibrated = finish_calibration(trt, calibration, args.calibration_cache_out)
    return {"metadata": {**metadata, "calibration": calibrated} if calibrated else metadata}


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
    if "calibrat" in lowered and "int8" in spec["precision"] and not (args.calibration_cache or
                                                                     getattr(args, "calibration_data", None)):
        return ("int8 needs calibration (a data set, --calibration-data, or a cache, --calibration-cache) or a "
                "model with Q/DQ nodes")
    if spec["io_formats"] and any(word in lowered for word in ("format", "reformat", "type")):
        return IO_FORMAT_HINT
    if spec["layer_precisions"] and spec["precision_constraints"] == "obey" and "precision" in lowered:
        return ("with precision_constraints=obey the build fails where a constrained layer has no implementation "
                "in the asked precision; 'prefer' falls back to another precision with a warning")
    return None


# ---------------------------------------------------------------------------------------------------------
# The timing cache
# ---------------------------------------------------------------------------------------------------------
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
    cache of its own making, accepts it, and uses the rest of it (docs/design.md): that is a partial miss, not
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


def write_timing_cache(config, path: str | None) -> int:
    cache = config.get_timing_cache()
    data = bytes(cache.serialize()) if cache is not None else b""
    if path:
        atomic_write(path, data)
    return len(data)
