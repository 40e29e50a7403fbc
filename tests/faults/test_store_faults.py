"""Faults of the blob store under a running farm: a flipped byte in a stored engine, and a real full file
system (a small tmpfs mounted for the test) under the folder store."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from registry.atomic import PART_PREFIX
from registry.blobs.stamps import fingerprint
from registry.db.tables import Model
from registry.errors import FarmError
from tests.integration.conftest import RunningFarm, batch_profile, built_engine_file
from tests.models import matmul_model

MIB = 1 << 20


@pytest.fixture
def farm(farm_factory) -> RunningFarm:  # noqa: ANN001
    return farm_factory(workers=1, blobs="file")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), mounted for this test alone."""
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.fail(f"this test mounts a tmpfs and needs root (CI runs as root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_file_system_gives_507_keeps_nothing_and_recovers(farm_factory, small_fs: Path,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    """The folder store on a real file system with 1 MiB left: a 2 MiB model is answered 507 store_full as
    JSON, no partial file and no model row remain, the API stays up; once space returns, the same upload works."""
    farm = farm_factory(workers=0, blobs="file", blob_url=f"file://{small_fs}")
    model = matmul_model(tmp_path / "big.onnx", k=512, n=1024)  # 2 MiB of weights
    assert model.stat().st_size > 2 * MIB
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (free_bytes(small_fs) - MIB))
    assert free_bytes(small_fs) <= MIB

    with farm.http() as http:
        with open(model, "rb") as f:
            full = http.post("/v1/models", files={"file": ("big.onnx", f)})
        assert full.status_code == 507, full.text
        assert full.json()["code"] == "store_full" and "nothing partial" in full.json()["message"]
        assert not [p for p in small_fs.rglob(f"{PART_PREFIX}*")]
        assert sorted(p.name for p in small_fs.rglob("*") if p.is_file()) == ["filler"]
        assert http.get("/readyz").status_code == 200  # the API still answers
        with farm.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Model)) == 0

        filler.unlink()  # space comes back
        with open(model, "rb") as f:
            stored = http.post("/v1/models", files={"file": ("big.onnx", f)})
        assert stored.status_code == 201, stored.text
        assert http.head(f"/v1/models/{stored.json()['id']}").status_code == 200
    blobs = [p for p in small_fs.rglob("*") if p.is_file()]
    assert any(p.stat().st_size == model.stat().st_size for p in blobs)
    assert not [p for p in blobs if p.name.startswith(PART_PREFIX)]
    shutil.rmtree(small_fs / "blobs", ignore_errors=True)


def test_a_flipped_byte_in_the_store_is_never_served(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    """The artifact route checks the digest as it streams: a corrupt blob is cut off before its last bytes,
    quarantined, then answered as missing; a range of it is refused outright; the SDK keeps nothing."""
    build, engine, blob = built_engine_file(farm, ort_runtime, tmp_path / "f.onnx", seed=62)
    sdk = farm.client()
    good = blob.read_bytes()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:  # one flipped byte, same size
        f.seek(len(good) // 2)
        f.write(bytes([good[len(good) // 2] ^ 0xFF]))
    url = f"/v1/engines/{engine.id}/artifact"
    with farm.http() as http:
        ranged = http.get(url, headers={"Range": "bytes=0-9"})  # verified before the first byte: a JSON 500
        assert ranged.status_code == 500 and ranged.json()["code"] == "digest_mismatch", ranged.text
        assert not blob.exists() and (farm.home / "blobs" / "quarantine" / engine.digest[7:]).exists()
        gone = http.get(url)
        assert gone.status_code == 404 and gone.json()["code"] == "blob_not_found"

    # the same corruption again, this time met by a whole-body GET: all but the last chunk, then the cut
    blob.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF]) + good[len(good) // 2 + 1:])
    with farm.http() as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(url)
    assert not blob.exists()  # quarantined again
    blob.write_bytes(good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF]) + good[len(good) // 2 + 1:])
    with pytest.raises(FarmError):
        sdk.fetch(build.model, ort_runtime, batch_profile(), refresh=True)
    assert not any(p.name.startswith(engine.digest[7:]) for p in sdk.cache_dir.rglob("*") if p.is_file())


def test_a_stamped_blob_changed_with_its_mtime_put_back_is_never_served(farm: RunningFarm, ort_runtime: str,
                                                                         tmp_path: Path) -> None:
    """A blob stamped as verified when the worker stored it (size, mtime, inode, ctime) streams without being
    hashed again, until anything about its file changes: a byte flipped in place with the old mtime put back
    still moves the ctime, so the artifact route hashes it, cuts the body before its last chunk and
    quarantines it; the SDK, reading the large body from the connection itself, keeps nothing."""
    sdk = farm.client(cache_dir=tmp_path / "first")
    spec = batch_profile("x", rest=(1024,))
    build = sdk.submit(matmul_model(tmp_path / "wide.onnx", k=1024, n=1024), ort_runtime, spec, timeout=120)
    engine = sdk.engine(build.engine_id)
    hexdigest = engine.digest[7:]
    blob = farm.home / "blobs" / "blobs" / "sha256" / hexdigest[:2] / hexdigest
    stamp = farm.home / "blobs" / "verified" / "sha256" / hexdigest[:2] / hexdigest
    assert engine.size > 3 * MIB and stamp.read_text() == fingerprint(blob.stat())
    assert sdk.fetch(build.model, ort_runtime, spec).read_bytes() == blob.read_bytes()  # the stamped path

    before, good = blob.stat(), blob.read_bytes()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(len(good) - 100)
        f.write(bytes([good[-100] ^ 0xFF]))
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (blob.stat().st_size, blob.stat().st_mtime_ns, blob.stat().st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    with farm.http() as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(f"/v1/engines/{engine.id}/artifact")
    assert not blob.exists() and (farm.home / "blobs" / "quarantine" / hexdigest).exists()
    assert not stamp.exists()

    blob.write_bytes(good[:-100] + bytes([good[-100] ^ 0xFF]) + good[-99:])  # the same corruption again
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    other = farm.client(cache_dir=tmp_path / "second")
    with pytest.raises(FarmError):
        other.fetch(build.model, ort_runtime, spec)
    assert not any(p.name.startswith(hexdigest) for p in other.cache_dir.rglob("*") if p.is_file())
    assert not blob.exists()
