"""api/errors.py: database trouble becomes JSON errors with the right status, never a plain-text 500."""

from __future__ import annotations

import errno
from contextlib import contextmanager

import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from api.errors import database_error, status_for
from registry import errors as e
from registry.blobs import local


@pytest.mark.parametrize(("exc", "cls", "status"), [
    (DataError("INSERT", {}, ValueError("A string literal cannot contain NUL (0x00) characters.")),
     e.InvalidInput, 422),
    (OperationalError("SELECT 1", {}, ConnectionError("server closed the connection")), e.Unavailable, 503),
    (IntegrityError("INSERT", {}, ValueError("duplicate key")), e.InternalError, 500),
])
def test_database_errors_map_to_json_errors(exc, cls, status):
    mapped = database_error(exc)
    assert type(mapped) is cls and status_for(mapped) == status and mapped.message


def test_every_error_class_has_a_deliberate_status():
    assert status_for(e.StoreFull("x")) == 507 and status_for(e.Unauthorized("x")) == 401
    assert status_for(e.Forbidden("x")) == 403 and status_for(e.RangeNotSatisfiable("x")) == 416
    assert status_for(e.UnsupportedOption("x")) == 422 and status_for(e.BlobNotFound("x")) == 404


def test_a_full_disk_is_store_full_and_leaves_nothing(tmp_path, monkeypatch):
    store = local.LocalBlobStore(tmp_path / "blobs")
    real = local.temp_file

    @contextmanager
    def full_disk(folder, mode="wb", **kw):  # the write that hits ENOSPC, as a full file system answers
        with real(folder, mode, **kw) as tmp:
            def write(_data):
                raise OSError(errno.ENOSPC, "No space left on device")
            tmp.file.write = write
            yield tmp

    monkeypatch.setattr(local, "temp_file", full_disk)
    with pytest.raises(e.StoreFull, match="is full; nothing partial was kept"):
        store.put_bytes(b"engine bytes")
    assert list((tmp_path / "blobs").rglob("*.part*")) == [] and not list((tmp_path / "blobs").rglob("sha256/*/*"))


def test_a_database_without_tables_says_to_upgrade_it(tmp_path):
    """`trtfarm api` on a database nobody migrated: a 503 that names the command, not "does not answer"."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from registry.settings import Settings

    with TestClient(create_app(Settings(home=tmp_path))) as client:
        answer = client.get("/v1/workers")
    assert answer.status_code == 503 and answer.json()["code"] == "unavailable"
    assert "trtfarm db upgrade" in answer.json()["message"]
