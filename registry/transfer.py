"""Receiving an artifact into a file: the body is written as it arrives while a second thread hashes it
(hashlib lets go of the GIL), so that the SDK's sha256 check overlaps the transfer instead of following
it. httpx (and its httpcore) and the standard library only: the SDK uses it.

A plain HTTP/1.1 body of known length (no transfer or content coding) is read from the connection's
network stream in reads of up to `CHUNK`, once httpx has handed over the bytes it had already buffered
with the headers: h11's parsing of every 64 KiB read costs four copies of each byte and about as much
CPU as the hash. httpx then sees an unfinished response and closes that connection instead of reusing it.
Anything else (HTTP/2, chunked or compressed bodies, a transport without a network stream such as a test's
MockTransport) is read through `iter_raw`/`iter_bytes`. Either way the caller compares the digest and
size with what the farm announced, so a byte missed or taken twice could only fail a download, never
pass a wrong one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import httpcore
import httpx

from registry.digests import CHUNK, StreamHash

THREADED_FROM = 2 * CHUNK  # smaller bodies are hashed inline: a thread would cost more than it saves


def receive(response: httpx.Response, out: IO[bytes], limit: int) -> tuple[str, int]:
    """Write a response's body to `out`, hashing it: ("sha256:<hex>", size). Stops reading once past `limit`
    bytes (it can only be a mismatch then). A broken-off body raises an httpx.TransportError."""
    with StreamHash(threaded=limit >= THREADED_FROM) as h:
        for chunk in body_chunks(response):
            h.update(chunk)
            out.write(chunk)
            if h.size > limit:
                break
        return h.digest(), h.size


def body_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The response body as it arrives, in the largest pieces available (see the module text)."""
    stream = _raw_stream(response)
    if stream is None:
        yield from response.iter_bytes()  # decoded, whatever the framing
        return
    length = int(response.headers["content-length"])
    chunks = response.iter_raw()
    first = next(chunks, b"")  # what h11 buffered with the headers (or the first read): nothing is left there
    got = len(first)
    if first:
        yield first
    if got >= length:
        yield from chunks  # all of it came with the headers: let h11 finish, the connection stays usable
        return
    timeout = _read_timeout(response)
    while got < length:
        try:
            data = stream.read(min(CHUNK, length - got), timeout)
        except httpcore.TimeoutException as exc:
            raise httpx.ReadTimeout(f"no byte of the body for {timeout} s: {exc}", request=response.request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.ReadError(f"reading the body: {exc}", request=response.request) from exc
        if not data:
            raise httpx.RemoteProtocolError(f"the server closed the connection after {got} of {length} bytes",
                                            request=response.request)
        got += len(data)
        yield data


def _raw_stream(response: httpx.Response) -> Any:
    """The connection's network stream when the body can be read from it as it is, else None."""
    length = response.headers.get("content-length", "")
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if (response.http_version != "HTTP/1.1" or "transfer-encoding" in response.headers or coding != "identity"
            or not length.isdigit() or int(length) <= CHUNK or response.is_stream_consumed):
        return None  # a small body: h11's cost is nothing, and the connection stays usable
    stream = response.extensions.get("network_stream")
    return stream if callable(getattr(stream, "read", None)) else None


def _read_timeout(response: httpx.Response) -> float | None:
    timeouts = response.request.extensions.get("timeout") or {}
    return timeouts.get("read") if isinstance(timeouts, dict) else None
