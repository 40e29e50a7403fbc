"""The worker-side process launcher for toolchain runners (the protocol: workers/toolchains/__init__.py):
start a runner in its toolchain's interpreter, stream its log, enforce a timeout, honour cancellation,
read its result."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import BuildCancelled, RunnerFailed, ToolchainError
from workers.toolchains import runner_argv

TAIL_CHARS = 64 * 1024
STREAMED_LINES = 20_000  # lines of one attempt sent to the build's event stream; the stored log has them all


@dataclass
class BuildLog:
    """The build's log: a file on disk plus a tail kept in memory for live views."""

    path: Path
    tail: deque = field(default_factory=lambda: deque(maxlen=2000))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _written: int = 0
    _sent: int = 0  # lines handed to take_new()

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        with self._lock:
            with open(self.path, "a", encoding="utf-8", errors="replace") as f:
                f.write(line + "\n")
            self.tail.append(line)
            self._written += 1

    def take_new(self) -> list[str]:
        """The lines written since the last call (for the build's event stream): those the tail still holds,
        after a line saying how many it no longer does; nothing more after STREAMED_LINES."""
        with self._lock:
            new, first = self._written - self._sent, self._sent
            self._sent = self._written
            if new <= 0 or first > STREAMED_LINES:
                return []
            if first + new > STREAMED_LINES:
                return [f"(the live log stops here after {STREAMED_LINES} lines; the build's log has them all)"]
            kept = list(self.tail)[-new:] if new <= len(self.tail) else list(self.tail)
            skipped = new - len(kept)
            note = [f"({skipped} lines came too fast for the live log; the build's log has them)"] if skipped else []
            return note + kept

    def section(self, title: str) -> None:
        self.write(f"--- {time.strftime('%H:%M:%S')} {title}")

    def tail_text(self) -> str:
        with self._lock:
            return "\n".join(self.tail)[-TAIL_CHARS:]


@dataclass(frozen=True)
class Toolchain:
    kind: str
    version: str
    interpreter: str
    python: str
    features: tuple[str, ...]
    devices: tuple[dict, ...]

    def public(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "interpreter": self.interpreter, "python": self.python,
                "features": list(self.features)}


def probe(kind: str, interpreter: str, timeout: float = 180) -> Toolchain:
    cmd = [*runner_argv(kind, interpreter), "--probe"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"probing {kind} with {interpreter} failed: {exc}") from None
    if done.returncode != 0:
        raise ToolchainError(f"probing {kind} with {interpreter} failed (exit {done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()[-2000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return Toolchain(kind, info["version"], interpreter, info.get("python", ""), tuple(info.get("features", [])),
                     tuple(info.get("devices", [])))


def run(toolchain: Toolchain, command: str, args: list[str], *, workdir: Path, log: BuildLog, timeout: float,
        env: dict[str, str] | None = None, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run one runner command; return its result dict or raise RunnerFailed / BuildCancelled."""
    result_path = workdir / f"result-{command}-{time.monotonic_ns()}.json"
    cmd = [*runner_argv(toolchain.kind, toolchain.interpreter), command, *args, "--result", str(result_path)]
    log.write(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1",
                                 "TRTFARM_RUNNER_PARENT": str(os.getpid())},  # it dies with us (run.py)
                            start_new_session=True)
    reader = threading.Thread(target=lambda: [log.write(line) for line in proc.stdout], daemon=True)
    reader.start()
    outcome = _wait(proc, timeout, should_stop)
    reader.join(timeout=10)
    if outcome == "timeout":
        raise RunnerFailed("timeout", f"{toolchain.kind} {command} ran past its {timeout:.0f} s limit and was stopped")
    if outcome == "cancelled":
        raise BuildCancelled(f"{toolchain.kind} {command} stopped: the build was cancelled")
    return read_result(result_path, proc.returncode, command, log)


def _wait(proc: subprocess.Popen, timeout: float, should_stop: Callable[[], bool], check_s: float = 0.5) -> str:
    """Until the runner exits (woken at its exit: a pidfd), it runs past `timeout`, or `should_stop()`
    (asked every check_s)."""
    deadline = time.monotonic() + timeout
    exited = _exit_fd(proc)
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline or should_stop():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return "timeout" if time.monotonic() > deadline else "cancelled"
            left = min(check_s, max(0.0, deadline - time.monotonic()))
            if exited is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(left)
            else:
                select.select([exited], [], [], left)
    finally:
        if exited is not None:
            os.close(exited)
    return "done"


def _exit_fd(proc: subprocess.Popen) -> int | None:
    """A file descriptor readable once the process exits (Linux ≥ 5.3), or None."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def read_result(path: Path, returncode: int, command: str, log: BuildLog) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        tail = "\n".join(list(log.tail)[-15:])
        raise RunnerFailed("runner_crashed", f"the runner's {command} exited {returncode} without a result; "
                                             f"last log lines:\n{tail}") from None
    if not result.get("ok"):
        err = result.get("error") or {}
        raise RunnerFailed(err.get("code", "runner_error"), err.get("message", "unknown runner error"), err.get("hint"))
    return result
