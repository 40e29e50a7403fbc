"""Start and stop a real embedded farm (`python -m registry.cli up`) in a subprocess, as a user would.

Shared by the e2e and peer suites. Everything lives under the given home folder; the farm is stopped
with SIGINT (the graceful stop that also stops its workers), then SIGKILL if it hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]


def user_env(home: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no TRTFARM_* settings leaking from the test runner, a private
    HOME and SDK cache, TRTFARM_URL when given."""
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


@dataclass
class EmbeddedFarm:
    home: Path
    port: int = field(default_factory=free_port)
    workers: int = 1
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "up.log"

    def start(self, timeout: float = 120) -> EmbeddedFarm:
        self.home.mkdir(parents=True, exist_ok=True)
        args = ["up", "--home", str(self.home / "farm"), "--port", str(self.port), "--gpus", "none"]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen([sys.executable, "-m", "registry.cli", *args], env=user_env(self.home),
                                     cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the API answers and `workers` workers are live."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"`trtfarm up` exited {self.proc.returncode}:\n{self.logs()}")
            try:
                live = [w for w in httpx.get(f"{self.url}/v1/workers", timeout=2).json() if w["live"]]
                if len(live) >= self.workers:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the embedded farm did not come up with {self.workers} worker(s) in {timeout:.0f} s:\n"
                           f"{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in [self.log_path, *sorted((self.home / "farm").glob("worker-*.log"))]:
            if path.exists():
                parts.append(f"==> {path.name} <==\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self, timeout: float = 30) -> int | None:
        """Graceful stop (SIGINT, like Ctrl-C); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
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
