"""Faults of the clients: an SDK process killed mid-download (a real TCP proxy holds its download half-way,
then SIGKILL), and clients that disconnect in the middle of an upload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.atomic import PART_PREFIX, writer_tag
from registry.db.tables import Model
from tests.integration.conftest import REPO, RunningFarm, batch_profile, wait_for
from tests.models import matmul_model

MIB = 1 << 20


class StallingProxy:
    """A TCP proxy to `upstream` that passes requests whole and the first `limit` bytes of each answer,
    then holds the connection open without sending more: a download stuck half-way."""

    def __init__(self, upstream: tuple[str, int], limit: int) -> None:
        self.upstream, self.limit = upstream, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stalled = threading.Event()
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.limit), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    self.stalled.set()
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            return

    def close(self) -> None:
        for s in self._sockets:
            s.close()


@pytest.fixture
def farm(farm_factory) -> RunningFarm:  # noqa: ANN001
    return farm_factory(workers=1, blobs="file")


SDK_DOWNLOAD = """
import sys
from registry.client import Farm
with Farm(sys.argv[1], cache_dir=sys.argv[2], local_reads=False) as farm:  # as on another host: over HTTP
    farm.download(farm.engine(sys.argv[3]))
"""


def test_an_sdk_killed_mid_download_leaves_nothing_the_next_call_keeps(farm: RunningFarm, ort_runtime: str,
                                                                       tmp_path: Path) -> None:
    """The engine (about 4 MiB) stops arriving after 1 MiB; the SDK process is SIGKILLed with its temp file
    in the cache. The next download (another process) removes that file at once (its writer is gone), leaves a
    live writer's temp file alone, and stores the verified engine."""
    sdk = farm.client()
    build = sdk.submit(matmul_model(tmp_path / "wide.onnx", k=1024, n=1024), ort_runtime,
                       batch_profile("x", rest=(1024,)), timeout=120)
    engine = sdk.engine(build.engine_id)
    assert engine.size > 2 * MIB
    proxy = StallingProxy(("127.0.0.1", farm.port), limit=MIB)
    cache = tmp_path / "inference-host-cache"
    child = subprocess.Popen([sys.executable, "-c", SDK_DOWNLOAD, proxy.url, str(cache), engine.id], cwd=REPO,
                             env={**farm.env, "PYTHONPATH": str(REPO)})
    try:
        assert proxy.stalled.wait(30), "the download never reached the proxy's limit"
        part = wait_for(lambda: list(cache.rglob(f"{PART_PREFIX}*")), what="the SDK's temp file")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        proxy.close()
    assert [p.exists() for p in part] == [True]
    live = part[0].parent / f"{PART_PREFIX}{writer_tag()}another-download"  # this process: alive
    live.write_bytes(b"in progress")

    path = farm.client(cache_dir=cache).download(engine)
    assert path.stat().st_size == engine.size
    assert not part[0].exists() and live.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, live.name])


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _abandoned_upload(port: int, size: int, sent: int) -> None:
    """A multipart upload announcing `size` bytes that sends `sent` of them and hangs up."""
    boundary = "farm-fault-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.onnx\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall((f"POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)
        chunk = os.urandom(64 << 10)
        for _ in range(sent // len(chunk)):
            s.sendall(chunk)


def test_clients_that_hang_up_mid_upload_leave_nothing_behind(farm: RunningFarm, tmp_path: Path) -> None:
    """Five uploads announcing 20 MiB hang up after 6 MiB (the body is spooled to disk by then): the API keeps
    answering, no model row, no upload folder, no blob temp file, and no file descriptor left open; a complete
    upload of a model right after works."""
    api_pid = farm.api.popen.pid
    with farm.http() as http:
        http.get("/readyz")  # connections and the read cache settle before counting descriptors
        before = _open_fds(api_pid)
        for _ in range(5):
            _abandoned_upload(farm.port, 20 * MIB, 6 * MIB)
        assert http.get("/healthz").status_code == 200
        wait_for(lambda: _open_fds(api_pid) <= before, timeout=10, what="the API closed what the uploads opened")
        stored = http.post("/v1/models", files={"file": ("m.onnx", matmul_model(tmp_path / "m.onnx").read_bytes())})
        assert stored.status_code == 201, stored.text
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Model)) == 1
    tmp = Path(farm.env.get("TMPDIR", "/tmp"))
    assert not list(tmp.glob(f"trtfarm-upload-{api_pid}.*"))
    assert not list((farm.home / "blobs").rglob(f"{PART_PREFIX}*"))
