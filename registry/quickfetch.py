"""`trtfarm fetch` asked again: the answer from the local cache without loading the SDK (httpx, its schemas),
so a repeat costs the interpreter's start-up and a few `stat` calls.

A record per question as the command line put it (farm URL, model argument, runtime, spec JSON), written
after the SDK answered it: the engine's cache path, digest and size, and for a model given as a path the
stat fingerprint of each of its files. A hit needs an explicit runtime ('auto' may detect another one
after an upgrade), the model files unchanged, and the cached engine intact (`localfiles.cached_ok`: its
stat as when last verified, else re-hashed). Anything else, and the SDK answers as usual. Standard
library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import suppress
from pathlib import Path

from registry.atomic import atomic_file
from registry.localfiles import RACY_S, cached_ok, default_cache_dir, fingerprint, stamp_path


def _record(url: str, model: str, runtime: str, spec_json: str | None) -> Path:
    model = str(Path(model).resolve()) if Path(model).exists() else model
    key = hashlib.sha256(json.dumps([url.rstrip("/"), model, runtime, spec_json or ""]).encode()).hexdigest()
    return default_cache_dir() / "quick" / f"{key}.json"


REVALIDATE_S = 300.0  # registry.client.REVALIDATE_S (not imported: that would load the SDK)


def answer(model: str, runtime: str, spec_json: str | None) -> Path | None:
    """The cached engine of a question answered before, or None (then ask the SDK)."""
    url = os.environ.get("TRTFARM_URL")
    if not url or runtime == "auto":
        return None
    try:
        record = _record(url, model, runtime, spec_json)
        if time.time() - record.stat().st_mtime > float(os.environ.get("TRTFARM_REVALIDATE_S") or REVALIDATE_S):
            return None  # old enough to ask the farm again (the SDK does, and this record is written anew)
        found = json.loads(record.read_text())
        if any(fingerprint(os.stat(p)) != seen for p, seen in found["model_files"]):
            return None
        engine = Path(found["engine"])
        stamp = stamp_path(default_cache_dir(), engine)
        return engine if cached_ok(engine, found["digest"], found["size"], False, stamp) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(model: str, runtime: str, spec_json: str | None, engine: Path, digest: str, size: int,
             model_files: list[Path]) -> None:
    """Keep the SDK's answer for the next time the same command line asks."""
    url = os.environ.get("TRTFARM_URL")
    if not url or runtime == "auto" or any(os.stat(p).st_mtime > time.time() - RACY_S for p in model_files):
        return  # a model file modified just now could change again without its stat showing it
    record = {"engine": str(engine), "digest": digest, "size": size,
              "model_files": [[str(p), fingerprint(os.stat(p))] for p in model_files]}
    with suppress(OSError), atomic_file(_record(url, model, runtime, spec_json), "w") as f:
        json.dump(record, f)
