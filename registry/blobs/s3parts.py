"""Multipart uploads of the S3 blob store (registry.blobs.s3), in bounded memory.

- Parts are cut from the file in order, 1 MiB at a time: each read updates the whole blob's sha256 (checked
  against its key before the upload may complete), the part's sha256 (its ``ChecksumSHA256``, which S3
  verifies) and the part's CRC-32.
- A part's body is a :class:`Window` over the file (``os.pread``): botocore streams it from the page
  cache, so memory is a few read buffers whatever the part size and however many parts are in flight
  (up to ``max_concurrency``). A window keeps the CRC-32 of the last full pass read through it, the bytes
  that were sent; one that differs from the CRC taken while hashing means the file changed underneath the
  upload (caught here even where the endpoint does not check ``ChecksumSHA256``).
- :class:`StagedPuts` uploads the parts of large files in a background thread and completes the uploads
  (makes the objects visible) only when the caller commits: the API checks a model meanwhile, and an upload
  it refuses is aborted, leaving nothing in the bucket and touching no other upload's blob.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.blobs.base import BlobInfo, PendingPuts, StreamedPut, mismatch, sha256_digest
from registry.digests import CHUNK
from registry.errors import BlobError

if TYPE_CHECKING:
    from registry.blobs.s3 import S3BlobStore

MAX_PARTS = 10_000
ReadAt = Callable[[int, int], bytes]  # (size, offset) -> bytes, as os.pread


def changed(what: str) -> BlobError:
    return BlobError(f"the file changed while it was being uploaded ({what}); nothing was stored")


class Window:
    """A seekable, read-only view of bytes [start, start + length) of a source read with ``read_at``
    (``os.pread`` on a descriptor: windows over one file are read by several threads at once)."""

    def __init__(self, read_at: ReadAt, start: int, length: int) -> None:
        self._read_at, self._start, self._length = read_at, start, length
        self._pos = self._crc_pos = self._crc = 0
        self.sent_crc: int | None = None if length else 0  # the CRC-32 of the last pass read from 0 to the end

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = min(base + offset, self._length)
        if self._pos == 0:  # a new pass (botocore signs the body, then rewinds and sends it)
            self._crc_pos, self._crc = 0, 0
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._pos
        size = left if size is None or size < 0 else min(size, left)
        if size <= 0:
            return b""
        data = self._read_at(size, self._start + self._pos)
        if len(data) != size:
            raise changed(f"{self._start + self._pos + len(data)} bytes where there were more")
        if self._crc_pos == self._pos:
            self._crc, self._crc_pos = zlib.crc32(data, self._crc), self._pos + size
            if self._crc_pos == self._length:
                self.sent_crc = self._crc
        self._pos += size
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Part:
    """What ``S3BlobStore._upload_part`` sends: a window, its sha256 (base64) and its CRC-32."""

    number: int
    body: Window
    checksum: str
    crc: int


def cut(read_at: ReadAt, size: int, chunksize: int, whole: Any, checksums: bool = True) -> Iterator[Part]:
    """The parts of a source of `size` bytes, hashed in order into `whole` as they are cut; each part's
    sha256 (base64) only with `checksums` (one part that is the whole needs none of its own)."""
    for number, start in enumerate(range(0, size, chunksize), 1):
        yield _part(read_at, number, start, min(start + chunksize, size), whole, checksums)


def cut_growing(read_at: ReadAt, source: Growing, chunksize: int, whole: Any) -> Iterator[Part]:
    """The parts of a file that is still being written, each cut once its bytes are there (`source` says)."""
    start = 0
    for number in range(1, MAX_PARTS + 1):
        end = source.wait_for(start + chunksize)
        if end == start:  # it ended at the last part's end
            return
        yield _part(read_at, number, start, end, whole, True)
        if end - start < chunksize:
            return
        start = end
    raise BlobError(f"more than {MAX_PARTS} parts of {chunksize} bytes: too large to upload while it arrives")


def _part(read_at: ReadAt, number: int, start: int, end: int, whole: Any, checksums: bool) -> Part:
    import base64

    part, crc, pos = hashlib.sha256() if checksums else None, 0, start
    while pos < end:
        data = read_at(min(CHUNK, end - pos), pos)
        if not data:
            raise changed(f"it ended at {pos} bytes, before {end}")
        whole.update(data)
        if part is not None:
            part.update(data)
        crc = zlib.crc32(data, crc)
        pos += len(data)
    checksum = base64.b64encode(part.digest()).decode("ascii") if part is not None else ""
    return Part(number, Window(read_at, start, end - start), checksum, crc)


class Growing:
    """How much of a file its writer has written (`grow`), and whether it is complete (`finish`)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.written, self.final, self.cancelled = 0, None, False

    def grow(self, size: int, final: bool = False) -> None:
        with self.cond:
            self.written = size
            self.final = size if final else None
            self.cond.notify_all()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def wait_for(self, offset: int) -> int:
        """min(offset, the file's size), once that many bytes are written or the file is complete."""
        with self.cond:
            while self.written < offset and self.final is None and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                raise BlobError("the upload was cancelled")
            return min(offset, self.written)


def upload_parts(store: S3BlobStore, key: str, upload_id: str, parts: Iterator[Part], whole: Any, digest: str,
                 claimed: bool, cancel: threading.Event | None = None) -> list[dict[str, Any]]:
    """Upload `parts` (cut from the source while hashing it into `whole`), at most ``store.max_concurrency``
    at once; the parts' descriptions for CompleteMultipartUpload. DigestMismatch when a `claimed` digest is
    wrong, BlobError when the source changed; BlobError("cancelled") once `cancel` is set."""
    futures: list[Future[dict[str, Any]]] = []
    size = 0
    with ThreadPoolExecutor(max_workers=store.max_concurrency, thread_name_prefix="s3-part") as pool:
        try:
            for part in parts:
                size += len(part.body)
                _wait_for_room(futures, store.max_concurrency)
                if cancel is not None and cancel.is_set():
                    raise BlobError("the upload was cancelled")
                futures.append(pool.submit(_send, store, key, upload_id, part))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        described = [fut.result() for fut in futures]
    actual = sha256_digest(whole)
    if actual != digest and claimed:  # the caller's digest was wrong, not the file changing
        raise mismatch(digest, actual, size, where="upload rejected")
    if actual != digest:
        raise BlobError(
            f"the file changed while it was being uploaded: it hashed to {digest} and then to {actual}; "
            "nothing was stored", details={"expected": digest, "actual": actual})
    return described


def chunksize_for(store: S3BlobStore, size: int) -> int:
    return max(store.multipart_chunksize, math.ceil(size / MAX_PARTS))


def _wait_for_room(futures: list[Future[dict[str, Any]]], most: int) -> None:
    """Block while `most` parts are in flight; raise the first failed part's error."""
    pending = [fut for fut in futures if not fut.done()]
    while len(pending) >= most:
        wait(pending, return_when=FIRST_COMPLETED)
        pending = [fut for fut in pending if not fut.done()]
    for fut in futures:
        if fut.done() and fut.exception() is not None:
            fut.result()


def _send(store: S3BlobStore, key: str, upload_id: str, part: Part) -> dict[str, Any]:
    answer = store._upload_part(key, upload_id, part.number, part)
    if part.body.sent_crc != part.crc:
        raise changed(f"part {part.number} was sent with other bytes than were hashed")
    return answer


@dataclass
class _Staged:
    path: Path
    digest: str
    size: int = 0
    upload_id: str | None = None  # None: nothing to complete (a good copy is stored already)
    overwrite: bool = False
    parts: list[dict[str, Any]] = field(default_factory=list)

    def complete(self, store: S3BlobStore) -> BlobInfo:
        """Make the staged upload visible (the write-once rules of S3BlobStore._complete)."""
        upload_id = self.upload_id
        if upload_id is None:
            return BlobInfo(self.digest, self.size)
        key = store.object_key(self.digest)
        outcome = store._complete(key, upload_id, self.parts, self.digest, self.size, self.overwrite)
        self.upload_id = None
        if outcome != "completed":  # "stored": a good copy appeared meanwhile; "refused": someone else's won
            store._abort_upload(key, upload_id)
            if outcome == "refused":  # the write-once path settles it (HEAD, or write again)
                return store.put_file(self.path, expected_digest=self.digest)
        return BlobInfo(self.digest, self.size)

    def abort(self, store: S3BlobStore) -> None:
        if self.upload_id is not None:
            store._abort_upload(store.object_key(self.digest), self.upload_id)
            self.upload_id = None


class StagedPuts(PendingPuts):
    """Files of at least ``store.stage_threshold`` bytes go up in a background thread (one file after another,
    each in concurrent parts) while the caller decides; files sent while they arrived (started `streams`)
    are completed with them; the rest is stored by commit()."""

    def __init__(self, store: S3BlobStore, files: Sequence[tuple[Path, str]],
                 streams: Mapping[Path, StreamedPut] | None = None) -> None:
        self.store = store
        self.streams = [s for s in (streams or {}).values() if s.started]
        streamed = {p for p, s in (streams or {}).items() if s.started}
        rest = [(Path(p), d) for p, d in files if Path(p) not in streamed]
        self.large = [(p, d) for p, d in rest if os.stat(p).st_size >= store.stage_threshold]
        self.small = [(p, d) for p, d in rest if os.stat(p).st_size < store.stage_threshold]
        self.staged: list[_Staged] = []
        self.cancel = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="s3-stage", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for path, digest in self.large:
                if not self.cancel.is_set():
                    self._stage(path, digest)
        except BaseException as exc:  # noqa: BLE001 - raised again by commit()
            self.error = exc

    def _stage(self, path: Path, digest: str) -> None:
        store, staged = self.store, _Staged(path, digest)
        self.staged.append(staged)  # before any upload exists, so that abort() sees it
        fd = os.open(path, os.O_RDONLY)
        try:
            staged.size = size = os.fstat(fd).st_size
            read_at = functools.partial(os.pread, fd)
            state = store._existing_state(digest, size)
            if state is None:  # stored already: this file must be that blob before we say so
                store._verify_claim(read_at, size, digest)
                return
            staged.overwrite = state
            staged.upload_id = store._create_upload(digest)
            whole = hashlib.sha256()
            parts = cut(read_at, size, chunksize_for(store, size), whole)
            staged.parts = upload_parts(store, store.object_key(digest), staged.upload_id, parts, whole, digest,
                                        claimed=True, cancel=self.cancel)
            if os.fstat(fd).st_size != size:
                raise changed(f"{size} bytes became {os.fstat(fd).st_size}")
        finally:
            os.close(fd)

    def commit(self) -> list[BlobInfo]:
        try:
            self.thread.join()
            if self.error is not None:
                raise self.error
            infos = [staged.complete(self.store) for staged in self.staged]
            infos += [stream.commit() for stream in self.streams]
            for path, digest in self.small:
                if not self.store.exists(digest):
                    self.store.put_file(path, expected_digest=digest)
                infos.append(BlobInfo(digest, os.stat(path).st_size))
        except BaseException:
            self.abort()
            raise
        return infos

    def abort(self) -> None:
        self.cancel.set()
        self.thread.join()  # parts in flight finish first (S3 may keep a part that lands after an abort)
        for staged in self.staged:
            staged.abort(self.store)
        for stream in self.streams:
            stream.abort()


class StreamedUpload(StreamedPut):
    """A file sent while it arrives, under the digest its sender claimed: once ``stage_threshold`` bytes are
    written, a thread starts the multipart upload and cuts each part as soon as its bytes are in the file
    (hashing them: the claim is checked at the end). Completed by commit(), never before."""

    def __init__(self, store: S3BlobStore, path: Path, digest: str) -> None:
        self.store, self.staged, self.source = store, _Staged(Path(path), digest), Growing()
        self.cancel = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self.thread is not None

    def grow(self, size: int) -> None:
        self.source.grow(size)
        if self.thread is None and size >= self.store.stage_threshold:
            self.thread = threading.Thread(target=self._run, name="s3-stream", daemon=True)
            self.thread.start()

    def finish(self, size: int) -> None:
        self.source.grow(size, final=True)

    def _run(self) -> None:
        store, staged = self.store, self.staged
        try:
            with open(staged.path, "rb") as f:
                state = store._existing_state(staged.digest, None)
                if state is None:  # stored already (its sha256 metadata says so); the sender's bytes are
                    staged.size = self.source.wait_for(1 << 62)  # checked against the claim by the receiver
                    return
                staged.overwrite = state
                staged.upload_id = store._create_upload(staged.digest)
                whole = hashlib.sha256()
                parts = cut_growing(functools.partial(os.pread, f.fileno()), self.source, store.multipart_chunksize,
                                    whole)
                staged.parts = upload_parts(store, store.object_key(staged.digest), staged.upload_id, parts, whole,
                                            staged.digest, claimed=True, cancel=self.cancel)
                staged.size = self.source.wait_for(1 << 62)
        except BaseException as exc:  # noqa: BLE001 - raised again by commit()
            self.error = exc

    def commit(self) -> BlobInfo:
        try:
            if self.thread is not None:
                self.thread.join()
            if self.error is not None:
                raise self.error
            return self.staged.complete(self.store)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.cancel.set()
        self.source.cancel()
        if self.thread is not None:
            self.thread.join()
        self.staged.abort(self.store)
