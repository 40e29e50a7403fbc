"""What both runners share: the protocol's plumbing, argument parsing, inputs, latency, device naming.

Standard library only: this module runs inside a toolchain's own interpreter (see
workers/toolchains/__init__.py) as `toolchains.common`, and in the worker and tests as
`workers.toolchains.common`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

# Exit status by error code; every other failure exits 1, success 0.
EXIT_CODES = {"unsupported_option": 2, "invalid_input": 2}
# The error code of an unexpected exception, by command (probe and no command: build_error).
DEFAULT_ERROR_CODE = {"build": "build_error", "merge": "build_error", "run": "run_error", "bench": "run_error"}

_log_tag = ["trtfarm-runner"]  # the runner's name in its log lines; main() sets it
# `serve` (a warm runner) ends each request with this mark, the token from this variable, id, exit status
DONE_MARK = "@@trtfarm-runner-done"
SERVE_TOKEN_ENV = "TRTFARM_SERVE_TOKEN"


class RunnerError(Exception):
    """A failure reported through the protocol: code, message, optional hint."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def result(self) -> dict:
        return {"ok": False, "error": {"code": self.code, "message": self.message, "hint": self.hint}}


# ---------------------------------------------------------------------------------------------------------
# Logging, files, inputs
# ---------------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    """One line to stderr (the worker streams it into the build log), tagged with the runner's name."""
    sys.stderr.write(f"[{_log_tag[0]}] {message}\n")
    sys.stderr.flush()


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], Any]) -> None:
    """Write `data` (bytes, or a function that writes to the open file) through a temporary file beside
    `path`, fsync, rename: readers see all or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RunnerError("invalid_input", f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    try:
        data = json.loads(read_bytes(path, what))
    except ValueError as exc:
        raise RunnerError("invalid_input", f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunnerError("invalid_input", f"{what} {path} must be a JSON object")
    return data


def load_spec(path: str | os.PathLike, fields: Iterable[str]) -> dict:
    """The canonical spec (registry.keys.spec_canonical) the worker wrote: every field present.

    `fields` are the ones this runner reads; "a.b" names field b of the object in field a. A missing one
    is invalid_input: runners never fill in defaults of their own.
    """
    spec = read_json_object(path, "spec")
    missing = [name for name in fields if not _has_field(spec, name)]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise RunnerError("invalid_input", f"{Path(path).name} is not a canonical spec: "
                                           f"missing field{plural} {', '.join(missing)}")
    return spec


def _has_field(spec: dict, dotted: str) -> bool:
    value: Any = spec
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


# ---------------------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------------------
def percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of values sorted ascending."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples_ms: list[float]) -> dict:
    """{"p50", "p90", "p99", "mean", "min", "max", "iterations"} of timings in milliseconds (10 ns resolution)."""
    ordered = sorted(samples_ms)
    if not ordered:
        raise ValueError("latency summary of no samples")
    return {
        "p50": round(percentile(ordered, 50), 5),
        "p90": round(percentile(ordered, 90), 5),
        "p99": round(percentile(ordered, 99), 5),
        "mean": round(sum(ordered) / len(ordered), 5),
        "min": round(ordered[0], 5),
        "max": round(ordered[-1], 5),
        "iterations": len(ordered),
    }


MIN_TIMED = 3  # a time budget never cuts a benchmark below this many timed runs


def check_bench_args(args: argparse.Namespace) -> None:
    if args.iterations < 1 or args.warmup < 0 or (args.max_seconds is not None and args.max_seconds <= 0):
        raise RunnerError("invalid_input", "need --iterations >= 1, --warmup >= 0 and --max-seconds > 0; got "
                                           f"{args.iterations}, {args.warmup}, {args.max_seconds}")


def timed_runs(step: Callable[[], float], iterations: int, max_seconds: float | None) -> tuple[list[float], str]:
    """Samples of `step()` (each returns one run's milliseconds): `iterations` of them, or fewer (never
    below MIN_TIMED) once `max_seconds` of wall time have passed. Also says which limit stopped it."""
    import time

    samples: list[float] = []
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while len(samples) < iterations:
        if deadline is not None and len(samples) >= MIN_TIMED and time.monotonic() > deadline:
            return samples, "time"
        samples.append(step())
    return samples, "iterations"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing after this much wall time (at least 3 timed runs)")


# ---------------------------------------------------------------------------------------------------------
# Devices: the same rules as registry.targets (which runners cannot import)
# ---------------------------------------------------------------------------------------------------------
def sku_slug(driver_name: str) -> str:
    """registry.targets.sku_slug: 'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'."""
    name = " ".join(driver_name.split()).lower()
    for prefix in ("nvidia ", "tesla "):
        name = name.removeprefix(prefix)
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def cc_slug(major: int, minor: int) -> str:
    """(9, 0) -> 'sm_90'."""
    return f"sm_{major}{minor}"


def cpu_arch(machine: str) -> str:
    """registry.targets' architecture name: 'AMD64' -> 'x86_64', 'arm64' -> 'aarch64'."""
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def cpu_isa(arch: str, flags: set[str]) -> str:
    """registry.targets' ISA level of a CPU from its /proc/cpuinfo flags."""
    if arch == "x86_64":
        if {"avx512f", "avx512bw", "avx512vl"} <= flags:
            return "avx512"
        if "avx2" in flags:
            return "avx2"
        return "avx" if "avx" in flags else "sse"
    if arch == "aarch64":
        return "sve" if "sve" in flags else "neon"
    return "generic"


def cpu_device(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """This CPU as a device: {"name", "device" ("x86_64-avx2"), "arch", "isa", "cores"}."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    arch = cpu_arch(machine or platform.machine())
    isa = cpu_isa(arch, cpu_flags(text))
    return {"name": cpu_name(text), "device": f"{arch}-{isa}", "arch": arch, "isa": isa, "cores": os.cpu_count()}


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_name(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "cpu"


# ---------------------------------------------------------------------------------------------------------
# Command line and the protocol's result
# ---------------------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a RunnerError (argparse would exit 2 without a result file)."""

    def error(self, message: str) -> NoReturn:
        raise RunnerError("invalid_input", f"{self.prog}: {message}")


def result_path_from(argv: list[str]) -> str | None:
    """--result's value, read off the raw arguments (so that even a bad command line gets its result)."""
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


def write_result(destination: str | None, result: dict) -> None:
    """The result JSON, atomically to `destination`; to stdout without one (--probe, bad command lines)."""
    text = json.dumps(result, indent=None, sort_keys=True, default=str)
    if destination:
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(destination, text.encode())
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


Command = Callable[[argparse.Namespace], dict]


def dispatch(parser: argparse.ArgumentParser, commands: dict[str, Command], argv: list[str]) -> tuple[str | None, dict]:
    """Parse and run one command: (command name, result). Every failure becomes {"ok": false, "error"}.

    `commands` maps "probe" and each command to a function of the parsed arguments; a command's dict is
    the result's body ("ok": true is added), the probe's is printed as it is.
    """
    command = None
    try:
        args = parser.parse_args(argv)
        command = "probe" if args.probe else args.command
        if command is None:
            names = ", ".join(name for name in commands if name != "probe")
            raise RunnerError("invalid_input", f"give --probe or a command: {names} (see --help)")
        body = commands[command](args)
        return command, body if command == "probe" else {**body, "ok": True}
    except RunnerError as exc:
        return command, exc.result()
    except Exception as exc:  # noqa: BLE001 - the protocol wants a result, not a traceback
        traceback.print_exc(file=sys.stderr)
        code = DEFAULT_ERROR_CODE.get(command, "build_error")
        return command, RunnerError(code, f"{type(exc).__name__}: {exc}").result()


def main(tag: str, parser: Callable[[], argparse.ArgumentParser], commands: dict[str, Command],
         argv: list[str] | None = None) -> int:
    """A runner's main: run the command line (or `serve` them), write its result, return the exit status."""
    _log_tag[0] = tag
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["serve"]:
        return serve(parser, commands)
    return run_one(parser, commands, argv)


def run_one(parser: Callable[[], argparse.ArgumentParser], commands: dict[str, Command], argv: list[str]) -> int:
    command, result = dispatch(parser(), commands, argv)
    write_result(None if command == "probe" else result_path_from(argv), result)
    if "error" in result:
        log(f"{result['error']['code']}: {result['error']['message']}")
    return exit_code(result)


def serve(parser: Callable[[], argparse.ArgumentParser], commands: dict[str, Command],
          requests: Iterable[str] | None = None) -> int:
    """A warm runner: one command line per request, in order, in this one process (the toolchain is
    imported once). A request is a JSON line on stdin, {"id": N, "argv": [COMMAND, ARGS..., "--result", R]};
    each command writes its result file as a single run would, then one line
    `DONE_MARK TOKEN ID EXIT` on stderr tells the worker it is done. Everything goes to stderr (fd 1 too,
    so that native libraries cannot write into the protocol): log lines, then the mark, in order.
    Ends at the end of stdin."""
    token = os.environ.get(SERVE_TOKEN_ENV, "")
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin if requests is None else requests:
        if not line.strip():
            continue
        request = json.loads(line)
        status = run_one(parser, commands, list(request["argv"]))
        sys.stderr.write(f"\n{DONE_MARK} {token} {request['id']} {status}\n")
        sys.stderr.flush()
    return 0
