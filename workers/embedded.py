"""The embedded farm (`trtfarm up`): API + dispatcher in this process, one worker process per GPU (or
CPU workers), on SQLite + a blob folder + kombu's SQLAlchemy transport under one home folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from registry import auth
from registry.db.migrate import upgrade
from registry.settings import Settings

EMBEDDED_ENV = ("home", "database_url", "broker_url", "blob_url", "s3_endpoint_url", "toolchains")


def run_embedded(settings: Settings, host: str, port: int, *, gpus: list[int] | None,
                 announce: Callable[[str], None], after_start: Callable[[str], None] | None = None,
                 cpu_workers: int = 1) -> None:
    """Start everything; `after_start(url)` runs in a thread once the API answers (the demo uses it).

    With GPUs: one worker per GPU. Without: `cpu_workers` CPU workers (each builds one job at a time)."""
    from api.serve import run_api
    from workers.dispatcher import start_dispatcher_thread

    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    if gpus:
        workers = [spawn_worker(settings, gpu) for gpu in gpus]
    else:
        count = max(1, cpu_workers)
        workers = [spawn_worker(settings, None, index=i if count > 1 else None) for i in range(count)]
    url = f"http://{host}:{port}"
    announce(f"trtfarm embedded farm at {url} (home {settings.home})")
    announce(f"  database {settings.resolved_database_url()}  blobs {settings.resolved_blob_url()}")
    announce(f"  broker {settings.resolved_broker_url()}  workers: {len(workers)} ({_describe(gpus)})")
    if auth.auth_required(settings.auth, host):
        announce("  API keys required (Authorization: Bearer …); make one with "
                 "`trtfarm keys create --name NAME --scope admin` (TRTFARM_HOME as here)")
    else:
        announce("  open mode: no API keys on loopback; anyone on this machine can use it")
    if after_start:
        threading.Thread(target=_when_ready, args=(url, after_start), daemon=True).start()
    stop = start_dispatcher_thread(settings)
    try:
        run_api(settings, host, port)
    finally:
        stop.set()
        stop_workers(workers)


def _describe(gpus: list[int] | None) -> str:
    return f"one per GPU {gpus}" if gpus else "CPU"


def spawn_worker(settings: Settings, gpu: int | None, index: int | None = None) -> subprocess.Popen:
    """One worker process; `index` numbers several CPU workers (own name and log: cpu0, cpu1, ...)."""
    env = dict(os.environ)
    for name in EMBEDDED_ENV:
        value = getattr(settings, name)
        if value is not None:
            env[f"TRTFARM_{name.upper()}"] = str(value)
    env["TRTFARM_BROKER_URL"] = settings.resolved_broker_url()
    env["TRTFARM_DATABASE_URL"] = settings.resolved_database_url()
    env["TRTFARM_BLOB_URL"] = settings.resolved_blob_url()
    env["TRTFARM_PARENT_PID"] = str(os.getpid())  # an orphaned embedded worker stops by itself
    if gpu is not None:
        env["TRTFARM_GPU"] = str(gpu)
    label = f"gpu{gpu}" if gpu is not None else "cpu" if index is None else f"cpu{index}"
    if index is not None and not settings.worker_name:
        env["TRTFARM_WORKER_NAME"] = f"{socket.gethostname()}:{label}"
    proc = subprocess.Popen([sys.executable, "-m", "registry.cli", "worker"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    threading.Thread(target=_tee, args=(proc, settings.home / f"worker-{label}.log", label), daemon=True,
                     name=f"worker-{label}-output").start()
    return proc


def _tee(proc: subprocess.Popen, path: Path, label: str) -> None:
    """A worker's output into its log file; its `trtfarm.*` lines (build events, warnings) on this console too."""
    assert proc.stdout is not None
    with open(path, "ab") as log:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if b" trtfarm." in line:
                sys.stderr.write(f"[{label}] {line.decode(errors='replace')}")


def _when_ready(url: str, then: Callable[[str], None]) -> None:
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    then(url)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM each worker's process group, SIGKILL what is left after 15 s."""
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for w in workers:
        try:
            w.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
