"""Toolchain runners and the protocol the worker speaks with them.

A runner is a script that runs inside its toolchain's own interpreter (e.g. /opt/trt86/bin/python), so it
imports only the standard library, numpy and its own runtime (tensorrt or onnxruntime) -- never
`registry` or `workers`. The worker starts it as a subprocess: `INTERPRETER RUNNER_PATH COMMAND ...`.

Protocol (version 1). Every command except --probe writes a JSON result file given by --result:
    {"ok": true, ...}                               on success
    {"ok": false, "error": {"code", "message", "hint"}}   on failure
error codes: "unsupported_option" (an option this toolchain lacks: message names option and version),
"invalid_input", "parse_error", "build_error", "run_error". Exit status: 0 ok, 2 unsupported_option or
invalid_input, 1 any other failure. Log lines go to stderr (streamed into the build log).

  RUNNER --probe
      stdout: one JSON object {"kind", "version", "python", "features": [spec option names it supports],
      "devices": [...]}. GPU device: {"index", "name", "sku", "cc" ("sm_90"), "memory_mib", "driver", "uuid"}.
      CPU device: {"name", "device" ("x86_64-avx2"), "arch", "isa", "cores"}.
  RUNNER build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
               [--timing-cache-in F] [--timing-cache-out F] [--plugin LIB]... [--calibration-cache F]
      SPEC.json is the canonical spec (registry.keys.spec_canonical: option names, never enum integers).
      External data files lie beside M.onnx. Result: {"ok": true, "metadata": {...}} (see each runner).
  RUNNER run --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json [--profile K]
      Runs the engine once on the named inputs, writes the named outputs.
  RUNNER bench --engine ENGINE --inputs IN.npz --result R.json [--iterations N] [--warmup W] [--profile K]
      Result: {"ok": true, "latency_ms": {"p50", "p99", "mean", "min", "iterations"}}.
  RUNNER merge --cache A --cache B [--cache ...] --out C --result R.json        (tensorrt only)
      Combines timing caches (TensorRT's combine). Result: {"ok": true, "size", "inputs": [sizes],
      "ignored": [paths TensorRT rejected]}.
"""

from pathlib import Path

RUNNERS_DIR = Path(__file__).resolve().parent


def runner_path(kind: str) -> Path:
    return RUNNERS_DIR / f"{kind}_runner.py"
