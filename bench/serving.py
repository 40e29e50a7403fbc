"""What the benchmarks share: a server process started and awaited, a scratch PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from tests.net import free_port

REPO = Path(__file__).resolve().parents[1]
PG = dict(host="127.0.0.1", port=5432, user="postgres")


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


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait(30)


@contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """A new PostgreSQL database on this machine for one run, dropped afterwards: (name, SQLAlchemy URL)."""
    dbname = f"trtfarm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield dbname, f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{dbname}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
