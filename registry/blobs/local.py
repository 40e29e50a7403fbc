"""Blobs in a folder (the embedded mode).

Layout under ``root``: ``blobs/sha256/<ab>/<hex>`` (read-only files, mode 0o444), ``tmp/`` for
writes in progress and ``verified/`` for the stamps of verified blobs (``registry.blobs.stamps``). A write
goes to a fresh temp file in ``root/tmp`` while being hashed, is fsynced, made read-only, then
``os.replace``d into place and stamped: readers never see a partial blob, and two writers of the same blob
just replace identical bytes.

A whole-blob read of a blob whose open file still has its stamp's fingerprint is verified without hashing
(the bytes are those that were hashed); any other is hashed as it streams (on a second thread) and
quarantined on a mismatch, or stamped again.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from registry.atomic import temp_file
from registry.blobs.base import (
    BlobInfo,
    BlobStore,
    ChunkReader,
    _unlink_quietly,
    check_digest,
    check_range,
    mismatch,
    sha256_digest,
)
from registry.blobs.stamps import Stamps, backdate
from registry.digests import CHUNK, StreamHash
from registry.errors import BlobError, BlobNotFound, StoreFull

log = logging.getLogger(__name__)

BLOB_MODE = 0o444


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.tmp_dir = self.root / "tmp"
        self.stamps = Stamps(self.root, self.tmp_dir)

    # ---- paths ----------------------------------------------------------------------------------
    def path_for(self, digest: str) -> Path:
        """Where the blob lives (or would live) on disk."""
        return self.root / self.key_for(digest)

    # ---- writes ---------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> BlobInfo:
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        with open(path, "rb") as src:
            return self._ingest(iter(lambda: src.read(CHUNK), b""), expected_digest)

    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobInfo:
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        view = memoryview(data)
        return self._ingest((view[i : i + CHUNK] for i in range(0, len(view), CHUNK)), expected_digest)

    def _ingest(self, chunks: Iterable[bytes], expected_digest: str | None) -> BlobInfo:
        try:
            return self._write(chunks, expected_digest)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"the blob store {self.describe()} is full; nothing partial was kept. Free space "
                                "and try again") from None
            raise

    def _write(self, chunks: Iterable[bytes], expected_digest: str | None) -> BlobInfo:
        with temp_file(self.tmp_dir, prefix="put-") as tmp:
            h, size = hashlib.sha256(), 0
            for chunk in chunks:
                h.update(chunk)
                tmp.file.write(chunk)
                size += len(chunk)
            digest = sha256_digest(h)
            if expected_digest is not None and digest != expected_digest:
                raise mismatch(expected_digest, digest, size, where="upload rejected")
            final = self.path_for(digest)
            if final.exists():
                if self._existing_is_good(final, digest, size):
                    return BlobInfo(digest, size)  # write-once: leave the stored blob alone
                log.warning("blob %s in %s is corrupt on disk; replacing it", digest, self.describe())
            tmp.file.flush()
            backdate(tmp.file.fileno())  # after the last write, so that the blob can be stamped now
            tmp.commit(final, file_mode=BLOB_MODE, fsync=True)
            self.stamps.record(final.name, final.stat())  # after the rename, which moves its ctime
            return BlobInfo(digest, size)

    def _existing_is_good(self, path: Path, digest: str, size: int) -> bool:
        """Whether the stored blob is intact: stamped unchanged, or hashed (and stamped) now."""
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size != size:
                    return False
                if self.stamps.trusted(path.name, st):
                    return True
                h = hashlib.sha256()
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                good = sha256_digest(h) == digest
                if good and _unchanged(st, os.fstat(f.fileno())):
                    self.stamps.record(path.name, st)
                return good
        except FileNotFoundError:
            return False

    def delete(self, digest: str) -> None:
        _unlink_quietly(self.path_for(digest))
        self.stamps.forget(self.path_for(digest).name)

    def quarantine(self, digest: str) -> None:
        """Move a blob that does not match its digest to root/quarantine/ (kept for inspection)."""
        dest = self.root / "quarantine" / self.path_for(digest).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.stamps.forget(dest.name)
        try:
            os.replace(self.path_for(digest), dest)
        except FileNotFoundError:
            return
        log.error("blob %s in %s does not match its digest: moved to %s", digest, self.describe(), dest)

    # ---- reads ----------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path_for(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(
                f"blob {digest} is not in {self.describe()}", details={"digest": digest}
            ) from None

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        f = self._open(digest)
        return _read_chunks(f, start, end)

    def _open_stream(self, digest: str) -> tuple[int, Iterator[bytes]]:
        f = self._open(digest)  # size from the open handle: no window between stat and open
        return os.fstat(f.fileno()).st_size, _read_chunks(f, 0, None)

    def stream_verified(self, digest: str) -> Iterator[bytes]:
        """As BlobStore.stream_verified; an open file that still has its stamp's fingerprint is streamed as
        it is (its bytes are those that were verified), any other is hashed as it streams."""
        f, st, trusted = self._open_stamped(digest)
        return _read_chunks(f, 0, None) if trusted else self._hashing(digest, f, st)

    def verify(self, digest: str) -> None:
        """DigestMismatch (and the blob quarantined) unless the blob is stamped unchanged or hashes to its
        digest; BlobNotFound if absent. Reads nothing for a stamped blob."""
        f, st, trusted = self._open_stamped(digest)
        if trusted:
            f.close()
            return
        for _ in self._hashing(digest, f, st):
            pass

    def _open_stamped(self, digest: str) -> tuple[BinaryIO, os.stat_result, bool]:
        """(open blob, its stat, whether its stamp vouches for it); BlobNotFound if absent."""
        f = self._open(check_digest(digest))
        try:
            st = os.fstat(f.fileno())
            return f, st, self.stamps.trusted(digest[len("sha256:"):], st)
        except BaseException:
            f.close()
            raise

    def _hashing(self, digest: str, f: BinaryIO, st: os.stat_result) -> Iterator[bytes]:
        """The whole blob from `f`, hashed on a second thread as it streams; the last chunk is held back until
        the digest checks out: a mismatch quarantines the blob and raises instead; a match stamps it."""
        held = None
        try:
            with StreamHash(threaded=st.st_size > 2 * CHUNK) as h:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    if held is not None:
                        yield held
                    held = chunk
                actual = h.digest()
            if actual != digest or h.size != st.st_size:
                self.quarantine(digest)
                raise mismatch(digest, actual, h.size, where=f"{self.describe()} (quarantined)")
            if _unchanged(st, os.fstat(f.fileno())):  # not written to while it was read
                self.stamps.record(digest[len("sha256:"):], st)
        finally:
            f.close()
        if held is not None:
            yield held

    def _open(self, digest: str) -> BinaryIO:
        path = self.path_for(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(
                f"blob {digest} is not in {self.describe()}", details={"digest": digest}
            ) from None
        except IsADirectoryError:
            raise BlobError(f"{path} is a folder, not a blob") from None

    # ---- misc -----------------------------------------------------------------------------------
    def presigned_url(
        self, digest: str, expires_s: int = 3600, filename: str | None = None
    ) -> str | None:
        check_digest(digest)
        return None

    def local_path(self, digest: str) -> Path | None:
        check_digest(digest)
        path = self.path_for(digest)
        return path if path.is_file() else None

    def describe(self) -> str:
        return f"folder {self.root}"


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino, before.st_ctime_ns) == (
        after.st_size, after.st_mtime_ns, after.st_ino, after.st_ctime_ns)


def _read_chunks(f: BinaryIO, start: int, end: int | None) -> ChunkReader:
    try:
        if start:
            f.seek(start)
    except BaseException:
        f.close()
        raise
    remaining = None if end is None else max(0, end - start)
    return ChunkReader(f.read, f.close, remaining)

