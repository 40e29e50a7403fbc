"""registry.services.calibration on a real SQLite database and a folder store: uploads (inspected, stored,
recorded once), the checks at submit (INT8 without calibration refused unless the model has Q/DQ nodes; a data
set must fit the model and profile 0's opt shape), the build key, and the caches builds made, found again by
(model, data set, TensorRT version, calibrator[, GPU])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.db.tables import Calibration, Model
from registry.digests import digest_of_file
from registry.errors import CalibrationNeeded, InvalidCalibration, InvalidSpec, TooLarge
from registry.keys import build_key
from registry.schemas import BuildRequest
from registry.services import attempts, builds, calibration
from registry.services.attempts import EngineRecord, Outcome
from registry.services.models import register_model
from registry.settings import Settings
from registry.spec import parse_spec
from registry.status import BuildStatus
from tests.models import calibration_set, convnet, qdq_convnet

H100 = "tensorrt==8.6.0@h100-80gb-hbm3"
BATCH4 = {"input": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}}
MB = 1 << 20


@pytest.fixture
def farm(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url())
    db, blobs = Database(settings.resolved_database_url()), LocalBlobStore(tmp_path / "blobs")
    convnet(tmp_path / "plain" / "m.onnx")
    qdq_convnet(tmp_path / "qat" / "q.onnx")
    plain, _ = register_model(db, blobs, tmp_path / "plain", "m.onnx")
    qat, _ = register_model(db, blobs, tmp_path / "qat", "q.onnx")
    return settings, db, blobs, plain, qat


def upload(db, blobs, path: Path, **kwargs):
    digest, size = digest_of_file(path)
    return calibration.register(db, blobs, path, digest, size, max_bytes=kwargs.pop("max_bytes", 64 * MB), **kwargs)


def submit(settings, db, blobs, model, spec, digest=None, target=H100):
    request = BuildRequest(model=model.id, target=target, spec=spec, calibration=digest)
    return builds.submit(db, settings, request, blobs=blobs)


# ------------------------------------------------------------------------------------------------ uploads


def test_a_data_set_is_inspected_stored_and_recorded_once(farm, tmp_path):
    _, db, blobs, _, _ = farm
    path = calibration_set(tmp_path / "c.npz", samples=12, compressed=True)
    info, created = upload(db, blobs, path, name="c.npz", uploaded_by="k1")
    assert created and info.kind == "data" and info.name == "c.npz"
    assert info.summary == {"inputs": {"input": {"dtype": "float32", "shape": [12, 3, 16, 16]}}, "samples": 12,
                            "bytes": info.summary["bytes"]}
    assert blobs.get_bytes(info.digest) == path.read_bytes() and info.digest == digest_of_file(path)[0]
    again, created_again = upload(db, blobs, path)
    assert not created_again and again == info
    with pytest.raises(InvalidCalibration, match="is a calibration data already"):
        upload(db, blobs, path, kind="cache")


@pytest.mark.parametrize("arrays,fragment", [
    ({"input": np.array(["a", "b"])}, "must be numeric"),
    ({"input": np.zeros((2, 3), np.complex64)}, "must be numeric"),
    ({"input": np.array([[1.0, np.nan]], np.float32)}, "NaN or infinite"),
    ({"input": np.float32(1.0)}, "axis 0 counts the samples"),
    ({"a": np.zeros((2, 3), np.float32), "b": np.zeros((3, 3), np.float32)}, "different numbers of samples"),
])
def test_a_bad_data_set_is_refused_and_nothing_is_stored(farm, tmp_path, arrays, fragment):
    _, db, blobs, _, _ = farm
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InvalidCalibration, match=fragment):
        upload(db, blobs, path)
    assert not blobs.exists(digest_of_file(path)[0])
    with db.session() as s:
        assert s.scalars(select(Calibration)).all() == []


def test_a_damaged_or_oversized_data_set_is_refused(farm, tmp_path):
    _, db, blobs, _, _ = farm
    path = calibration_set(tmp_path / "c.npz", samples=64)
    with pytest.raises(TooLarge, match="TRTFARM_MAX_CALIBRATION_MIB"):
        upload(db, blobs, path, max_bytes=MB // 8)  # 64 samples of 3x16x16 float32: 192 KiB
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InvalidCalibration, match="not a readable .npz"):
        upload(db, blobs, cut)


def test_a_cache_is_recorded_with_the_calibrator_its_header_names(farm, tmp_path):
    _, db, blobs, _, _ = farm
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-MinMaxCalibration\ninput: 3c010a14\nconv0: 3d0e1f5a\n")
    info, _ = upload(db, blobs, path)
    assert info.kind == "cache" and info.summary == {"header": "TRT-8601-MinMaxCalibration", "algorithm": "minmax",
                                                     "tensorrt": "8601", "tensors": 2}
    for text, fragment in ((b"TRT-8601-Percentile\nx: 1\n", "calibrator 'Percentile'"),
                           (b"TRT-8601-MinMaxCalibration\nx 3c01\n", "line 2"),
                           (b"TRT-8601-MinMaxCalibration\n", "no tensor scale")):
        path.write_bytes(text)
        with pytest.raises(InvalidCalibration, match=fragment):
            upload(db, blobs, path)


# ------------------------------------------------------------------------------------------------- submit


def test_int8_without_calibration_is_refused_unless_the_model_has_qdq_nodes(farm):
    settings, db, blobs, plain, qat = farm
    with pytest.raises(CalibrationNeeded) as refused:
        submit(settings, db, blobs, plain, {"precision": ["int8"]})
    assert refused.value.code == "calibration_needed"
    assert "no QuantizeLinear/DequantizeLinear nodes" in refused.value.message
    assert "upload a calibration data set" in refused.value.message and "--calibration FILE" in refused.value.message
    info, created = submit(settings, db, blobs, qat, {"precision": ["int8"]})
    assert created and info.status == "queued" and "calibration" not in {w.code for w in info.warnings}
    info, created = submit(settings, db, blobs, plain, {"precision": ["fp16"]})  # no int8: nothing to refuse
    assert created
    onnxruntime, _ = submit(settings, db, blobs, plain, {}, target="onnxruntime==1.32.0@x86_64-avx2")
    assert onnxruntime.status == "queued"


def test_a_model_registered_before_op_types_were_recorded_is_built_with_a_warning(farm):
    settings, db, blobs, plain, _ = farm
    with db.session() as s:
        s.execute(update(Model).where(Model.id == plain.id).values(op_types=None))
    info, created = submit(settings, db, blobs, plain, {"precision": ["int8"]})
    assert created and "calibration_unchecked" in {w.code for w in info.warnings}


def test_a_fitting_data_set_is_accepted_and_its_digest_is_in_the_key(farm, tmp_path):
    settings, db, blobs, plain, _ = farm
    first, _ = upload(db, blobs, calibration_set(tmp_path / "a.npz", samples=8, seed=1))
    second, _ = upload(db, blobs, calibration_set(tmp_path / "b.npz", samples=8, seed=2))
    spec = {"precision": ["int8"], "profiles": [BATCH4]}
    info, created = submit(settings, db, blobs, plain, spec, first.digest)
    assert created and info.calibration == first.digest and info.warnings == []
    assert info.key == build_key(model=plain.id, target=H100, spec=parse_spec(info.spec), calibration=first.digest)
    other, _ = submit(settings, db, blobs, plain, spec, second.digest)
    assert other.key != info.key
    again, created_again = submit(settings, db, blobs, plain, spec, first.digest)
    assert not created_again and again.id == info.id
    job = attempts.job(db, info.id)
    assert (job.calibration, job.calibration_kind) == (first.digest, "data")


@pytest.mark.parametrize("arrays,spec,fragment", [
    ({"image": (8, 3, 16, 16)}, {}, "must be named after the model's inputs (input); missing: input"),
    ({"input": (8, 3, 16, 16), "mask": (8, 1)}, {}, "not inputs: mask"),
    ({"input": (8, 3, 8, 8)}, {}, "each sample must be 3x16x16"),
    ({"input": (3, 3, 16, 16)}, {}, "3 sample(s), fewer than one batch of 4"),
    ({"input": (8, 3, 16, 16)}, {"calibration_algorithm": "minmax", "precision": ["fp16"]}, "does not ask for int8"),
])
def test_a_data_set_that_does_not_fit_is_refused_at_submit(farm, tmp_path, arrays, spec, fragment):
    settings, db, blobs, plain, _ = farm
    path = tmp_path / "d.npz"
    np.savez(path, **{name: np.zeros(shape, np.float32) for name, shape in arrays.items()})
    info, _ = upload(db, blobs, path)
    error = InvalidSpec if "int8" in fragment else InvalidCalibration
    with pytest.raises(error) as refused:
        submit(settings, db, blobs, plain, {"precision": ["int8"], "profiles": [BATCH4], **spec}, info.digest)
    assert fragment in refused.value.message


def test_a_cache_must_come_from_the_calibrator_the_spec_names(farm, tmp_path):
    settings, db, blobs, plain, _ = farm
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-MinMaxCalibration\ninput: 3c010a14\n")
    cache, _ = upload(db, blobs, path)
    with pytest.raises(InvalidCalibration, match="made by the minmax calibrator"):
        submit(settings, db, blobs, plain, {"precision": ["int8"], "calibration_algorithm": "entropy2"}, cache.digest)
    for spec in ({"precision": ["int8"]}, {"precision": ["int8"], "calibration_algorithm": "minmax"}):
        info, created = submit(settings, db, blobs, plain, spec, cache.digest)
        assert created and attempts.job(db, info.id).calibration_kind == "cache"


def test_a_cache_of_another_tensorrt_release_is_submitted_with_a_warning(farm, tmp_path):
    """A rollout carries the old build's cache as it was: an 8.5 cache named by an 8.6 build is submitted, with
    a warning that says what to do; a cache of the build's own release (8601: 8.6.1, for 8.6.0) gets none."""
    settings, db, blobs, plain, _ = farm
    (tmp_path / "old.cache").write_bytes(b"TRT-8503-EntropyCalibration2\ninput: 3c010a14\n")
    (tmp_path / "new.cache").write_bytes(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    old, _ = upload(db, blobs, tmp_path / "old.cache")
    new, _ = upload(db, blobs, tmp_path / "new.cache")
    info, created = submit(settings, db, blobs, plain, {"precision": ["int8"]}, old.digest)
    warning = next(w for w in info.warnings if w.code == "calibration_release")
    assert created and "TensorRT 8.5" in warning.message and "uses 8.6.0" in warning.message
    assert "name the data set instead" in warning.message
    info, _ = submit(settings, db, blobs, plain, {"precision": ["int8"]}, new.digest)
    assert not [w for w in info.warnings if w.code == "calibration_release"]
    assert calibration._release("100300") == (10, 3) and calibration._release("8601") == (8, 6)


def test_calibration_a_build_cannot_use_is_kept_with_a_warning(farm, tmp_path):
    settings, db, blobs, plain, qat = farm
    data, _ = upload(db, blobs, calibration_set(tmp_path / "a.npz", samples=8))
    info, _ = submit(settings, db, blobs, plain, {"precision": ["fp16"]}, data.digest)
    assert [w.code for w in info.warnings if w.code.startswith("calibration")] == ["calibration_ignored"]
    info, _ = submit(settings, db, blobs, qat, {"precision": ["int8"]}, data.digest)
    assert "Q/DQ nodes" in next(w.message for w in info.warnings if w.code == "calibration_ignored")


def test_a_blob_named_before_uploads_were_offered_is_still_a_cache(farm):
    settings, db, blobs, plain, _ = farm
    blob = blobs.put_bytes(b"TRT-8600-EntropyCalibration2\ninput: 3c010a14\n")
    info, created = submit(settings, db, blobs, plain, {"precision": ["int8"]}, blob.digest)
    assert created and attempts.job(db, info.id).calibration_kind == "cache"


# -------------------------------------------------------------------------------------------- made caches


def made(data: str, cache: str, algorithm: str = "entropy2", sku: str = "h100-80gb-hbm3") -> calibration.MadeCache:
    return calibration.MadeCache(data_digest=data, version="8.6.0", algorithm=algorithm,
                                 device=calibration.reuse_device(algorithm, sku), cache_digest=cache, size=40,
                                 summary={"header": "TRT-8600-EntropyCalibration2", "algorithm": algorithm,
                                          "tensorrt": "8600", "tensors": 1})


def finish_with(db, build_id: str, cache: calibration.MadeCache) -> None:
    claim = attempts.claim(db, build_id, "w", 60)
    engine = EngineRecord(version="8.6.0", digest="sha256:" + "e" * 64, size=1, filename="e.plan", metadata={},
                          validation={"passed": True}, calibration=cache)
    assert attempts.finish(db, claim, Outcome(BuildStatus.SUCCEEDED, engine=engine))


def test_a_cache_a_build_made_is_found_by_the_next_build_of_the_same_inputs(farm, tmp_path):
    settings, db, blobs, plain, qat = farm
    data, _ = upload(db, blobs, calibration_set(tmp_path / "a.npz", samples=8))
    info, _ = submit(settings, db, blobs, plain, {"precision": ["int8"], "profiles": [BATCH4]}, data.digest)
    assert calibration.find_cache(db, plain.id, data.digest, "8.6.0", "entropy2", "h100-80gb-hbm3") is None
    cache = "sha256:" + "c" * 64
    finish_with(db, info.id, made(data.digest, cache))
    found = {"cache": cache, "size": 40, "build": info.id}
    assert calibration.find_cache(db, plain.id, data.digest, "8.6.0", "entropy2", "h100-80gb-hbm3") == found
    assert calibration.find_cache(db, plain.id, data.digest, "8.6.0", "entropy2", "a100-sxm4-80gb") == found  # any GPU
    for miss in ((qat.id, data.digest, "8.6.0", "entropy2"), (plain.id, "sha256:" + "d" * 64, "8.6.0", "entropy2"),
                 (plain.id, data.digest, "8.5.3", "entropy2"), (plain.id, data.digest, "8.6.0", "minmax")):
        assert calibration.find_cache(db, *miss, "h100-80gb-hbm3") is None
    recorded = calibration.read(db, cache)  # the cache is an upload of its own: a later request may name it
    assert recorded.kind == "cache" and recorded.summary["algorithm"] == "entropy2"


def test_caches_of_calibrators_that_do_not_travel_are_kept_per_gpu(farm, tmp_path):
    settings, db, blobs, plain, _ = farm
    data, _ = upload(db, blobs, calibration_set(tmp_path / "a.npz", samples=8))
    spec = {"precision": ["int8"], "profiles": [BATCH4], "calibration_algorithm": "legacy"}
    info, _ = submit(settings, db, blobs, plain, spec, data.digest)
    finish_with(db, info.id, made(data.digest, "sha256:" + "c" * 64, "legacy"))
    assert calibration.find_cache(db, plain.id, data.digest, "8.6.0", "legacy", "h100-80gb-hbm3") is not None
    assert calibration.find_cache(db, plain.id, data.digest, "8.6.0", "legacy", "a100-sxm4-80gb") is None


def test_the_first_of_two_racing_builds_keeps_its_cache(farm, tmp_path):
    settings, db, blobs, plain, _ = farm
    data, _ = upload(db, blobs, calibration_set(tmp_path / "a.npz", samples=8))
    first, _ = submit(settings, db, blobs, plain, {"precision": ["int8"], "profiles": [BATCH4]}, data.digest)
    second, _ = submit(settings, db, blobs, plain, {"precision": ["int8"], "profiles": [BATCH4]}, data.digest,
                       target="tensorrt==8.6.0@a100-sxm4-80gb")
    finish_with(db, first.id, made(data.digest, "sha256:" + "1" * 64))
    finish_with(db, second.id, made(data.digest, "sha256:" + "2" * 64, sku="a100-sxm4-80gb"))
    found = calibration.find_cache(db, plain.id, data.digest, "8.6.0", "entropy2", None)
    assert found == {"cache": "sha256:" + "1" * 64, "size": 40, "build": first.id}
    assert builds.read(db, second.id).status == "succeeded"
