"""Atomic file writes: a temp file beside (or near) the destination, renamed into place only once the
write succeeded; on any failure the temp file is removed and the destination is untouched.

    with atomic_file(dest, "wb", file_mode=0o444) as f:     # destination known up front
        f.write(data)

    with temp_file(folder, prefix="put-") as tmp:           # destination known only after writing
        tmp.file.write(data)                                #   (a content-addressed blob)
        tmp.commit(folder / digest, file_mode=0o444, fsync=True)

Standard library only: the SDK uses it with nothing else installed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

PART_PREFIX = ".part-"  # temp files the SDK and the stores leave only when killed mid-write
_WRITER = re.compile(r"^(?P<pid>[0-9]+)\.(?P<host>[0-9a-f]{8})\.")


def writer_tag() -> str:
    """`<pid>.<host key>.`: put after a temp entry's prefix, it lets `sweep` remove the entry as soon as its
    writer is gone (same host, process not alive) instead of waiting for it to go idle."""
    return f"{os.getpid()}.{_host_key()}."


def _host_key() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _writer_gone(name: str, prefix: str) -> bool:
    m = _WRITER.match(name[len(prefix):]) if name.startswith(prefix) else None
    if m is None or m["host"] != _host_key():
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


class TempFile:
    """An open temp file that becomes a real file only through `commit`."""

    def __init__(self, folder: Path, mode: str, prefix: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix + writer_tag())
        self.path = Path(name)
        self.file: IO[Any] = os.fdopen(fd, mode)
        self.committed = False

    def commit(self, dest: Path, *, file_mode: int | None = None, fsync: bool = False) -> Path:
        """Close the temp file and rename it onto `dest` (same file system)."""
        if fsync:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        if file_mode is not None:
            os.chmod(self.path, file_mode)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dest)
        if fsync:
            fsync_dir(dest.parent)
        self.committed = True
        return dest

    def discard(self) -> None:
        with suppress(OSError):
            self.file.close()
        with suppress(FileNotFoundError):
            os.unlink(self.path)


@contextmanager
def temp_file(folder: Path, mode: str = "wb", *, prefix: str = PART_PREFIX) -> Iterator[TempFile]:
    """A TempFile in `folder`; removed at the end of the block unless committed."""
    tmp = TempFile(folder, mode, prefix)
    try:
        yield tmp
    finally:
        if not tmp.committed:
            tmp.discard()


@contextmanager
def atomic_file(dest: Path, mode: str = "wb", *, file_mode: int | None = None,
                fsync: bool = False) -> Iterator[IO[Any]]:
    """Write `dest` through a temp file beside it, renamed into place only when the block succeeds."""
    dest = Path(dest)
    with temp_file(dest.parent, mode) as tmp:
        yield tmp.file
        tmp.commit(dest, file_mode=file_mode, fsync=fsync)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)



def sweep(folder: Path, pattern: str, idle_s: float, *, recursive: bool = False) -> int:
    """Remove what killed writers left behind: entries of `folder` matching `pattern` (`PREFIX*`, files or
    folders) whose writer process on this host is gone (a `writer_tag()` after the prefix), or that were
    untouched for `idle_s` seconds. A live writer keeps touching its entry, so it is left alone."""
    cutoff, removed, prefix = time.time() - idle_s, 0, pattern.rstrip("*")
    for path in (folder.rglob(pattern) if recursive else folder.glob(pattern)):
        with suppress(OSError):
            if path.lstat().st_mtime >= cutoff and not _writer_gone(path.name, prefix):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed
