"""registry.services.models.register_model on SQLite and a folder store (BlobStore.begin_puts' default:
nothing is written before the model passed). The S3 store, whose uploads start while the model is
checked: tests/integration/test_model_upload_s3.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.digests import digest_of_file
from registry.errors import InvalidModel
from registry.services.models import register_model
from registry.settings import Settings
from tests.models import convnet


@pytest.fixture
def db(tmp_path: Path) -> Database:
    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url())
    return Database(settings.resolved_database_url())


def blob_files(store: LocalBlobStore) -> list[Path]:
    return sorted(p for p in (store.root / "blobs").rglob("*") if p.is_file()) if store.root.exists() else []


def test_a_refused_model_writes_no_blob_and_an_accepted_one_is_stored(db: Database, tmp_path: Path) -> None:
    import onnx

    store = LocalBlobStore(tmp_path / "blobs")
    path = convnet(tmp_path / "bad" / "m.onnx")
    proto = onnx.load(str(path))
    proto.graph.node[0].input[0] = "no_such_tensor"  # (an unknown op would be a TensorRT plugin op: accepted)
    onnx.save_model(proto, str(path))
    with pytest.raises(InvalidModel, match="fails the ONNX checker"):
        register_model(db, store, path.parent, "m.onnx")
    assert blob_files(store) == []

    good = convnet(tmp_path / "good" / "m.onnx")
    info, created = register_model(db, store, good.parent, "m.onnx", known={"m.onnx": digest_of_file(good)})
    assert created and store.get_bytes(info.id) == good.read_bytes() and len(blob_files(store)) == 1
