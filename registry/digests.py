"""sha256 digests, computed while streaming, and model ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from registry.keys import canonical_json

CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
