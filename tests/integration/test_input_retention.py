"""Retention of uploaded build inputs (registry.services.input_retention), on real PostgreSQL and on SQLite: gc
lists (dry run) and removes calibration data sets, calibration caches and plugin libraries that no build names
and that were uploaded before unused_days, a data set's made cache with it, and their blobs; one a build names,
one uploaded a moment ago, stays; DELETE removes one at once and is refused (409) while a build names it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from registry.blobs.local import LocalBlobStore
from registry.db.session import Database
from registry.db.tables import Build, Calibration, CalibrationCache, Plugin, utcnow
from registry.digests import digest_of_file
from registry.errors import CalibrationNotFound, Conflict
from registry.schemas import BuildRequest
from registry.services import builds, calibration, plugins, retention
from registry.services.calibration import MadeCache
from registry.services.models import register_model
from registry.settings import Settings
from tests.models import calibration_set, convnet

TARGET = "onnxruntime==1.32.0@x86_64-avx2"
CACHE_TEXT = b"TRT-8601-EntropyCalibration2\ninput: 3c05394e\nconv0: 3cb44fd4\n"


@pytest.fixture
def farm(any_db: Database, tmp_path: Path):  # noqa: ANN201
    """(Database, blob store, settings) on a fresh, migrated database of either kind (conftest's any_db)."""
    return any_db, LocalBlobStore(tmp_path / "blobs"), Settings(home=tmp_path)


def library() -> Path:
    """An ELF shared object to upload as a plugin library (the C math library this process has mapped)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "/libm.so" in line or "/libm-" in line:
            return Path(line.split()[-1])
    pytest.fail("no libm mapped in this process")


def upload(db: Database, blobs: LocalBlobStore, path: Path, plugin: bool = False) -> str:
    digest, size = digest_of_file(path)
    service = plugins if plugin else calibration
    service.register(db, blobs, path, digest, size, name=path.name, max_bytes=1 << 30)
    return digest


def age(db: Database, table, digest: str, days: float) -> None:  # noqa: ANN001
    with db.session() as s:
        s.execute(update(table).where(table.digest == digest).values(created_at=utcnow() - timedelta(days=days)))


def test_gc_removes_uploaded_inputs_no_build_names(farm, tmp_path: Path) -> None:  # noqa: ANN001
    db, blobs, settings = farm
    old_data = upload(db, blobs, calibration_set(tmp_path / "old.npz", seed=1))
    named_data = upload(db, blobs, calibration_set(tmp_path / "named.npz", seed=2))
    fresh_data = upload(db, blobs, calibration_set(tmp_path / "fresh.npz", seed=3))
    (tmp_path / "c.cache").write_bytes(CACHE_TEXT)
    old_cache = upload(db, blobs, tmp_path / "c.cache")
    old_plugin = upload(db, blobs, library(), plugin=True)
    convnet(tmp_path / "upload" / "m.onnx", channels=4, layers=1)
    model, _ = register_model(db, blobs, tmp_path / "upload", "m.onnx")
    made = blobs.put_bytes(CACHE_TEXT + b"made: 3c000000\n")
    build, _ = builds.submit(db, settings, BuildRequest(model=model.id, target=TARGET))
    with db.session() as s:  # a build naming the data set (as an INT8 build does), which made a cache from it
        s.execute(update(Build).where(Build.id == build.id).values(calibration=named_data))
        calibration.record_cache(s, build.id, model.id, MadeCache(old_data, "8.6.0", "entropy2", "", made.digest,
                                                                  made.size, {}))
    for digest, table in ((old_data, Calibration), (named_data, Calibration), (old_cache, Calibration),
                          (old_plugin, Plugin), (made.digest, Calibration)):
        age(db, table, digest, 10)

    planned = retention.gc(db, blobs, keep_last=1, unused_days=7, dry_run=True)
    listed = {i.digest: i.kind for i in planned.inputs_removed}
    assert listed == {old_data: "calibration data", old_cache: "calibration cache", old_plugin: "plugin"}
    assert all(blobs.exists(d) for d in listed) and planned.blobs_removed == 0

    done = retention.gc(db, blobs, keep_last=1, unused_days=7, dry_run=False)
    assert {i.digest for i in done.inputs_removed} == set(listed)
    for digest in (old_data, old_cache, old_plugin, made.digest):  # the made cache went with its data set
        assert not blobs.exists(digest), digest
    with db.session() as s:
        assert set(s.scalars(select(Calibration.digest))) == {named_data, fresh_data}
        assert s.scalars(select(CalibrationCache)).all() == [] and s.scalars(select(Plugin)).all() == []
    assert blobs.exists(named_data) and blobs.exists(fresh_data) and done.input_bytes_freed > 0


def test_delete_is_refused_while_a_build_names_it(farm, tmp_path: Path) -> None:  # noqa: ANN001
    db, blobs, settings = farm
    data = upload(db, blobs, calibration_set(tmp_path / "d.npz"))
    plugin = upload(db, blobs, library(), plugin=True)
    convnet(tmp_path / "upload" / "m.onnx", channels=4, layers=1)
    model, _ = register_model(db, blobs, tmp_path / "upload", "m.onnx")
    build, _ = builds.submit(db, settings, BuildRequest(model=model.id, target=TARGET))
    with db.session() as s:
        s.execute(update(Build).where(Build.id == build.id).values(calibration=data, plugins=[plugin]))
    for digest, is_plugin in ((data, False), (plugin, True)):
        with pytest.raises(Conflict, match=build.id):
            retention.delete_input(db, blobs, digest, is_plugin)
        assert blobs.exists(digest)
    with db.session() as s:
        s.execute(update(Build).where(Build.id == build.id).values(calibration=None, plugins=[]))
    assert retention.delete_input(db, blobs, data, False) == {"digest": data, "blobs_removed": 1}
    assert retention.delete_input(db, blobs, plugin, True) == {"digest": plugin, "blobs_removed": 1}
    assert not blobs.exists(data) and not blobs.exists(plugin)
    with pytest.raises(CalibrationNotFound):
        retention.delete_input(db, blobs, data, False)
