"""The SDK's local files: model digests remembered by path, cached engines verified once per change, and
copies in and out. Standard library only (the SDK uses it).

Digests by path, as git's index remembers blob ids: a model file whose size, modification time and inode
are unchanged is not read again, so `Farm.fetch(path)` on a repeat costs a few `stat` calls instead of
hashing (and parsing) a model of hundreds of megabytes. One small JSON file per model path under
`<cache_dir>/paths/`: the layout (every file of the model, the .onnx first, with external data) with each
file's stat fingerprint and digest. A file changed, gone, or modified within the last RACY_S seconds when
hashed ("racy git": a change in the same clock tick would keep its stat), or an unreadable record:
everything is computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from registry.atomic import atomic_file
from registry.digests import CHUNK, digest_of_file

RACY_S = 2.0

Layout = list[tuple[str, Path, str, int]]  # (relative path, local path, digest, size)


def default_cache_dir() -> Path:
    """The SDK's cache folder unless one is given: TRTFARM_CACHE, else ~/.cache/trtfarm."""
    return Path(os.environ.get("TRTFARM_CACHE") or "~/.cache/trtfarm").expanduser()


def stamp_path(cache_dir: Path, engine: Path) -> Path:
    """Where the stat of a verified cached engine is kept (cache_dir/verified/<file name>)."""
    return cache_dir / "verified" / engine.name


def fingerprint(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"


class PathDigests:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def layout(self, path: Path, compute: Callable[[], Layout]) -> Layout:
        """The model's files and digests: remembered when no file changed since, else `compute()`d."""
        record = self.folder / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()}.json"
        found = self._read(record)
        if found is not None:
            return found
        layout = compute()
        if any(local.stat().st_mtime > time.time() - RACY_S for _, local, _, _ in layout):
            return layout  # too fresh to trust its stat next time
        with suppress(OSError), atomic_file(record, "w") as f:
            json.dump([[rel, str(local), fingerprint(local.stat()), digest, size]
                       for rel, local, digest, size in layout], f)
        return layout

    @staticmethod
    def _read(record: Path) -> Layout | None:
        try:
            entries = json.loads(record.read_text())
            layout = []
            for rel, local, seen, digest, size in entries:
                if fingerprint(os.stat(local)) != seen:
                    return None
                layout.append((rel, Path(local), digest, size))
            return layout or None
        except (OSError, ValueError, TypeError):
            return None


def cached_ok(path: Path, digest: str, size: int, verify: bool, stamp: Path) -> bool:
    """Whether the cached engine is intact. Its sha256 is checked again unless the file is exactly as it
    was when last verified (size, mtime, inode, recorded in `stamp`), or always with `verify`; a corrupt
    entry is removed (and downloaded again by the caller)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != size:
        return False
    if not verify and stamp.is_file() and stamp.read_text() == fingerprint(stat):
        return True
    if digest_of_file(path)[0] != digest:
        for bad in (path, stamp):
            with suppress(OSError):
                bad.unlink()
        return False
    mark_verified(path, stamp)
    return True


def mark_verified(path: Path, stamp: Path) -> None:
    """Record the stat of a file whose sha256 was just checked: an unchanged file needs no rehash."""
    with suppress(OSError), atomic_file(stamp, "w") as f:
        f.write(fingerprint(path.stat()))


def copy_out(blob: Path, dest: Path, filename: str) -> Path:
    """Copy a cached engine to `dest` (a file path, or a folder to put it in as `filename`); atomic; writable."""
    if dest.is_dir():
        dest = dest / filename
    with atomic_file(dest, "wb") as out, open(blob, "rb") as src:
        shutil.copyfileobj(src, out, CHUNK)
    return dest
