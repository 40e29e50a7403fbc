"""Start and stop a real embedded farm (`python -m registry.cli up`) in a subprocess, as a user would.

Shared by the e2e, peer and GPU suites. The farm keeps its state under `home/farm` and logs to
`home/up.log` (its workers to `home/farm/worker-*.log`); it is stopped with SIGINT (the graceful stop
that also stops its workers), then SIGKILL if it hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.net import free_port

REPO = Path(__file__).resolve().parents[1]


def user_env(home: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no TRTFARM_* settings leaking from the test runner, a private
    HOME and SDK cache, TRTFARM_URL when given, then `extra` (TRTFARM_TOOLCHAINS on a GPU host, say)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}
    env["HOME"] = str(home / "user-home")
    env["TRTFARM_CACHE"] = str(home / "user-cache")
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    if url:
        env["TRTFARM_URL"] = url
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`trtfarm ARGS` run as `python -m registry.cli ARGS`."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def any_worker(worker: Any) -> bool:
    return True


@dataclass
class EmbeddedFarm:
    """`trtfarm up --home HOME/farm --port PORT --gpus GPUS [--workers N]`.

    `workers` live workers accepted by `accept` (a WorkerInfo predicate) make it ready; with `gpus="none"`
    that many CPU workers are started. `extra_env` adds to the user's environment (user_env)."""

    home: Path
    gpus: str = "none"
    workers: int = 1
    accept: Callable[[Any], bool] = any_worker
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    live: list = field(default_factory=list)  # the WorkerInfo of the live workers, once ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "up.log"

    def start(self, timeout: float = 240) -> EmbeddedFarm:
        self.home.mkdir(parents=True, exist_ok=True)
        args = ["up", "--home", str(self.home / "farm"), "--port", str(self.port), "--gpus", self.gpus]
        if self.gpus == "none" and self.workers != 1:
            args += ["--workers", str(self.workers)]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "registry.cli", *args],
                                         env=user_env(self.home, **self.extra_env), cwd=self.home, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the API answers and `workers` accepted workers are live."""
        deadline = time.monotonic() + timeout
        with self.client("ready-cache") as sdk:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"`trtfarm up` exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    self.live = [w for w in sdk.workers() if w.live and self.accept(w)]
                    if len(self.live) >= self.workers:
                        return
                except Exception:  # noqa: BLE001, S110 - not answering yet
                    pass
                time.sleep(0.3)
        raise TimeoutError(f"the embedded farm did not come up with {self.workers} worker(s) in {timeout:.0f} s:\n"
                           f"{self.logs()}")

    def client(self, name: str = "client-cache", timeout: float = 120):  # noqa: ANN201
        """An SDK client of this farm with its own cache folder."""
        from registry.client import Farm

        return Farm(self.url, cache_dir=self.home / name, timeout=timeout)

    def log_files(self) -> list[Path]:
        return [p for p in [self.log_path, *sorted((self.home / "farm").glob("worker-*.log"))] if p.exists()]

    def logs(self, chars: int = 4000) -> str:
        return "\n".join(f"==> {p.name} <==\n{p.read_text(errors='replace')[-chars:]}" for p in self.log_files())

    def save_logs(self, dest: Path, chars: int = 400_000) -> None:
        """The farm's and its workers' log tails, appended to one file (for the GPU suite's $OUT)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "a", encoding="utf-8") as out:
            for path in self.log_files():
                text = path.read_text(errors="replace")
                out.write(f"\n==> {self.home.name}/{path.name} ({len(text)} chars, last {chars}) <==\n"
                          f"{text[-chars:]}\n")

    def stop(self, timeout: float = 30) -> int | None:
        """Graceful stop (SIGINT to the process group, like Ctrl-C); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of processes (of this user) whose environment holds name=value (Linux /proc)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
