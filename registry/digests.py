"""sha256 digests (computed while streaming), canonical JSON and model ids. Standard library only."""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, no NaN: equal values give equal text (and equal hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST.fullmatch(value))


def digest_of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


class StreamHash:
    """The sha256 of chunks given to `update` in order: "sha256:<hex>" from `digest()`.

    Threaded, the hashing runs on a helper thread (hashlib lets go of the GIL on large buffers), so it
    overlaps the caller's reads and writes on another core: chunks are handed over in batches of about
    `CHUNK` bytes, at most `depth` batches ahead (memory bounded). Chunks must not change once given
    (bytes, or buffers the caller no longer writes to). Use as a context manager or call `close()`:
    the thread ends with it."""

    def __init__(self, threaded: bool = True, depth: int = 4) -> None:
        self._h = hashlib.sha256()
        self.size = 0
        self._batch: list[bytes] = []
        self._batched = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[list[bytes] | None] | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        while (batch := self._queue.get()) is not None:
            try:
                for chunk in batch:
                    self._h.update(chunk)
            except BaseException as exc:  # noqa: BLE001 - kept for digest(); keep draining so put() never blocks
                self._error = exc

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._queue is None:
            self._h.update(chunk)
            return
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= CHUNK:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def digest(self) -> str:
        """The digest of everything given, "sha256:<hex>" (waits for the helper thread)."""
        self.close()
        if self._error is not None:
            raise self._error
        return "sha256:" + self._h.hexdigest()

    def close(self) -> None:
        if self._queue is not None:
            if self._batch:
                self._queue.put(self._batch)
                self._batch, self._batched = [], 0
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def __enter__(self) -> StreamHash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model's folder, '/' separated; the .onnx itself first
    sha256: str  # 'sha256:<hex>'
    size: int


def model_id(files: Iterable[ModelFile]) -> str:
    """Single-file model: the digest of its bytes. With external data: the digest of the manifest."""
    files = sorted(files, key=lambda f: f.path)
    if len(files) == 1:
        return files[0].sha256
    manifest = {"files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files]}
    return digest_of_bytes(canonical_json(manifest).encode())
