"""workers/calibration.py around a build (SQLite, a folder store, no runner): what the runner is asked to do,
the cache it made stored and recorded with the engine, and the next build of the same model and data set
served that cache instead of calibrating again (the build log says so)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.digests import digest_of_file
from registry.errors import InvalidInput
from registry.schemas import BuildRequest
from registry.services import attempts, builds, calibration
from registry.services.attempts import EngineRecord, Outcome
from registry.services.models import register_model
from registry.settings import Settings
from registry.status import BuildStatus
from tests.models import calibration_set, convnet
from workers import calibration as worker
from workers.launcher import BuildLog

SPEC = {"precision": ["int8"], "profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16],
                                                       "max": [8, 3, 16, 16]}}]}
CACHE = b"TRT-8600-EntropyCalibration2\ninput: 3c010a14\nconv0: 3d0e1f5a\n"


@pytest.fixture
def farm(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url())
    db, blobs = Database(settings.resolved_database_url()), LocalBlobStore(tmp_path / "blobs")
    convnet(tmp_path / "m" / "m.onnx")
    model, _ = register_model(db, blobs, tmp_path / "m", "m.onnx")
    data = calibration_set(tmp_path / "calib.npz", samples=8)
    info, _ = calibration.register(db, blobs, data, *digest_of_file(data), max_bytes=1 << 26)
    ctx = types.SimpleNamespace(db=db, blobs=blobs, gpus=[{"sku": "h100-80gb-hbm3", "cc": "sm_90"}])
    return settings, ctx, model, info.digest


def job_for(settings, ctx, model, digest, target="tensorrt==8.6.0@h100-80gb-hbm3"):
    info, _ = builds.submit(ctx.db, settings, BuildRequest(model=model.id, target=target, spec=SPEC,
                                                           calibration=digest), blobs=ctx.blobs)
    return attempts.job(ctx.db, info.id)


def test_a_build_calibrates_then_the_next_one_reuses_its_cache(farm, tmp_path):
    settings, ctx, model, data = farm
    job = job_for(settings, ctx, model, data)
    work, log = tmp_path / "b1", BuildLog(tmp_path / "b1.log")
    work.mkdir()
    inputs = worker.before_build(ctx, job, work, log)
    assert inputs.args == ["--calibration-data", str(work / "calibration.npz"), "--calibration-cache-out",
                           str(work / "calibration.cache.out")]
    assert inputs.data_path.read_bytes() == ctx.blobs.get_bytes(data) and "calibrating with entropy2" in log.tail_text()
    inputs.out_path.write_bytes(CACHE)  # what the runner wrote
    meta = {"calibration": {"mode": "calibrated", "algorithm": "entropy2", "batches": 2, "batch_size": 4}}
    made = worker.after_build(ctx, job, inputs, meta, log)
    assert made.cache_digest == ctx.blobs.put_bytes(CACHE).digest and (made.data_digest, made.device) == (data, "")
    assert meta["calibration"] == {"mode": "calibrated", "algorithm": "entropy2", "batches": 2, "batch_size": 4,
                                   "input": data, "data": data, "cache": made.cache_digest}
    claim = attempts.claim(ctx.db, job.build_id, "w", 60)
    engine = EngineRecord(version="8.6.0", digest="sha256:" + "e" * 64, size=1, filename="e.plan", metadata=meta,
                          calibration=made)
    assert attempts.finish(ctx.db, claim, Outcome(BuildStatus.SUCCEEDED, engine=engine))

    again = job_for(settings, ctx, model, data, target="tensorrt==8.6.0@a100-sxm4-80gb")  # another GPU
    work2, log2 = tmp_path / "b2", BuildLog(tmp_path / "b2.log")
    work2.mkdir()
    reused = worker.before_build(ctx, again, work2, log2)
    assert reused.args == ["--calibration-cache", str(work2 / "calibration.cache")] and reused.out_path is None
    assert (work2 / "calibration.cache").read_bytes() == CACHE and reused.data_path is not None  # (validation)
    assert f"reusing cache {made.cache_digest} that build {job.build_id} made" in log2.tail_text()
    meta2 = {"calibration": {"mode": "cache", "algorithm": "entropy2"}}
    assert worker.after_build(ctx, again, reused, meta2, log2) is None
    assert meta2["calibration"] == {"mode": "reused", "algorithm": "entropy2", "input": data, "data": data,
                                    "cache": made.cache_digest, "made_by_build": job.build_id}


def test_an_uploaded_cache_is_served_as_it_is(farm, tmp_path):
    settings, ctx, model, _ = farm
    path = tmp_path / "given.cache"
    path.write_bytes(CACHE)
    cache, _ = calibration.register(ctx.db, ctx.blobs, path, *digest_of_file(path), max_bytes=1 << 20)
    job = job_for(settings, ctx, model, cache.digest)
    inputs = worker.before_build(ctx, job, tmp_path, BuildLog(tmp_path / "log"))
    assert inputs.args == ["--calibration-cache", str(tmp_path / "calibration.cache")] and inputs.data_path is None
    meta = {"calibration": {"mode": "cache", "algorithm": "entropy2"}}
    assert worker.after_build(ctx, job, inputs, meta, BuildLog(tmp_path / "log")) is None
    assert meta["calibration"]["cache"] == cache.digest


def test_a_data_set_gone_from_the_store_fails_the_build_with_a_reason(farm, tmp_path):
    settings, ctx, model, data = farm
    job = job_for(settings, ctx, model, data)
    ctx.blobs.delete(data)
    with pytest.raises(InvalidInput, match="upload it again"):
        worker.before_build(ctx, job, tmp_path, BuildLog(tmp_path / "log"))
