"""The merge command: TensorRT's own combine of timing caches."""

from __future__ import annotations

from ..common import atomic_write, log, read_bytes
from .runtime import import_trt, make_logger


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
    return {"size": len(out), "inputs": sizes, "ignored": ignored}


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
