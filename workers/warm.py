"""Warm runners: one long-lived runner process per toolchain of a worker, serving every command of every
build (build, validation runs, benchmark, timing-cache merges) in turn.

A runner process imports its toolchain once (ONNX Runtime: ~0.2 s; TensorRT: seconds of start-up, CUDA
context and plugin registration), so a build no longer pays that three or more times. The protocol is the
runners' `serve` (workers/toolchains/common.py): a JSON request per line on the runner's stdin, the
command's result file as in a single run, and a done mark (with a per-process token) on its output after
the command's log lines.

What a warm process must not carry from one build to the next is kept out: a build that loads plugin
libraries runs in a fresh process (`launcher.run`), a runner is replaced after `max_jobs` commands, and a
timeout, a cancel or a crash kills its process group; the next command starts a new one. A command whose
warm process died under it runs once more in a fresh process (what killed it may have been left by an
earlier command); dying there too fails the build.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.errors import BuildCancelled, RunnerFailed
from workers import launcher
from workers.launcher import BuildLog, Toolchain
from workers.toolchains import runner_argv
from workers.toolchains.common import DONE_MARK, SERVE_TOKEN_ENV

CHECK_S = 0.5  # how often a waiting command asks should_stop()


class WarmRunner:
    """One `serve` process of one toolchain; `run` sends it a command and waits for its done mark."""

    def __init__(self, toolchain: Toolchain, env: dict[str, str], max_jobs: int) -> None:
        self.toolchain, self.env, self.max_jobs = toolchain, env, max_jobs
        self.proc: subprocess.Popen | None = None
        self.jobs = 0  # commands sent to the current process
        self._done: queue.Queue = queue.Queue()
        self._log: BuildLog | None = None  # where the current command's lines go
        self._lock = threading.Lock()
        self._exit_status = 0  # of the last process that died under a command

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def run(self, command: str, args: list[str], *, workdir: Path, log: BuildLog, timeout: float,
            should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """As launcher.run, in the warm process: its result dict, or RunnerFailed / BuildCancelled."""
        with self._lock:
            if self.pid is None or self.jobs >= self.max_jobs:
                self._start()
            self.jobs += 1
            result_path = workdir / f"result-{command}-{time.monotonic_ns()}.json"
            self._log = log
            log.write(f"$ {command} {' '.join(args)}  (warm {self.toolchain.kind} runner, pid {self.pid}, "
                      f"command {self.jobs})")
            try:
                self._send({"id": self.jobs, "argv": [command, *args, "--result", str(result_path)]})
                outcome = self._wait(self.jobs, timeout, should_stop)
            finally:
                self._log = None
            if outcome == "timeout":
                raise RunnerFailed("timeout", f"{self.toolchain.kind} {command} ran past its {timeout:.0f} s limit "
                                              "and was stopped")
            if outcome == "cancelled":
                raise BuildCancelled(f"{self.toolchain.kind} {command} stopped: the build was cancelled")
            returncode = outcome if isinstance(outcome, int) else self._exit_status
            return launcher.read_result(result_path, returncode, command, log)

    def stop(self) -> None:
        """Kill the process (and anything it started); the next command starts a new one."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _start(self) -> None:
        self.stop()
        token = secrets.token_hex(8)
        env = {**os.environ, **self.env, SERVE_TOKEN_ENV: token, "PYTHONUNBUFFERED": "1",
               "TRTFARM_RUNNER_PARENT": str(os.getpid())}  # it dies with us (run.py)
        self.proc = subprocess.Popen([*runner_argv(self.toolchain.kind, self.toolchain.interpreter), "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace", env=env, start_new_session=True)
        self.jobs = 0
        self._done = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self._done, f"{DONE_MARK} {token} "), daemon=True,
                         name=f"runner-{self.toolchain.kind}-{self.proc.pid}").start()

    def _read(self, proc: subprocess.Popen, done: queue.Queue, mark: str) -> None:
        """The process's output: log lines to the current command's log, done marks to `done`."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(mark):
                ident, status = line[len(mark):].split()
                done.put((int(ident), int(status)))
            elif line.strip() and self._log is not None:
                self._log.write(line)
        done.put((None, proc.wait()))

    def _send(self, request: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died between commands: its exit is reported by the reader as for a crash
            pass

    def _wait(self, ident: int, timeout: float, should_stop: Callable[[], bool]) -> int | str:
        """The command's exit status, "timeout", "cancelled", or "exited" (the process died without a mark)."""
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline or should_stop():
                self.stop()
                return "timeout" if time.monotonic() > deadline else "cancelled"
            try:
                got, status = self._done.get(timeout=min(CHECK_S, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if got is None:  # end of output: the process is gone
                self.stop()
                self._exit_status = status
                return "exited"
            if got == ident:
                return status


class Runners:
    """A worker's runners: warm ones per toolchain (when `warm`), else a fresh process per command."""

    def __init__(self, env: dict[str, str], warm: bool = True, max_jobs: int = 200) -> None:
        self.env, self.warm, self.max_jobs = env, warm, max_jobs
        self._warm: dict[tuple[str, str], WarmRunner] = {}

    def run(self, toolchain: Toolchain, command: str, args: list[str], *, workdir: Path, log: BuildLog,
            timeout: float, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        if not self.warm or "--plugin" in args:  # a plugin library would stay loaded for later builds
            return launcher.run(toolchain, command, args, workdir=workdir, log=log, timeout=timeout, env=self.env,
                                should_stop=should_stop)
        key = (toolchain.kind, toolchain.interpreter)
        if key not in self._warm:
            self._warm[key] = WarmRunner(toolchain, self.env, self.max_jobs)
        started = time.monotonic()
        try:
            return self._warm[key].run(command, args, workdir=workdir, log=log, timeout=timeout,
                                       should_stop=should_stop)
        except RunnerFailed as exc:
            if exc.runner_code != "runner_crashed":
                raise
        # What killed it may be left over from an earlier command (or an operator's kill): once more, alone.
        log.write(f"the warm {toolchain.kind} runner died during {command}; running it again in a fresh process")
        return launcher.run(toolchain, command, args, workdir=workdir, log=log, env=self.env, should_stop=should_stop,
                            timeout=max(1.0, timeout - (time.monotonic() - started)))

    def close(self) -> None:
        for runner in self._warm.values():
            runner.stop()
