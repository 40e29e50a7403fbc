"""The build command: ONNX Runtime's offline graph optimization, saved in ORT format or as ONNX, and the
engine's metadata."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..common import RunnerError, cpu_device, log
from .options import KIND, LEVELS, check_spec, read_spec
from .proto import count_onnx_nodes


def build(args: Any) -> dict[str, Any]:
    import onnxruntime as ort

    model, out = Path(args.model), Path(args.out)
    if not model.is_file():
        raise RunnerError("invalid_input", f"model {model} does not exist")
    if args.plugin:
        raise RunnerError("unsupported_option", "plugins are TensorRT plugin libraries; onnxruntime builds take none")
    if args.calibration_cache:
        raise RunnerError("unsupported_option", "an INT8 calibration cache is a TensorRT input; "
                          "onnxruntime builds keep the model's precision")
    if args.timing_cache_in or args.timing_cache_out:
        log("timing caches are a TensorRT feature; ignored for onnxruntime")
    spec = read_spec(args.spec)
    level, fmt = check_spec(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp.{fmt}"
    log(f"onnxruntime {ort.__version__}: optimizing {model.name} at level {level}, saving {fmt} format")
    started = time.perf_counter()
    try:
        session, warnings = _optimize(model, tmp, level, fmt)
        _check_profiles(spec, session)
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".data")):
            with contextlib.suppress(OSError):
                leftover.unlink()
    seconds = time.perf_counter() - started
    meta = {
        "toolchain": KIND,
        "version": ort.__version__,
        "optimization_level": level,
        "format": fmt,
        "io": io_tensors(session),
        "dim_params": dim_params(session),
        "nodes": count_onnx_nodes(out.read_bytes()) if fmt == "onnx" else None,
        "build_seconds": round(seconds, 4),
        "size": out.stat().st_size,
        "device": cpu_device(),
        # ONNX Runtime: above `extended` the saved model may hold hardware-specific optimizations (NCHWc
        # layouts for the ISA it ran on); up to `extended` it loads on any CPU of the architecture
        "hardware_specific": level in HARDWARE_SPECIFIC_LEVELS,
        "warnings": warnings,
    }
    log(f"saved {out.name}: {meta['size']} bytes in {seconds:.2f} s")
    return {"metadata": meta}


HARDWARE_SPECIFIC_LEVELS = ("layout", "all")


def _optimize(model: Path, tmp: Path, level: str, fmt: str) -> tuple[Any, list[str]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    opts.optimized_model_filepath = str(tmp)
    opts.log_severity_level = 2
    if fmt == "ort":
        opts.add_session_config_entry("session.save_model_format", "ORT")
    else:
        # An engine is one file: without this, initializers the model kept in external data stay
        # references to files beside the model (e.g. weights.bin), which do not travel with the engine.
        # A side file that receives no initializer is not created; any that is, is removed below.
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", tmp.name + ".data")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", str(2**62))
    with captured_stderr() as lines:
        try:
            session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types; message kept verbatim
            code = "build_error" if type(exc).__name__ == "NotImplemented" else "parse_error"
            raise RunnerError(code, str(exc)) from None
    if not tmp.is_file():
        raise RunnerError("build_error", "ONNX Runtime created the session but wrote no optimized model")
    return session, ort_warnings(lines)


def _check_profiles(spec: dict[str, Any], session: Any) -> None:
    """ONNX Runtime accepts any shape; a profile must still name the model's inputs with the right rank."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    for k, profile in enumerate(spec.get("profiles") or []):
        for name, rng in profile.items():
            if name not in inputs:
                raise RunnerError("invalid_input", f"profile {k} names input {name!r}, which the model lacks; "
                                  f"inputs: {', '.join(inputs)}")
            if len(rng.get("opt", ())) != len(inputs[name]):
                raise RunnerError("invalid_input", f"profile {k}: input {name!r} has rank {len(inputs[name])}, "
                                  f"the profile gives {len(rng.get('opt', ()))} dimensions")


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Send fd 2 (where ONNX Runtime's C++ logger writes) to a file; replay it to stderr afterwards."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = _ANSI.sub("", tmp.read().decode("utf-8", "replace"))
            sys.stderr.write(text)
            sys.stderr.flush()
            lines.extend(text.splitlines())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ORT_LOG = re.compile(r"\[(?P<sev>[VIWEF]):onnxruntime:[^\]]*\]\s*(?P<msg>.*)")


def ort_warnings(lines: list[str]) -> list[str]:
    """Messages of ONNX Runtime's warning (and worse) log lines."""
    found = []
    for line in lines:
        m = _ORT_LOG.search(line)
        if m and m["sev"] in "WEF":
            found.append(m["msg"].strip())
    return found


def numpy_dtype(ort_type: str) -> str:
    """'tensor(float)' -> 'float32'; non-tensor types (seq, map) are returned as ONNX Runtime names them."""
    m = re.fullmatch(r"tensor\((\w+)\)", ort_type)
    if not m:
        return ort_type
    return {"float": "float32", "double": "float64", "string": "object"}.get(m[1], m[1])


def io_tensors(session: Any) -> list[dict[str, Any]]:
    io = []
    for mode, args in (("input", session.get_inputs()), ("output", session.get_outputs())):
        for arg in args:
            shape = [d if isinstance(d, int) else -1 for d in (arg.shape or [])]
            io.append({"name": arg.name, "mode": mode, "dtype": numpy_dtype(arg.type), "shape": shape})
    return io


def dim_params(session: Any) -> dict[str, list[str | None]]:
    return {i.name: [d if isinstance(d, str) else None for d in (i.shape or [])] for i in session.get_inputs()}
