"""Shared timing caches around a TensorRT build (docs/design.md "Timing caches").

Before: fetch the partition's newest cache. After: combine our cache into the newest one (TensorRT's
combine, inside the runner) and write it back with compare-and-swap on the generation, retrying when
another build got there first. A cache TensorRT rejects is a miss, never a failed build; so is one whose blob
is gone (`trtfarm gc` removed a superseded generation or a dead partition meanwhile, or it was corrupt).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from registry.db.session import retry_transient
from registry.errors import BlobError, RunnerFailed
from registry.services import timing_caches
from registry.services.attempts import BuildJob
from workers import launcher
from workers.context import WorkerContext
from workers.launcher import BuildLog

CAS_ATTEMPTS = 8


@dataclass
class CacheIn:
    build_id: str
    partition: str
    generation: int
    path_in: Path | None
    path_out: Path
    size_in: int
    missing: bool = False  # the partition had a cache, but its blob could not be read: a miss

    @property
    def args(self) -> list[str]:
        args = ["--timing-cache-out", str(self.path_out)]
        return args + (["--timing-cache-in", str(self.path_in)] if self.path_in else [])


def before_build(ctx: WorkerContext, job: BuildJob, toolchain: launcher.Toolchain, tmp: Path, log: BuildLog) -> CacheIn:
    gpu = ctx.gpus[0] if ctx.gpus else {"sku": "unknown", "cc": "unknown"}
    partition = timing_caches.partition_key(version=toolchain.version, cc=gpu["cc"], sku=gpu["sku"], spec=job.spec)
    newest = retry_transient(lambda: timing_caches.newest(ctx.db, partition), what="read the timing cache")
    path_in = _download(ctx, newest, tmp / "timing-cache.in", log)
    size = newest.size if path_in else 0
    log.write(f"timing cache {partition}: generation {newest.generation}, {size} bytes")
    return CacheIn(job.build_id, partition, newest.generation, path_in, tmp / "timing-cache.out", size,
                   missing=bool(newest.digest) and path_in is None)


def _download(ctx: WorkerContext, newest: timing_caches.CacheVersion, dest: Path, log: BuildLog) -> Path | None:
    """The cache's blob at `dest`; None when there is none, or its blob is gone (`trtfarm gc` removed it, or it
    was quarantined as corrupt): a miss, never a failed build."""
    if not newest.digest:
        return None
    try:
        ctx.blobs.get_to_file(newest.digest, dest)
    except BlobError as exc:
        log.write(f"timing cache {newest.partition}: generation {newest.generation}'s blob {newest.digest} "
                  f"cannot be read ({exc.code}: {exc}); a miss")
        return None
    return dest


def after_build(ctx: WorkerContext, toolchain: launcher.Toolchain, cache: CacheIn, meta: dict,
                tmp: Path, log: BuildLog) -> dict[str, Any]:
    used = meta.get("timing_cache") or {}
    record: dict[str, Any] = {
        "partition": cache.partition, "generation_used": cache.generation, "size_before": cache.size_in,
        "rejected": bool(used.get("rejected")), "partial_miss": bool(used.get("partial_miss")),
        **({"blob_missing": True} if cache.missing else {}),
    }
    if used.get("partial_miss"):
        log.write("timing cache: partial miss (TensorRT: 'the timing cache will not be used' for some layers)")
    if not cache.path_out.exists():
        return {**record, "written_generation": None, "size_after": None}
    for attempt in range(CAS_ATTEMPTS):
        newest = retry_transient(lambda: timing_caches.newest(ctx.db, cache.partition), what="read the timing cache")
        candidate = _combined(ctx, toolchain, cache, newest, tmp, log, attempt)
        blob = ctx.blobs.put_file(candidate)
        swap = partial(timing_caches.compare_and_swap, ctx.db, cache.partition, newest.generation, blob.digest,
                       blob.size, cache.build_id)
        if retry_transient(swap, what="write the timing cache"):
            log.write(f"timing cache: wrote generation {newest.generation + 1} ({blob.size} bytes)")
            return {**record, "written_generation": newest.generation + 1, "size_after": blob.size,
                    "cas_conflicts": attempt}
        log.write(f"timing cache: generation moved past {newest.generation}; merging again")
    log.write("timing cache: gave up after repeated conflicts; the build is unaffected")
    return {**record, "written_generation": None, "size_after": None, "cas_conflicts": CAS_ATTEMPTS}


def _combined(ctx: WorkerContext, toolchain: launcher.Toolchain, cache: CacheIn, newest: timing_caches.CacheVersion,
              tmp: Path, log: BuildLog, attempt: int) -> Path:
    """Our cache when nobody wrote since we read; else the newest combined with ours."""
    if newest.generation == cache.generation or newest.digest is None:
        return cache.path_out
    theirs, merged = tmp / f"timing-cache.newest{attempt}", tmp / f"timing-cache.merged{attempt}"
    if _download(ctx, newest, theirs, log) is None:
        log.write("timing cache: keeping ours")
        return cache.path_out
    try:
        ctx.runners.run(toolchain, "merge", ["--cache", str(theirs), "--cache", str(cache.path_out), "--out",
                                             str(merged)], workdir=tmp, log=log, timeout=300)
    except RunnerFailed as exc:
        log.write(f"timing cache: merge failed ({exc}); keeping ours")
        return cache.path_out
    return merged
