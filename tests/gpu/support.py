"""Helpers of the GPU suite: the TensorRT interpreter, an embedded farm in a subprocess, the results file,
running engines through the TensorRT runner, ONNX Runtime references.

Everything here drives the product the way a user or a worker does: the farm through `python -m
registry.cli up` and the SDK, engines through the runner's protocol (workers/toolchains/__init__.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.embedded import EmbeddedFarm
from workers.toolchains import runner_argv

REPO = Path(__file__).resolve().parents[2]
TACTICS = ["edge_mask_convolutions", "jit_convolutions"]  # the kit's cuBLAS/cuDNN are stubs


def toolchain_entries(text: str) -> list[tuple[str, str]]:
    """A TRTFARM_TOOLCHAINS value parsed like registry.settings does (no pydantic needed here): (kind, python)
    in order; a kind may repeat (several versions of one toolchain)."""
    found: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, python = item.partition("=")
        if sep and python.strip():
            found.append((kind.strip(), python.strip()))
    return found


def toolchain_interpreters() -> dict[str, str]:
    """TRTFARM_TOOLCHAINS by kind (the last entry of a kind)."""
    return dict(toolchain_entries(os.environ.get("TRTFARM_TOOLCHAINS", "")))


TRT_PYTHON = toolchain_interpreters().get("tensorrt")
SKIP_REASON = ("no TensorRT toolchain: set TRTFARM_TOOLCHAINS=tensorrt=/opt/trt86/bin/python,onnxruntime=python3 "
               "on a GPU host (see scripts/gpu-suite.sh and ../shared/gpu/README.md)")


def runner_command(python: str | None = None) -> list[str]:
    return runner_argv("tensorrt", python or TRT_PYTHON)


# ------------------------------------------------------------------------------------------------ results


class Results:
    """One JSON document at $GPU_RESULTS, rewritten (atomically) after every record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    def record(self, section: str, key: str | None = None, value: Any = None, **fields: Any) -> None:
        with self.lock:
            box = self.data.setdefault(section, {})
            if key is not None:
                box[key] = value
            box.update(fields)
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------------- the runner


def probe(python: str | None = None) -> dict[str, Any]:
    """The TensorRT runner's --probe in `python` (default: TRTFARM_TOOLCHAINS' TensorRT interpreter)."""
    done = subprocess.run([*runner_command(python), "--probe"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"tensorrt runner --probe in {python or TRT_PYTHON} failed ({done.returncode}): "
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def runner_call(command: str, args: list[str], workdir: Path, *, gpu: int | None = 0, timeout: float = 600,
                env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str, float]:
    """Run one runner command in the TensorRT interpreter: (exit code, result JSON, log, seconds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / f"result-{command}-{time.monotonic_ns()}.json"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", **(env or {})}
    if gpu is not None:
        full_env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    started = time.monotonic()
    try:
        done = subprocess.run([*runner_command(), command, *map(str, args), "--result", str(result)],
                              capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-4000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return -1, {"ok": False, "error": {"code": "timeout", "message": f"{command} ran past {timeout:.0f} s"}}, \
            tail, time.monotonic() - started
    seconds = time.monotonic() - started
    log = (done.stdout + done.stderr)
    try:
        body = json.loads(result.read_text())
    except (OSError, ValueError):
        body = {"ok": False, "error": {"code": "runner_crashed",
                                       "message": f"exit {done.returncode} without a result: {log[-1500:]}"}}
    return done.returncode, body, log, seconds


def run_engine(engine: Path, feeds: dict[str, Any], workdir: Path, *, gpu: int | None = 0,
               profile: int = 0) -> dict[str, Any]:
    """The engine's outputs for `feeds`, through the runner's `run` command. Raises with TensorRT's reason."""
    import numpy as np

    workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.monotonic_ns()
    inputs, outputs = workdir / f"in-{stamp}.npz", workdir / f"out-{stamp}.npz"
    np.savez(inputs, **feeds)
    rc, body, log, _ = runner_call("run", ["--engine", engine, "--inputs", inputs, "--outputs", outputs,
                                           "--profile", str(profile)], workdir, gpu=gpu)
    if rc != 0 or not body.get("ok"):
        raise AssertionError(f"runner run failed: {body.get('error')}\n{log[-3000:]}")
    with np.load(outputs) as data:
        return {name: data[name] for name in data.files}


def ort_reference(model: Path, feeds: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(session.get_outputs(), session.run(None, feeds))}


def error_figures(reference: dict[str, Any], actual: dict[str, Any]) -> dict[str, float]:
    """max abs error, the farm's max relative error (workers.validation.errors) and max abs / max |ref|."""
    import numpy as np

    from workers.validation import errors

    out = {"max_abs_error": 0.0, "max_rel_error": 0.0, "max_abs_over_max_ref": 0.0, "elementwise_rel_floor_1e-3": 0.0}
    for name, ref in reference.items():
        act = actual[name]
        assert act.shape == ref.shape, f"output {name}: shape {act.shape} != reference {ref.shape}"
        abs_err, rel_err = errors(ref, act)
        scale = float(np.max(np.abs(ref))) or 1.0
        diff = np.abs(act.astype(np.float64) - ref.astype(np.float64))
        old_rel = float(np.max(diff / np.maximum(np.abs(ref), max(1e-3 * scale, 1e-6)))) if diff.size else 0.0
        out["max_abs_error"] = max(out["max_abs_error"], abs_err)
        out["max_rel_error"] = max(out["max_rel_error"], rel_err)
        out["max_abs_over_max_ref"] = max(out["max_abs_over_max_ref"], abs_err / scale)
        out["elementwise_rel_floor_1e-3"] = max(out["elementwise_rel_floor_1e-3"], old_rel)  # the first metric
    return out


def plan_header_version(path: Path) -> str:
    data = Path(path).read_bytes()[:28]
    assert data[:4] == b"ftrt", f"{path} is not a TensorRT plan (starts with {data[:4]!r})"
    return ".".join(str(b) for b in data[24:28])


# ------------------------------------------------------------------------------------------ the farm


def tensorrt_worker(worker: Any) -> bool:
    """A live worker that builds with TensorRT on a GPU (what the GPU suite's farm waits for)."""
    return any(t["kind"] == "tensorrt" for t in worker.toolchains) and any(d.get("sku") for d in worker.devices)


def gpu_farm(home: Path, gpus: str = "auto", expected_workers: int = 1, *, toolchains: str | None = None,
             accept: Any = None, **env: str) -> EmbeddedFarm:
    """The embedded farm of the GPU suite: this host's TensorRT toolchain (or `toolchains`, a
    TRTFARM_TOOLCHAINS value), `expected_workers` GPU workers (accepted by `accept`, a WorkerInfo predicate,
    besides being TensorRT workers), `env` added to the farm's environment."""
    def accepted(worker: Any) -> bool:
        return tensorrt_worker(worker) and (accept is None or accept(worker))

    value = toolchains if toolchains is not None else os.environ.get("TRTFARM_TOOLCHAINS", "")
    return EmbeddedFarm(home, gpus=gpus, workers=expected_workers, accept=accepted,
                        extra_env={"TRTFARM_TOOLCHAINS": value, **env})


def build_summary(farm, info) -> dict[str, Any]:  # noqa: ANN001
    """What a test records about a finished build (and its engine)."""
    body: dict[str, Any] = {"build": info.id, "status": info.status, "worker": info.worker, "attempt": info.attempt,
                            "timings": info.timings, "timing_cache": info.timing_cache,
                            "error": info.error.model_dump() if info.error else None,
                            "created_at": str(info.created_at), "started_at": str(info.started_at),
                            "finished_at": str(info.finished_at)}
    if info.timing_cache:  # what the runner said about the shared cache (a refusal names TensorRT's reason)
        try:
            lines = [ln for ln in farm.log(info.id).splitlines() if "timing cache" in ln.lower()]
            body["cache_log"] = [ln[:400] for ln in lines[:12]]
        except Exception as exc:  # noqa: BLE001
            body["cache_log"] = [f"(log unavailable: {exc})"]
    if info.engine_id:
        e = farm.engine(info.engine_id)
        meta = e.metadata or {}
        body.update(engine=e.id, version=e.version, size=e.size, build_seconds=e.build_seconds,
                    validation_passed=e.validation_passed,
                    validation_max_rel=(e.validation or {}).get("max_rel_error"),
                    validation_max_abs=(e.validation or {}).get("max_abs_error"),
                    latency_p50_ms=e.latency_p50_ms, latency_p99_ms=e.latency_p99_ms,
                    refittable=e.refittable, hardware_compatibility=e.hardware_compatibility,
                    plan_version=meta.get("plan_version"), plan_build=meta.get("plan_build"),
                    runner_timing_cache=meta.get("timing_cache"), layers=meta.get("layers"))
    elif info.status != "succeeded":
        try:
            body["log_tail"] = farm.log(info.id)[-4000:]
        except Exception as exc:  # noqa: BLE001
            body["log_tail"] = f"(log unavailable: {exc})"
    return body


def submit_and_wait(farm, model: Path, spec: dict, *, timeout: float = 300, target: str = "tensorrt"):  # noqa: ANN001, ANN201
    """Submit and wait; returns the BuildInfo whatever its end (a failed build does not raise here)."""
    from registry.errors import FarmError

    try:
        return farm.submit(model, target, spec, wait=True, timeout=timeout, poll_interval=0.5)
    except FarmError as exc:
        build = getattr(exc, "build", None)
        if build is None:
            raise
        return build


def wait_all(farm, builds: list, timeout: float = 300) -> list:  # noqa: ANN001
    from registry.errors import FarmError

    done = []
    for b in builds:
        try:
            done.append(farm.wait(b, timeout=timeout, poll_interval=0.5))
        except FarmError as exc:
            build = getattr(exc, "build", None)
            if build is None:
                raise
            done.append(build)
    return done


def profile(batch_min: int, batch_opt: int, batch_max: int, size: int, name: str = "input") -> dict:
    return {name: {"min": [batch_min, 3, size, size], "opt": [batch_opt, 3, size, size],
                   "max": [batch_max, 3, size, size]}}
