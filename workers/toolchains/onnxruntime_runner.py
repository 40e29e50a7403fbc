"""ONNX Runtime toolchain runner (protocol version 1, see workers/toolchains/__init__.py).

Runs inside the toolchain's own interpreter: imports only the standard library, numpy and onnxruntime
(lazily, inside functions), never `registry` or `workers`.

A "build" is ONNX Runtime's offline graph optimization: the model is loaded into a CPU session at the
spec's graph optimization level and the optimized graph is saved, in ORT format (default) or as ONNX.
Above `extended` the result may hold hardware-specific optimizations (ONNX Runtime says so in a
warning), which is why the CPU device carries the ISA level.

    python onnxruntime_runner.py --probe
    python onnxruntime_runner.py build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
    python onnxruntime_runner.py run --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json
    python onnxruntime_runner.py bench --engine ENGINE --inputs IN.npz --result R.json [--iterations N] [--warmup W]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

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
DEFAULT_LEVEL = "extended"
DEFAULT_FORMAT = "ort"
ORT_MAGIC = b"ORTM"  # flatbuffers file identifier of an ORT-format model, bytes 4..8

# TensorRT-only spec options and their defaults (mirror of registry.spec.TENSORRT_ONLY, which this
# script cannot import): a value away from its default cannot be honoured by an onnxruntime build.
TENSORRT_DEFAULTS: dict[str, Any] = {
    "precision": [],
    "strongly_typed": False,
    "workspace_mib": None,
    "tactic_sources": None,
    "hardware_compatibility": "none",
    "version_compatible": False,
    "exclude_lean_runtime": False,
    "refit": "none",
    "strip_weights": False,
    "weight_streaming": False,
    "dla_core": None,
    "gpu_fallback": False,
}

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
INPUT_CODES = ("unsupported_option", "invalid_input")


class RunnerError(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


def log(message: str) -> None:
    print(f"[onnxruntime-runner] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- probe


def cpu_device() -> dict[str, Any]:
    """The CPU as a device; arch/isa follow registry.targets.cpu_device exactly."""
    text = _cpuinfo()
    arch = _arch(platform.machine())
    isa = _isa(arch, _cpu_flags(text))
    return {"name": _cpu_name(text), "device": f"{arch}-{isa}", "arch": arch, "isa": isa, "cores": os.cpu_count()}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _arch(machine: str) -> str:
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _isa(arch: str, flags: set[str]) -> str:
    if arch == "x86_64":
        if {"avx512f", "avx512bw", "avx512vl"} <= flags:
            return "avx512"
        if "avx2" in flags:
            return "avx2"
        return "avx" if "avx" in flags else "sse"
    if arch == "aarch64":
        return "sve" if "sve" in flags else "neon"
    return "generic"


def _cpu_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _cpu_name(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "cpu"


def features() -> list[str]:
    import onnxruntime as ort

    levels = [f"onnxruntime.graph_optimization_level={name}" for name, member in LEVELS.items()
              if hasattr(ort.GraphOptimizationLevel, member)]
    return [*levels, *(f"onnxruntime.optimized_model_format={f}" for f in FORMATS), "profiles"]


def probe() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "kind": KIND,
        "version": ort.__version__,
        "python": platform.python_version(),
        "features": features(),
        "devices": [cpu_device()],
    }


# ---------------------------------------------------------------------------------------------- build


def check_spec(spec: dict[str, Any]) -> tuple[str, str]:
    """(level, format) from the canonical spec; TensorRT-only options set away from default fail."""
    import onnxruntime as ort

    for name, default in TENSORRT_DEFAULTS.items():
        value = spec.get(name, default)
        if _normal(value) != _normal(default):
            message = f"{name}={_show(value)} is a TensorRT option; {_tensorrt_only_why(name)}"
            raise RunnerError("unsupported_option", message,
                              hint=f"leave {name} at its default ({_show(default)}) for an onnxruntime target")
    options = spec.get("onnxruntime") or {}
    unknown = sorted(set(options) - {"graph_optimization_level", "optimized_model_format"})
    if unknown:
        raise RunnerError("invalid_input", f"unknown onnxruntime option(s): {', '.join(unknown)}")
    level = options.get("graph_optimization_level", DEFAULT_LEVEL)
    fmt = options.get("optimized_model_format", DEFAULT_FORMAT)
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


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


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


def build(args: argparse.Namespace) -> dict[str, Any]:
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
    spec = _read_json(Path(args.spec), "spec")
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
        "warnings": warnings,
    }
    log(f"saved {out.name}: {meta['size']} bytes in {seconds:.2f} s")
    return {"metadata": meta}


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


def count_onnx_nodes(data: bytes) -> int:
    """Nodes of an ONNX ModelProto's main graph, read off the protobuf wire format (no onnx package here)."""
    count = 0
    for field, value in _proto_fields(data):
        if field == 7 and isinstance(value, memoryview):  # ModelProto.graph
            count = sum(1 for f, v in _proto_fields(value) if f == 1 and isinstance(v, memoryview))  # GraphProto.node
    return count


def _proto_fields(data: bytes | memoryview) -> Iterator[tuple[int, Any]]:
    view, pos = memoryview(data), 0
    while pos < len(view):
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(view, pos)
            value, pos = view[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


# ------------------------------------------------------------------------------------------ run / bench


def load_engine(path: Path) -> Any:
    """A CPU session on a built engine (.ort or optimized .onnx; the format is sniffed, not taken from the name)."""
    import onnxruntime as ort

    if not path.is_file():
        raise RunnerError("invalid_input", f"engine {path} does not exist")
    with path.open("rb") as f:
        head = f.read(8)
    opts = ort.SessionOptions()
    opts.log_severity_level = 2
    # The engine is already optimized at its build's level: run exactly that graph.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.add_session_config_entry("session.load_model_format", "ORT" if head[4:8] == ORT_MAGIC else "ONNX")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise RunnerError("invalid_input", f"ONNX Runtime cannot load engine {path.name}: {exc}") from None


def load_feeds(session: Any, path: Path) -> dict[str, Any]:
    import numpy as np

    if not path.is_file():
        raise RunnerError("invalid_input", f"inputs file {path} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        feeds = {name: npz[name] for name in npz.files}
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in feeds]
    extra = sorted(set(feeds) - set(names))
    if missing or extra:
        raise RunnerError("invalid_input", f"inputs file {path.name}: missing {missing or 'none'}, "
                          f"unknown {extra or 'none'}; the engine's inputs are {names}")
    return feeds


def _run_once(session: Any, feeds: dict[str, Any]) -> list[Any]:
    try:
        return session.run(None, feeds)
    except Exception as exc:  # noqa: BLE001
        code = "invalid_input" if type(exc).__name__ == "InvalidArgument" else "run_error"
        raise RunnerError(code, str(exc)) from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    session = load_engine(Path(args.engine))
    feeds = load_feeds(session, Path(args.inputs))
    values = _run_once(session, feeds)
    outputs = {o.name: np.asarray(v) for o, v in zip(session.get_outputs(), values)}
    # string tensors come back as object arrays; store them as unicode so the file loads without pickle
    outputs = {n: v.astype(str) if v.dtype == object else v for n, v in outputs.items()}
    out = Path(args.outputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        np.savez(f, **outputs)
    return {"outputs": {name: {"dtype": str(v.dtype), "shape": list(v.shape)} for name, v in outputs.items()}}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.iterations < 1 or args.warmup < 0:
        raise RunnerError("invalid_input",
                          f"need --iterations >= 1 and --warmup >= 0; got {args.iterations}, {args.warmup}")
    session = load_engine(Path(args.engine))
    feeds = load_feeds(session, Path(args.inputs))
    for _ in range(args.warmup):
        _run_once(session, feeds)
    times = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        _run_once(session, feeds)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"latency_ms": latency_summary(times)}


def latency_summary(times_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(times_ms)
    return {
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "mean": sum(ordered) / len(ordered),
        "min": ordered[0],
        "iterations": len(ordered),
    }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def merge(args: argparse.Namespace) -> dict[str, Any]:
    raise RunnerError("invalid_input", "merge is a TensorRT command", hint="onnxruntime builds have no timing cache")


# ------------------------------------------------------------------------------------------------ main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit 2 without a result file
        raise RunnerError("invalid_input", f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxruntime_runner")
    p.add_argument("--probe", action="store_true", help="print this toolchain's description as JSON")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    b = sub.add_parser("build")
    b.add_argument("--model", required=True)
    b.add_argument("--spec", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--timing-cache-in")
    b.add_argument("--timing-cache-out")
    b.add_argument("--plugin", action="append", default=[])
    b.add_argument("--calibration-cache")
    for name in ("run", "bench"):
        r = sub.add_parser(name)
        r.add_argument("--engine", required=True)
        r.add_argument("--inputs", required=True)
        r.add_argument("--profile", type=int, default=None, help="ignored: ONNX Runtime takes any shape")
        if name == "run":
            r.add_argument("--outputs", required=True)
        else:
            r.add_argument("--iterations", type=int, default=100)
            r.add_argument("--warmup", type=int, default=10)
    m = sub.add_parser("merge")
    m.add_argument("--cache", action="append", default=[])
    m.add_argument("--out")
    for s in (b, m, *(sub.choices[n] for n in ("run", "bench"))):
        s.add_argument("--result", required=True)
    return p


COMMANDS = {"build": build, "run": run, "bench": bench, "merge": merge}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunnerError("invalid_input", f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RunnerError("invalid_input", f"{what} {path} is not a JSON object")
    return data


def write_result(path: str | None, result: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, target)


def _result_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--result" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--result="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result_path = _result_arg(argv)
    try:
        args = parser().parse_args(argv)
        if args.probe:
            print(json.dumps(probe()))
            return EXIT_OK
        if not args.command:
            raise RunnerError("invalid_input", "give --probe or a command: build, run, bench, merge")
        result = {"ok": True, **COMMANDS[args.command](args)}
    except RunnerError as exc:
        log(f"error [{exc.code}]: {exc.message}")
        write_result(result_path, {"ok": False, "error": exc.to_dict()})
        return EXIT_INPUT if exc.code in INPUT_CODES else EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the protocol reports every failure as a result
        import traceback

        traceback.print_exc()
        code = "build_error" if "build" in argv else "run_error"
        error = {"code": code, "message": f"{type(exc).__name__}: {exc}", "hint": None}
        write_result(result_path, {"ok": False, "error": error})
        return EXIT_FAILED
    write_result(result_path, result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
