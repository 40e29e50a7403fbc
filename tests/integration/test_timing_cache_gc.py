"""`gc` compacts the timing caches (registry.services.retention), on real PostgreSQL and on SQLite (the embedded
farm's database): a superseded generation's blob goes once it is past the grace and no row refers to it; a
partition's current cache never goes on its own; a partition goes whole only when unused and its TensorRT
version is served by no live worker (a dry run only lists it); and a worker that finds a cache's blob gone
builds with an empty cache (workers/timing_sync.py)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from registry.blobs.local import LocalBlobStore
from registry.db.session import Database
from registry.db.tables import Build, Model, TimingCache, TimingCacheBlob, Worker, utcnow
from registry.services import fleet, retention, timing_caches
from registry.spec import parse_spec
from registry.status import BuildStatus
from workers import timing_sync
from workers.launcher import BuildLog

H100, SM90 = "h100-80gb-hbm3", "sm_90"
MODEL = "sha256:" + "0" * 64


def partition(version: str, precision: tuple[str, ...] = ()) -> str:
    return timing_caches.partition_key(version=version, cc=SM90, sku=H100,
                                       spec=parse_spec({"precision": list(precision)}))


@pytest.fixture
def farm(any_db: Database, tmp_path: Path):  # noqa: ANN201
    """(Database, blob store) on a fresh, migrated database of either kind (conftest's any_db)."""
    with any_db.session() as s:
        s.add(Model(id=MODEL, name="m", size=1, inputs=[], outputs=[], opsets={}, ir_version=8))
    return any_db, LocalBlobStore(tmp_path / "blobs")


def merge(db: Database, blobs: LocalBlobStore, part: str, payload: bytes, expected: int | None = None) -> str:
    """What a worker's after_build does: store the blob, swap it in (at `expected`, or the newest generation)."""
    blob = blobs.put_bytes(payload)
    generation = timing_caches.newest(db, part).generation if expected is None else expected
    timing_caches.compare_and_swap(db, part, generation, blob.digest, blob.size, uuid.uuid4().hex)
    return blob.digest


def age(db: Database, digest: str, hours: float) -> None:
    """The digest's records went out of service `hours` ago."""
    with db.session() as s:
        s.execute(update(TimingCacheBlob).where(TimingCacheBlob.digest == digest)
                  .values(superseded_at=utcnow() - timedelta(hours=hours)))


def last_written(db: Database, part: str, days: float) -> None:
    with db.session() as s:
        s.execute(update(TimingCache).where(TimingCache.partition == part)
                  .values(updated_at=utcnow() - timedelta(days=days)))


def live_worker(db: Database, name: str, *versions: str) -> None:
    fleet.heartbeat(db, fleet.Beat(name=name, hostname="gpu-host", queues=[],
                                   toolchains=[{"kind": "tensorrt", "version": v} for v in versions],
                                   devices=[{"index": 0, "sku": H100, "cc": SM90}]))


def build_row(db: Database, version: str, *, status: BuildStatus = BuildStatus.SUCCEEDED, used: str | None = None,
              finished_days_ago: float | None = None, log_digest: str | None = None) -> None:
    bid = uuid.uuid4().hex
    with db.session() as s:
        s.add(Build(id=bid, key=bid * 2, model_id=MODEL, toolchain="tensorrt", version=version, device=H100,
                    target=f"tensorrt=={version}@{H100}", queue=f"build.tensorrt-{version}.{H100}", spec={},
                    spec_family="f", plugins=[], status=status, max_attempts=3, log_digest=log_digest,
                    timing_cache={"partition": used, "generation_used": 1} if used else None,
                    finished_at=None if finished_days_ago is None else utcnow() - timedelta(days=finished_days_ago)))


def records(db: Database) -> list[tuple[str, int | None, str, bool]]:
    with db.session() as s:
        rows = s.scalars(select(TimingCacheBlob).order_by(TimingCacheBlob.id))
        return [(r.partition, r.generation, r.digest, r.superseded_at is None) for r in rows]


def test_compare_and_swap_records_every_blob(farm) -> None:  # noqa: ANN001
    db, blobs = farm
    part = partition("8.6.0")
    a, b = merge(db, blobs, part, b"TC gen 1"), merge(db, blobs, part, b"TC gen 2")
    lost = merge(db, blobs, part, b"TC lost", expected=1)
    first_too = merge(db, blobs, part, b"TC also first", expected=0)  # lost the race to create the partition
    assert records(db) == [(part, 1, a, False), (part, 2, b, True), (part, None, lost, False),
                           (part, None, first_too, False)]
    assert timing_caches.newest(db, part).digest == b


def test_superseded_blobs_go_only_unreferenced_and_past_the_grace(farm, caplog) -> None:  # noqa: ANN001
    db, blobs = farm
    part, other = partition("8.6.0"), partition("8.6.0", ("fp16",))
    live_worker(db, "host:gpu0", "8.6.0")
    payloads = (b"TC gen 1", b"TC shared", b"TC gen 3", b"TC gen 4", b"TC gen 5")
    old, shared, logged, recent, current = (merge(db, blobs, part, p) for p in payloads)
    lost = merge(db, blobs, part, b"TC lost swap", expected=2)
    assert merge(db, blobs, other, b"TC shared") == shared  # another partition's current cache has those bytes
    build_row(db, "8.6.0", used=part, finished_days_ago=0, log_digest=logged)  # a row still refers to `logged`
    for digest in (old, shared, logged, lost):
        age(db, digest, hours=2)
    age(db, recent, hours=0.1)  # superseded 6 minutes ago: a worker may still be downloading it
    last_written(db, part, days=400)  # the current cache, however old, stays

    plan = retention.gc(db, blobs, keep_last=0, unused_days=0)
    gone = {(c.digest, c.reason) for c in plan.timing_caches_removed}
    assert gone == {(old, "superseded"), (lost, "not_installed")}
    assert plan.timing_caches_kept == {"served": 2} and plan.dry_run
    assert all(blobs.exists(d) for d in (old, lost)) and len(records(db)) == 7  # a dry run removes nothing

    caplog.set_level(logging.INFO, logger="trtfarm.retention")
    done = retention.gc(db, blobs, keep_last=0, unused_days=0, dry_run=False)
    assert {(c.digest, c.reason) for c in done.timing_caches_removed} == gone
    assert done.blobs_removed == 2 and done.bytes_freed == 0
    assert done.timing_cache_bytes_freed == sum(c.size for c in plan.timing_caches_removed) > 0
    assert not blobs.exists(old) and not blobs.exists(lost)
    assert all(blobs.exists(d) for d in (shared, logged, recent, current))
    assert sorted(r[2] for r in records(db)) == sorted([shared, logged, recent, current, shared])
    assert timing_caches.newest(db, part).digest == current
    for digest in (old, lost):
        assert f"digest={digest}" in caplog.text and f"blob removed digest={digest}" in caplog.text
    assert "gc removed timing-cache partition=" in caplog.text and "reason=not_installed" in caplog.text
    assert retention.gc(db, blobs, keep_last=0, unused_days=0, dry_run=False).timing_caches_removed == []


def test_a_blob_installed_again_is_kept(farm) -> None:  # noqa: ANN001
    """A merge whose bytes equal an older generation's: that blob is current again, whatever its old records say."""
    db, blobs = farm
    part = partition("8.6.0")
    live_worker(db, "host:gpu0", "8.6.0")
    same, other = merge(db, blobs, part, b"TC same"), merge(db, blobs, part, b"TC other")
    assert merge(db, blobs, part, b"TC same") == same
    age(db, same, hours=2)
    age(db, other, hours=2)
    done = retention.gc(db, blobs, keep_last=0, unused_days=0, dry_run=False)
    assert [(c.generation, c.digest) for c in done.timing_caches_removed] == [(2, other)]
    assert blobs.exists(same) and not blobs.exists(other) and timing_caches.newest(db, part).digest == same


def test_an_unused_partition_of_a_version_nobody_serves_goes_whole(farm, caplog) -> None:  # noqa: ANN001
    db, blobs = farm
    dead, dead_fp16 = partition("8.5.3.1"), partition("8.5.3.1", ("fp16",))
    built_lately, waited, served = partition("8.5.3.1", ("int8",)), partition("10.3.0"), partition("8.6.0")
    live_worker(db, "host:gpu0", "8.6.0")
    live_worker(db, "old:gpu0", "8.5.3.1", "10.3.0")
    with db.session() as s:  # its heartbeat stopped an hour ago: it serves nothing
        s.execute(update(Worker).where(Worker.name == "old:gpu0")
                  .values(last_seen=utcnow() - timedelta(hours=1)))
    dead_blobs = [merge(db, blobs, dead, b"TC 8.5 gen 1"), merge(db, blobs, dead, b"TC 8.5 gen 2")]
    dead_blobs.append(merge(db, blobs, dead_fp16, b"TC 8.5 fp16"))
    kept = [merge(db, blobs, p, f"TC {p}".encode()) for p in (built_lately, waited, served)]
    for p in (dead, dead_fp16, built_lately, waited, served):
        last_written(db, p, days=40)
    build_row(db, "8.5.3.1", used=built_lately, finished_days_ago=2)  # read it (no write) two days ago
    build_row(db, "8.5.3.1", used=dead, finished_days_ago=35)
    build_row(db, "10.3.0", status=BuildStatus.QUEUED)  # waits for a 10.3 worker to come back

    plan = retention.gc(db, blobs, keep_last=0, unused_days=30)
    assert plan.dry_run and plan.timing_caches_kept == {"queued": 1, "served": 1, "used": 1}
    listed = [(c.partition, c.generation, c.digest, c.reason) for c in plan.timing_caches_removed]
    assert sorted(listed) == sorted([(dead, 2, dead_blobs[1], "partition_unused"),
                                     (dead, 1, dead_blobs[0], "partition_unused"),
                                     (dead_fp16, 1, dead_blobs[2], "partition_unused")])
    assert timing_caches.newest(db, dead).generation == 2 and all(blobs.exists(d) for d in dead_blobs)
    assert "gc removed" not in caplog.text

    caplog.set_level(logging.INFO, logger="trtfarm.retention")
    done = retention.gc(db, blobs, keep_last=0, unused_days=30, dry_run=False)
    assert sorted((c.partition, c.generation, c.digest, c.reason) for c in done.timing_caches_removed) == sorted(listed)
    assert done.blobs_removed == 3 and done.timing_cache_bytes_freed == sum(c.size for c in done.timing_caches_removed)
    assert not any(blobs.exists(d) for d in dead_blobs) and all(blobs.exists(d) for d in kept)
    assert timing_caches.newest(db, dead).generation == 0 and timing_caches.newest(db, dead_fp16).generation == 0
    assert {r[0] for r in records(db)} == {built_lately, waited, served}
    assert f"gc removed timing-cache partition={dead} version=8.5.3.1 generation=2" in caplog.text
    assert "reason=partition_unused since=" in caplog.text and f"blob removed digest={dead_blobs[2]}" in caplog.text

    # a worker of that version coming back starts the partition afresh
    again = merge(db, blobs, dead, b"TC 8.5 again")
    assert timing_caches.newest(db, dead).generation == 1 and timing_caches.newest(db, dead).digest == again


def test_a_vanished_cache_blob_is_a_miss_for_the_worker(farm, tmp_path: Path) -> None:  # noqa: ANN001
    db, blobs = farm
    spec = parse_spec({})
    part = timing_caches.partition_key(version="8.6.0", cc=SM90, sku=H100, spec=spec)
    gone = merge(db, blobs, part, b"TC gen 1")
    blobs.delete(gone)  # gc removed it (or it was quarantined) after the row was read

    class NoMerge:
        def run(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("nothing to merge with: the newest cache's blob is gone")

    ctx = SimpleNamespace(gpus=[{"sku": H100, "cc": SM90}], db=db, blobs=blobs, runners=NoMerge())
    job, toolchain = SimpleNamespace(build_id="b" * 32, spec=spec), SimpleNamespace(kind="tensorrt", version="8.6.0")
    log = BuildLog(tmp_path / "build.log")
    cache = timing_sync.before_build(ctx, job, toolchain, tmp_path, log)
    assert cache.path_in is None and cache.missing and cache.size_in == 0 and "--timing-cache-in" not in cache.args
    assert f"blob {gone} cannot be read (blob_not_found" in log.tail_text() and "a miss" in log.tail_text()

    cache.path_out.write_bytes(b"TC built from scratch")  # what the runner writes after the build
    record = timing_sync.after_build(ctx, toolchain, cache, {"timing_cache": {}}, tmp_path, log)
    assert record["blob_missing"] and record["written_generation"] == 2  # ours replaces the vanished one
    assert blobs.get_bytes(timing_caches.newest(db, part).digest) == b"TC built from scratch"

    # the newest moved on meanwhile and its blob is gone too: no merge, ours goes in
    cache = timing_sync.before_build(ctx, job, toolchain, tmp_path, log)
    blobs.delete(merge(db, blobs, part, b"TC gen 3"))
    cache.path_out.write_bytes(b"TC ours again")
    record = timing_sync.after_build(ctx, toolchain, cache, {"timing_cache": {}}, tmp_path, log)
    assert record["written_generation"] == 4 and "keeping ours" in log.tail_text()
