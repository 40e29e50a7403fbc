"""sha256 digests (computed while streaming), canonical JSON and model ids. Standard library only."""

from __future__ import annotations

import hashlib
import json
import re
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
