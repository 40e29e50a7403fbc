"""INT8 calibration around a TensorRT build (docs/design.md "INT8 calibration").

Before: an uploaded cache is downloaded and served (`--calibration-cache`). A data set is downloaded (it is
also what validation feeds the engine); when an earlier build of the same model calibrated from it with the
same TensorRT version and calibrator (registry.services.calibration.find_cache), that cache is served instead
of calibrating again (the build log says so); otherwise the runner calibrates (`--calibration-data`) and
writes the cache TensorRT made (`--calibration-cache-out`).
After: a cache the runner made is stored as a blob, and the engine's metadata says how its INT8 scales were
made (`calibration`: mode calibrated / reused / cache / explicit, the data set and cache digests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import calibdata
from registry.db.session import retry_transient
from registry.errors import BlobError, InvalidCalibration, InvalidInput
from registry.services import calibration as service
from registry.services.attempts import BuildJob
from workers.context import WorkerContext
from workers.launcher import BuildLog


@dataclass
class CalibrationInputs:
    args: list[str] = field(default_factory=list)  # for the runner's build command
    data_path: Path | None = None  # the data set, for validation inputs too
    reused: dict[str, Any] | None = None  # the earlier build's cache served instead of calibrating
    out_path: Path | None = None  # where the runner writes the cache it makes
    algorithm: str = calibdata.DEFAULT_ALGORITHM
    sku: str | None = None


def before_build(ctx: WorkerContext, job: BuildJob, tmp: Path, log: BuildLog) -> CalibrationInputs:
    if job.calibration is None or job.toolchain != "tensorrt":
        return CalibrationInputs()
    if "int8" not in job.spec.precision:
        log.write(f"calibration {job.calibration}: not used (the spec does not ask for int8)")
        return CalibrationInputs()
    if job.calibration_kind == calibdata.CACHE:
        path = _download(ctx, job.calibration, tmp / "calibration.cache", "calibration cache")
        log.write(f"calibration: serving the uploaded cache {job.calibration}")
        return CalibrationInputs(["--calibration-cache", str(path)])
    data = _download(ctx, job.calibration, tmp / "calibration.npz", "calibration data set")
    algorithm = service.algorithm_of(job.spec)
    sku = ctx.gpus[0].get("sku") if ctx.gpus else None
    found = retry_transient(lambda: service.find_cache(ctx.db, job.model_id, job.calibration, job.version, algorithm,
                                                       sku), what="look up a calibration cache")
    if found is not None:
        path = tmp / "calibration.cache"
        try:
            ctx.blobs.get_to_file(found["cache"], path)
        except BlobError as exc:
            log.write(f"calibration: the cache {found['cache']} made by build {found['build']} cannot be read "
                      f"({exc.code}); calibrating again")
        else:
            log.write(f"calibration: reusing cache {found['cache']} that build {found['build']} made from data set "
                      f"{job.calibration} (same model, TensorRT {job.version}, {algorithm}): not calibrating again")
            return CalibrationInputs(["--calibration-cache", str(path)], data, found, None, algorithm, sku)
    out = tmp / "calibration.cache.out"
    log.write(f"calibration: calibrating with {algorithm} from data set {job.calibration}")
    return CalibrationInputs(["--calibration-data", str(data), "--calibration-cache-out", str(out)], data, None, out,
                             algorithm, sku)


def _download(ctx: WorkerContext, digest: str, dest: Path, what: str) -> Path:
    try:
        ctx.blobs.get_to_file(digest, dest)
    except BlobError as exc:
        raise InvalidInput(f"{what} {digest} cannot be read from the blob store ({exc.code}: {exc}); upload it "
                           "again (POST /v1/calibration)") from None
    return dest


def after_build(ctx: WorkerContext, job: BuildJob, inputs: CalibrationInputs, meta: dict,
                log: BuildLog) -> service.MadeCache | None:
    """Complete meta["calibration"] with digests; store a cache the runner made and return it (to record)."""
    entry = meta.get("calibration")
    if not entry:
        return None
    if entry.get("mode") == "explicit":
        return None
    entry["input"] = job.calibration
    if inputs.reused is not None:
        entry.update(mode="reused", data=job.calibration, cache=inputs.reused["cache"],
                     made_by_build=inputs.reused["build"])
        return None
    if entry.get("mode") == "cache":
        entry["cache"] = job.calibration
        return None
    blob = ctx.blobs.put_file(inputs.out_path)
    entry.update(data=job.calibration, cache=blob.digest)
    try:
        summary = calibdata.inspect_cache(inputs.out_path)
    except InvalidCalibration as exc:
        log.write(f"calibration: stored the cache {blob.digest}, but it will not be reused ({exc})")
        return None
    log.write(f"calibration: stored the cache {blob.digest} ({blob.size} bytes); later builds of this model and "
              f"data set on TensorRT {job.version} reuse it")
    return service.MadeCache(data_digest=job.calibration, version=job.version, algorithm=inputs.algorithm,
                             device=service.reuse_device(inputs.algorithm, inputs.sku), cache_digest=blob.digest,
                             size=blob.size, summary=summary)
