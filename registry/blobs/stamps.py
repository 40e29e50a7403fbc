"""Verified-stamps of the folder store: proof that a blob file is unchanged since its bytes were hashed.

A stamp is a small file, ``<root>/verified/sha256/<ab>/<hex>``, holding the blob file's stat fingerprint
(size, mtime, inode, ctime in nanoseconds) taken when its sha256 was last checked: by the write that
stored it, or by a whole-blob read (`stream_verified`, `verify`) that hashed it. A read whose open file
still has that fingerprint counts as verified without hashing again, as git's index trusts a file whose
stat is unchanged. Anything that changes the file changes its fingerprint: a write or truncate (mtime,
ctime), a restored mtime (ctime), a replaced file (inode), chmod (ctime); then the blob is hashed as it is
read, quarantined if it no longer matches its digest, and stamped again if it does. Silent media
corruption does not change a stat: that is what the SDK's own check of every download is for.

"Racy" stamps: a change within the same clock tick as the stat could keep the fingerprint. So a stamp is
only written for a file whose mtime is at least RACY_NS in the past, and the store sets a blob's mtime
that far back when it writes it (a content-addressed blob's mtime means nothing else), so a later write
always moves it. Stamps are best effort: one that cannot be written or read means the next read hashes.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from pathlib import Path

from registry.atomic import temp_file

RACY_NS = 2_000_000_000


def fingerprint(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def settled(st: os.stat_result) -> bool:
    """Whether the file's mtime is old enough that a later change must move it (see the module text)."""
    return st.st_mtime_ns <= time.time_ns() - RACY_NS


def backdate(fd: int) -> None:
    """Set an open file's mtime RACY_NS in the past (after its last write): it can be stamped at once."""
    now = time.time_ns()
    os.utime(fd, ns=(now, now - RACY_NS))


class Stamps:
    """The stamps of one folder store (``root/verified``); temp files go to the store's ``tmp``."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.folder = root / "verified" / "sha256"
        self.tmp_dir = tmp_dir

    def path(self, hexdigest: str) -> Path:
        return self.folder / hexdigest[:2] / hexdigest

    def trusted(self, hexdigest: str, st: os.stat_result) -> bool:
        """Whether the blob file with this stat was verified and has not changed since."""
        try:
            return self.path(hexdigest).read_text() == fingerprint(st)
        except (OSError, ValueError):
            return False

    def record(self, hexdigest: str, st: os.stat_result) -> bool:
        """Remember that the blob file with this stat hashes to its digest (unless its mtime is too recent
        to prove a later change). False when nothing was recorded."""
        if not settled(st):
            return False
        with suppress(OSError), temp_file(self.tmp_dir, "w", prefix="stamp-") as tmp:
            tmp.file.write(fingerprint(st))
            tmp.commit(self.path(hexdigest))
            return True
        return False

    def forget(self, hexdigest: str) -> None:
        with suppress(OSError):
            os.unlink(self.path(hexdigest))
