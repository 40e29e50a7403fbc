"""Start a server process for a benchmark and wait until its /healthz answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.net import free_port

REPO = Path(__file__).resolve().parents[1]


def serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`python ARGS --port P` (quiet); (process, base URL) once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{' '.join(args)} did not answer /healthz in 30 s")
