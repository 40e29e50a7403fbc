"""Toolchain runners and the protocol the worker speaks with them.

A runner runs inside its toolchain's own interpreter (e.g. /opt/trt86/bin/python: Python 3.10 with only
tensorrt and numpy), with no project install. So everything in this folder imports only the standard
library, numpy, its own runtime (tensorrt or onnxruntime, lazily) and modules of this folder (relative
imports) -- never `registry` or `workers`; this file stays standard-library only.

Layout (each runner split by concern, the way Polygraphy splits a backend):
    common.py               shared by both runners: RunnerError, the result file and exit codes, the
                            dispatch/main skeleton, the argument parser, spec/JSON/bytes inputs, atomic
                            writes, latency summary, GPU SKU and cc slugs, CPU arch/ISA detection
    layouts.py              TensorRT's I/O memory layouts (CHWk, HWCk, ...) in numpy: pack and unpack
    tensorrt_runner/        the TensorRT runner (a package; its __init__ lists its modules)
    onnxruntime_runner/     the ONNX Runtime runner (a package)
    run.py                  the bootstrap the worker starts: `INTERPRETER run.py KIND COMMAND ...`

Starting a runner: `[*runner_argv(kind, interpreter), COMMAND, *ARGS]`. run.py APPENDS the directory above
this folder (workers/) to sys.path -- so nothing of the project shadows the interpreter's own modules --
drops its own folder from the path, and runs `toolchains.<kind>_runner` as __main__. The same packages
import as `workers.toolchains.<kind>_runner` in the worker and in tests.

Protocol (version 1). Every command except --probe writes a JSON result file given by --result:
    {"ok": true, ...}                               on success
    {"ok": false, "error": {"code", "message", "hint"}}   on failure
error codes: "unsupported_option" (an option this toolchain lacks: message names option and version),
"invalid_input", "parse_error", "build_error", "run_error". Exit status: 0 ok, 2 unsupported_option or
invalid_input, 1 any other failure. Log lines go to stderr (streamed into the build log). A failure before
--result is known (a bad command line, --probe) prints the error object to stdout instead.

  RUNNER --probe
      stdout: one JSON object {"kind", "version", "python", "features": [spec option names it supports],
      "devices": [...]}. GPU device: {"index", "name", "sku", "cc" ("sm_90"), "memory_mib", "driver", "uuid"}.
      CPU device: {"name", "device" ("x86_64-avx2"), "arch", "isa", "cores"}.
  RUNNER build --model M.onnx --spec SPEC.json --out ENGINE --result R.json
               [--timing-cache-in F] [--timing-cache-out F] [--plugin LIB]... [--calibration-cache F]
               [--calibration-data D.npz --calibration-cache-out F]
      SPEC.json is the canonical spec (registry.keys.spec_canonical: every field present, option names,
      never enum integers); runners keep no defaults of their own, and a missing field is invalid_input
      ("spec.json is not a canonical spec: missing field X"). External data files lie beside M.onnx.
      Result: {"ok": true, "metadata": {...}} (see each runner). INT8 (tensorrt_runner/calibration.py): a
      cache is served as it is; a data set (.npz, one array per input, axis 0 = samples) is calibrated with
      the spec's calibration_algorithm and the cache TensorRT made written to --calibration-cache-out;
      metadata["calibration"] says how (mode calibrated / cache / explicit for a Q/DQ network).
  RUNNER run --engine ENGINE --inputs IN.npz --outputs OUT.npz --result R.json [--profile K] [--plugin LIB]...
      Runs the engine once on the named inputs, writes the named outputs. Arrays are logical (NCHW order,
      any numeric dtype): a runner casts them to the engine's I/O types and lays them out in its I/O formats,
      and unpacks outputs back to their logical shape (TensorRT: fp16/bf16/vectorized I/O, layouts.py).
      TensorRT registers its own plugins and loads each --plugin library before deserializing (bench alike).
  RUNNER bench --engine ENGINE --inputs IN.npz --result R.json [--iterations N] [--warmup W] [--profile K]
               [--plugin LIB]...
      Result: {"ok": true, "latency_ms": {"p50", "p99", "mean", "min", "iterations"}}.
  RUNNER serve
      A warm runner: reads one request per line on stdin, {"id": N, "argv": [COMMAND, ARGS..., "--result", R]},
      runs it as `RUNNER COMMAND ARGS...` would (its result file included), then writes the line
      `@@trtfarm-runner-done TOKEN N EXIT` to stderr (TOKEN: $TRTFARM_SERVE_TOKEN). fd 1 is pointed at
      stderr, so all output is one ordered stream. Ends at the end of stdin (workers/warm.py drives it).
  RUNNER merge --cache A --cache B [--cache ...] --out C --result R.json        (tensorrt only)
      Combines timing caches (TensorRT's combine). Result: {"ok": true, "size", "inputs": [sizes],
      "ignored": [paths TensorRT rejected]}.
"""

from pathlib import Path

RUNNERS_DIR = Path(__file__).resolve().parent
BOOTSTRAP = RUNNERS_DIR / "run.py"
KINDS = ("tensorrt", "onnxruntime")


def runner_argv(kind: str, interpreter: str) -> list[str]:
    """The command line that starts `kind`'s runner in `interpreter` (the protocol's arguments follow)."""
    return [interpreter, str(BOOTSTRAP), kind]
