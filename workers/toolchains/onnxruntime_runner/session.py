"""Run and bench: a CPU session on a built engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import common
from ..common import RunnerError, atomic_write, latency_summary

ORT_MAGIC = b"ORTM"  # flatbuffers file identifier of an ORT-format model, bytes 4..8


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


def run(args: Any) -> dict[str, Any]:
    import numpy as np

    session = load_engine(Path(args.engine))
    feeds = load_feeds(session, Path(args.inputs))
    values = _run_once(session, feeds)
    outputs = {o.name: np.asarray(v) for o, v in zip(session.get_outputs(), values)}
    # string tensors come back as object arrays; store them as unicode so the file loads without pickle
    outputs = {n: v.astype(str) if v.dtype == object else v for n, v in outputs.items()}
    out = Path(args.outputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: np.savez(f, **outputs))
    return {"outputs": {name: {"dtype": str(v.dtype), "shape": list(v.shape)} for name, v in outputs.items()}}


def bench(args: Any) -> dict[str, Any]:
    common.check_bench_args(args)
    session = load_engine(Path(args.engine))
    feeds = load_feeds(session, Path(args.inputs))
    for _ in range(args.warmup):
        _run_once(session, feeds)

    def step() -> float:
        start = time.perf_counter()
        _run_once(session, feeds)
        return (time.perf_counter() - start) * 1000.0

    times, stopped = common.timed_runs(step, args.iterations, args.max_seconds)
    return {"latency_ms": latency_summary(times), "stopped_by": stopped, "warmup": args.warmup,
            "device": common.cpu_name(common.read_cpuinfo())}
