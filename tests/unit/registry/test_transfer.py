"""Receiving an artifact (registry/transfer.py) against a real HTTP server on loopback, and the threaded
sha256 (registry.digests.StreamHash) it uses: every byte once, in order, whatever the body's framing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from registry import transfer
from registry.digests import StreamHash

BODY = os.urandom((3 << 20) + 4321)
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        if self.path == "/chunked":
            self.wfile.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(BODY), 300_000):
                part = BODY[i:i + 300_000]
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/gzip":
            packed = gzip.compress(BODY, compresslevel=1)
            self.wfile.write(head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed)
            return
        # headers and the first 100 kB in one write (h11 buffers part of the body with the headers), the rest in
        # pieces with pauses (many reads); /short stops half-way and hangs up
        end = len(BODY) // 2 if self.path in ("/short", "/stall") else len(BODY)
        self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:100_000])
        for i in range(100_000, end, 700_000):
            self.wfile.write(BODY[i:min(i + 700_000, end)])
            self.wfile.flush()
            time.sleep(0.002)
        if self.path == "/stall":
            time.sleep(2)
        if self.path in ("/short", "/stall"):
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.handle_error = lambda request, address: None  # type: ignore[method-assign] # clients that hang up
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def raw_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the body reads taken from the network stream itself (the fast path)."""
    reads: list[int] = []
    real = transfer._raw_stream

    class Counting:
        def __init__(self, stream: object) -> None:
            self.stream = stream

        def read(self, n: int, timeout: float | None = None) -> bytes:
            data = self.stream.read(n, timeout)  # type: ignore[attr-defined]
            reads.append(len(data))
            return data

    def wrapped(response: httpx.Response) -> object:
        stream = real(response)
        return None if stream is None else Counting(stream)

    monkeypatch.setattr(transfer, "_raw_stream", wrapped)
    return reads


def fetch(client: httpx.Client, url: str, limit: int = len(BODY)) -> tuple[str, int, bytes]:
    out = io.BytesIO()
    with client.stream("GET", url) as response:
        digest, size = transfer.receive(response, out, limit)
    return digest, size, out.getvalue()


def test_a_plain_body_is_read_from_the_network_stream_after_what_h11_buffered(url: str, raw_reads: list[int]) -> None:
    with httpx.Client() as client:
        assert fetch(client, f"{url}/plain") == (DIGEST, len(BODY), BODY)
        assert raw_reads and sum(raw_reads) < len(BODY)  # the first bytes came through httpx
        assert fetch(client, f"{url}/plain")[0] == DIGEST  # the connection it left unfinished is not reused


@pytest.mark.parametrize("path", ["/chunked", "/gzip"])
def test_other_framings_go_through_httpx(url: str, raw_reads: list[int], path: str) -> None:
    with httpx.Client() as client:
        assert fetch(client, url + path) == (DIGEST, len(BODY), BODY)
    assert raw_reads == []


def test_a_body_cut_short_is_a_transport_error(url: str) -> None:
    with httpx.Client() as client, pytest.raises(httpx.TransportError):
        fetch(client, f"{url}/short")


def test_a_body_that_stalls_times_out(url: str) -> None:
    with httpx.Client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        fetch(client, f"{url}/stall")


def test_reading_stops_past_the_limit(url: str) -> None:
    with httpx.Client() as client:
        digest, size, got = fetch(client, f"{url}/plain", limit=1 << 20)
    assert (1 << 20) < size < len(BODY) and digest != DIGEST and got == BODY[:size]


def test_a_mock_transport_has_no_network_stream() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200, content=BODY))
    with httpx.Client(transport=mock) as client:
        assert fetch(client, "http://farm/x") == (DIGEST, len(BODY), BODY)


@pytest.mark.parametrize("threaded", [True, False])
def test_stream_hash_is_sha256_of_the_chunks_in_order(threaded: bool) -> None:
    rng = random.Random(7)
    chunks, i = [], 0
    while i < len(BODY):
        n = rng.choice([0, 1, 17, 4096, 65536, 1 << 20, 3 << 20])
        chunks.append(memoryview(BODY)[i:i + n] if n % 2 else BODY[i:i + n])
        i += n
    with StreamHash(threaded=threaded) as h:
        for chunk in chunks:
            h.update(chunk)
        assert (h.digest(), h.size) == (DIGEST, len(BODY))
    h.close()  # closing again is harmless


def test_a_stream_hash_error_surfaces_in_digest() -> None:
    h = StreamHash(threaded=True)
    h.update(b"x" * (2 << 20))
    h.update("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        h.digest()
