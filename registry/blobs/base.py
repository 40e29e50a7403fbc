"""The blob store contract: content-addressed, write-once, verified on read.

Keys are ``blobs/sha256/<ab>/<hex>`` (``ab`` = the first two hex characters). Every public method
validates its digest with :func:`registry.digests.is_digest` first, so a key can only ever be built from
64 lowercase hex characters: no path traversal, no odd object names.

Digests are always computed from the bytes as they stream by (never from an S3 ETag).
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from registry.atomic import temp_file
from registry.digests import CHUNK, is_digest
from registry.errors import BlobError, DigestMismatch, FarmError

log = logging.getLogger(__name__)

_DIGEST_LEN = len("sha256:") + 64


@dataclass(frozen=True)
class BlobInfo:
    digest: str  # "sha256:<hex>"
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def check_digest(digest: object, what: str = "digest") -> str:
    """Return ``digest`` if it is exactly ``sha256:<64 lowercase hex>``, else raise BlobError."""
    if not (isinstance(digest, str) and len(digest) == _DIGEST_LEN and is_digest(digest)):
        shown = repr(digest)
        if len(shown) > 100:
            shown = shown[:97] + "..."
        raise BlobError(
            f"invalid {what} {shown}: expected 'sha256:' followed by 64 lowercase hex characters",
            details={"digest": shown},
        )
    return digest


def check_range(start: int, end: int | None) -> None:
    if not isinstance(start, int) or start < 0:
        raise BlobError(f"invalid range start {start!r}: must be an integer >= 0")
    if end is not None and (not isinstance(end, int) or end < 0):
        raise BlobError(f"invalid range end {end!r}: must be an integer >= 0 or None")


def sha256_digest(h: hashlib._Hash) -> str:  # type: ignore[name-defined]
    return "sha256:" + h.hexdigest()


def mismatch(digest: str, actual: str, size: int, *, where: str) -> DigestMismatch:
    return DigestMismatch(
        f"{where}: the bytes hash to {actual} ({size} bytes), not to {digest}",
        details={"expected": digest, "actual": actual, "size": size},
    )


class StreamedPut:
    """A blob sent while its file still arrives (BlobStore.begin_stream), under the digest its sender claimed:
    the receiver calls grow(size) as bytes reach the file and finish(size) at its end; begin_puts(files,
    streams) then takes it over, to commit() (make it visible) or abort() it. `started`: whether anything was
    sent (a small file may never start one: then it is stored the usual way)."""

    started = False

    def grow(self, size: int) -> None:
        pass

    def finish(self, size: int) -> None:
        pass

    def commit(self) -> BlobInfo:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class PendingPuts:
    """Blob writes begun while the caller still decides whether it wants them (BlobStore.begin_puts): commit()
    stores every file and returns their BlobInfo; abort() leaves nothing behind that commit() did not finish
    (it may follow a commit() that failed). This default does all the work in commit(): each file not stored
    yet goes in with put_file (or its started stream is committed)."""

    def __init__(self, store: BlobStore, files: Sequence[tuple[Path, str]],
                 streams: Mapping[Path, StreamedPut] | None = None) -> None:
        self.store, self.files = store, list(files)
        self.streams = {Path(p): s for p, s in (streams or {}).items() if s.started}

    def commit(self) -> list[BlobInfo]:
        try:
            infos = [stream.commit() for stream in self.streams.values()]
            for path, digest in self.files:
                if Path(path) in self.streams:
                    continue
                if self.store.exists(digest):
                    infos.append(BlobInfo(digest, os.stat(path).st_size))
                else:
                    infos.append(self.store.put_file(path, expected_digest=digest))
        except BaseException:
            self.abort()
            raise
        return infos

    def abort(self) -> None:
        for stream in self.streams.values():
            stream.abort()


class BlobStore(ABC):
    """Abstract content-addressed blob store. Subclasses: LocalBlobStore, S3BlobStore."""

    # ---- keys -----------------------------------------------------------------------------------
    @staticmethod
    def key_for(digest: str) -> str:
        """``blobs/sha256/<ab>/<hex>`` for ``sha256:<hex>`` (validated)."""
        hexpart = check_digest(digest)[len("sha256:") :]
        return f"blobs/sha256/{hexpart[:2]}/{hexpart}"

    # ---- writes ---------------------------------------------------------------------------------
    @abstractmethod
    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> BlobInfo:
        """Store the file's bytes under their sha256 (hashed while reading) and return its BlobInfo.

        Write-once: if a blob with that digest is already stored, it is not rewritten and its info is
        returned. Raises DigestMismatch (storing nothing) if ``expected_digest`` is given and differs.
        """

    @abstractmethod
    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobInfo:
        """Like :meth:`put_file` for bytes in memory."""

    def begin_puts(self, files: Sequence[tuple[Path, str]],
                   streams: Mapping[Path, StreamedPut] | None = None) -> PendingPuts:
        """Start storing `files`, each (path, the sha256 digest the caller computed; checked as it is stored),
        while the caller decides whether to keep them: nothing is visible to readers before commit(), and
        abort() leaves nothing behind. A store may send the bytes meanwhile (S3 uploads large files' parts,
        completing the uploads only on commit); this default does everything in commit(). `streams`: files
        already being sent as they arrived (begin_stream), by path; they are committed or aborted with the rest."""
        return PendingPuts(self, files, streams)

    def begin_stream(self, path: Path, digest: str) -> StreamedPut | None:
        """Start sending the file at `path` while it is still being written, under the `digest` its sender
        claims (checked as it is sent); None where the store does not (this default: the folder store)."""
        return None

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a blob (no error if absent).

        Only for cleaning up a blob that nothing references after a failed transaction: blobs are
        otherwise immutable.
        """

    def quarantine(self, digest: str) -> None:
        """Take a blob whose bytes do not hash to its digest out of service: later reads find nothing
        (BlobNotFound) and a re-upload or rebuild stores a good copy. This store deletes it."""
        log.error("blob %s in %s does not match its digest: deleted", digest, self.describe())
        self.delete(digest)

    # ---- reads ----------------------------------------------------------------------------------
    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def size(self, digest: str) -> int:
        """Stored size in bytes; BlobNotFound if absent."""

    @abstractmethod
    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes ``[start, end)`` (``end`` exclusive, Python slice style; None = to the end).

        BlobNotFound is raised by the call itself (not at the first ``next``), so an HTTP handler can
        answer 404 before it sends headers. ``end`` past the blob is clamped; an empty range yields
        nothing. Range reads are NOT verified (only whole-blob reads can be); use get_to_file or
        get_bytes when the bytes must be trusted.
        """

    def stream_verified(self, digest: str) -> Iterator[bytes]:
        """The whole blob, hashed as it streams; the last chunk is held back until the digest is checked.
        On a mismatch the blob is quarantined and DigestMismatch raised instead of the last bytes, so a
        reader (an HTTP client) never receives the complete wrong blob. BlobNotFound comes at the call."""
        size, chunks = self._open_stream(check_digest(digest))

        def verified() -> Iterator[bytes]:
            h, n, held = hashlib.sha256(), 0, None
            try:
                for chunk in chunks:
                    h.update(chunk)
                    n += len(chunk)
                    if held is not None:
                        yield held
                    held = chunk
            finally:
                _close(chunks)
            if sha256_digest(h) != digest or n != size:
                self.quarantine(digest)
                raise mismatch(digest, sha256_digest(h), n, where=f"{self.describe()} (quarantined)")
            if held is not None:
                yield held

        return verified()

    def verify(self, digest: str) -> None:
        """DigestMismatch (and the blob quarantined) unless the stored blob hashes to its digest; BlobNotFound
        if absent. A store that can prove a blob unchanged since it was verified may skip the read."""
        for _ in self.stream_verified(digest):
            pass

    def _open_stream(self, digest: str) -> tuple[int, Iterator[bytes]]:
        """(stored size, chunks of the whole blob). Subclasses may do this in one request."""
        size = self.size(digest)
        return size, self.open_range(digest)

    def get_to_file(
        self,
        digest: str,
        dest_path: str | os.PathLike[str],
        *,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """Download into a temp file beside ``dest_path``, verify sha256 and size while writing, fsync,
        then atomically rename onto ``dest_path``.

        On a mismatch raises DigestMismatch and leaves ``dest_path`` as it was (not created).
        """
        check_digest(digest)
        dest = Path(dest_path)
        size, chunks = self._open_stream(digest)
        try:
            if expected_size is not None and size != expected_size:
                raise DigestMismatch(
                    f"blob {digest} is stored with {size} bytes, expected {expected_size}",
                    details={"digest": digest, "size": size, "expected_size": expected_size},
                )
            with temp_file(dest.parent, prefix=f".{dest.name}.part-") as tmp:
                h, n = _copy_verifying(chunks, tmp.file.write, digest, size, where=self.describe())
                tmp.commit(dest, file_mode=0o644, fsync=True)
        finally:
            _close(chunks)
        return BlobInfo(digest, n)

    def get_bytes(self, digest: str) -> bytes:
        """The whole blob, verified against its digest (DigestMismatch otherwise)."""
        check_digest(digest)
        size, chunks = self._open_stream(digest)
        parts: list[bytes] = []
        try:
            _copy_verifying(chunks, parts.append, digest, size, where=self.describe())
        finally:
            _close(chunks)
        return b"".join(parts)

    # ---- misc -----------------------------------------------------------------------------------
    @abstractmethod
    def presigned_url(
        self, digest: str, expires_s: int = 3600, filename: str | None = None
    ) -> str | None:
        """A URL a client can GET directly, or None when the store has none (the folder store)."""

    def local_path(self, digest: str) -> Path | None:
        """The blob's file, for a reader on this host (the folder store), or None. The reader hashes it."""
        check_digest(digest)
        return None

    @abstractmethod
    def describe(self) -> str:
        """A short human description for logs, e.g. ``folder /var/lib/trtfarm/blobs``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _copy_verifying(
    chunks: Iterable[bytes], write: Callable[[bytes], object], digest: str, size: int, *, where: str
) -> tuple[hashlib._Hash, int]:  # type: ignore[name-defined]
    h, n = hashlib.sha256(), 0
    for chunk in chunks:
        n += len(chunk)
        if n > size:
            raise DigestMismatch(
                f"{where}: blob {digest} yielded more than its stored size of {size} bytes",
                details={"digest": digest, "size": size},
            )
        h.update(chunk)
        write(chunk)
    actual = sha256_digest(h)
    if n != size or actual != digest:
        raise mismatch(digest, actual, n, where=f"{where}: stored blob is corrupt")
    return h, n


class ChunkReader(Iterator[bytes]):
    """Iterator of chunks over ``read(n)``; closes its source when exhausted, on error, or on close().

    (A generator would not run its cleanup if it were closed before its first ``next``.)
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        remaining: int | None = None,
        *,
        chunk_size: int = CHUNK,
        wrap_error: Callable[[Exception], Exception] | None = None,
    ) -> None:
        self._read = read
        self._close_source = close
        self._remaining = remaining
        self._chunk_size = chunk_size
        self._wrap_error = wrap_error
        self._closed = False

    def __iter__(self) -> ChunkReader:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        n = self._chunk_size if self._remaining is None else min(self._chunk_size, self._remaining)
        if n <= 0:
            self.close()
            raise StopIteration
        try:
            data = self._read(n)
        except Exception as e:
            self.close()
            if self._wrap_error is not None and not isinstance(e, FarmError):
                raise self._wrap_error(e) from e
            raise
        if not data:
            self.close()
            raise StopIteration
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_source()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with suppress(Exception):  # pragma: no cover - a finalizer must not raise
            self.close()


def _close(it: object) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        with suppress(Exception):  # pragma: no cover - best effort
            close()


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


__all__ = ["BlobInfo", "BlobStore", "ChunkReader", "PendingPuts", "StreamedPut", "check_digest", "CHUNK"]
