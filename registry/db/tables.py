"""The SQL schema. Migrations in migrations/versions must match it (a test compares them)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from registry.status import BuildStatus


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class StatusColumn(TypeDecorator):
    """A BuildStatus stored as its name (VARCHAR), read back as the enum."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: BuildStatus | str | None, dialect: Any) -> str | None:
        return None if value is None else BuildStatus(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> BuildStatus | None:
        return None if value is None else BuildStatus(value)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON, int: BigInteger}


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<hex>
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    inputs: Mapped[list[Any]]
    outputs: Mapped[list[Any]]
    opsets: Mapped[dict[str, Any]]
    ir_version: Mapped[int]
    producer: Mapped[str] = mapped_column(String(255), default="")
    uploaded_by: Mapped[str | None] = mapped_column(String(32))  # the API key's id; None in open mode
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # op type ("Conv", or "domain:Op" outside the default domain) -> node count, subgraphs included; None for
    # models registered before migration 0009 recorded it
    op_types: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ModelFile(Base):
    __tablename__ = "model_files"

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int]
    is_model: Mapped[bool] = mapped_column(Boolean, default=False)


class Build(Base):
    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    toolchain: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(255))
    queue: Mapped[str] = mapped_column(String(255), index=True)
    spec: Mapped[dict[str, Any]]
    spec_family: Mapped[str] = mapped_column(String(64))
    plugins: Mapped[list[Any]]
    calibration: Mapped[str | None] = mapped_column(String(71))
    status: Mapped[BuildStatus] = mapped_column(StatusColumn(), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    log_digest: Mapped[str | None] = mapped_column(String(71))
    log_tail: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[str | None] = mapped_column(String(255))
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timing_cache: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # what the user should know about this build though it went through: [{"code", "message"}]
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_by: Mapped[str | None] = mapped_column(String(32), index=True)  # the API key's id; None: open mode
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # its last BuildEvent.last_seq


class BuildEvent(Base):
    """One event of a build's stream (registry/services/buildevents.py): a state, stage or end, or a chunk of
    log lines numbered seq..last_seq (one stream id per line)."""

    __tablename__ = "build_events"
    __table_args__ = (Index("ix_build_events_build_seq", "build_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # the fleet stream's order
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Engine(Base):
    __tablename__ = "engines"
    # a model's engines newest first, and those of one time (resolve's tie-break); resolve finds the time in
    # the signature summary (EngineSignature)
    __table_args__ = (Index("ix_engines_model_created", "model_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id"), unique=True)
    build_key: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))  # indexed with created_at (below)
    toolchain: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(32))  # read from the artifact itself where possible
    device: Mapped[str] = mapped_column(String(128))  # the key's device component
    sku: Mapped[str | None] = mapped_column(String(128))  # what it was built on
    cc: Mapped[str | None] = mapped_column(String(16))
    hardware_compatibility: Mapped[str] = mapped_column(String(32))
    version_compatible: Mapped[bool] = mapped_column(Boolean)
    exclude_lean_runtime: Mapped[bool] = mapped_column(Boolean, default=False)
    refittable: Mapped[bool] = mapped_column(Boolean, default=False)
    spec: Mapped[dict[str, Any]]
    spec_family: Mapped[str] = mapped_column(String(64), index=True)
    # log2 of how many input shapes its profiles hold (registry.services.shapes.profile_width): resolve
    # prefers the widest engine of a match class, then the newest
    profile_width: Mapped[float] = mapped_column(Float)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int]
    filename: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]]
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    validation_passed: Mapped[bool | None] = mapped_column(Boolean)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    build_seconds: Mapped[float | None] = mapped_column(Float)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)  # never removed by `trtfarm gc`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EngineFetch(Base):
    """How often each engine was handed out for download, and when last: what `trtfarm gc --unused-days`
    and `rollout --since` read. Apart from `engines` so that counting a download never wakes the API's read
    cache (engines NOTIFY on change)."""

    __tablename__ = "engine_fetches"

    engine_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_fetched_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class EngineSignature(Base):
    """Per model, one row per engine signature (the columns a compatibility verdict depends on), split by the
    filters resolve applies (validation failed or not; spec family, plus a row for every family, "*"), with
    the newest engine's time, how many engines share it and the greatest engine id (the 404's example), and
    the widest profile width of its engines with the newest time among the engines of that width (what
    resolve ranks a match class's engines by). Kept by `registry.services.signatures` in the transaction that
    writes the engines; resolve reads it instead of grouping the engines. SKU and cc are "" where the engine
    has none (key columns are NOT NULL)."""

    __tablename__ = "engine_signatures"

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), primary_key=True)
    spec_family: Mapped[str] = mapped_column(String(64), primary_key=True)  # "*": every family
    toolchain: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    sku: Mapped[str] = mapped_column(String(128), primary_key=True)
    cc: Mapped[str] = mapped_column(String(16), primary_key=True)
    hardware_compatibility: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_compatible: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    exclude_lean_runtime: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    validation_failed: Mapped[bool] = mapped_column(Boolean, primary_key=True)  # validation_passed is false
    newest: Mapped[datetime]
    engines: Mapped[int]
    example: Mapped[str] = mapped_column(String(32))  # the greatest engine id
    widest: Mapped[float] = mapped_column(Float)  # the greatest profile_width of its engines
    widest_newest: Mapped[datetime]  # the newest created_at among its engines of that width


class TimingCache(Base):
    __tablename__ = "timing_caches"

    partition: Mapped[str] = mapped_column(String(255), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32))  # build id


class TimingCacheBlob(Base):
    """Every timing-cache blob a worker stored, written by `services.timing_caches.compare_and_swap` with the
    swap: the partition's current generation (superseded_at None), those it replaced (superseded_at: when),
    and merges that lost their swap (generation None, superseded when stored). A blob store cannot be listed:
    this is what `trtfarm gc` compacts from (`services.retention`)."""

    __tablename__ = "timing_cache_blobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partition: Mapped[str] = mapped_column(String(255), index=True)
    generation: Mapped[int | None] = mapped_column(Integer)  # None: lost its compare-and-swap, never installed
    digest: Mapped[str] = mapped_column(String(71), index=True)
    size: Mapped[int]
    build_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None]  # None: the partition's current cache


class Calibration(Base):
    """An uploaded INT8 calibration input (registry.services.calibration): a data set (.npz) or a TensorRT
    calibration cache, by the digest of its blob; also the caches builds made from data sets."""

    __tablename__ = "calibrations"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # data, cache
    size: Mapped[int]
    name: Mapped[str | None] = mapped_column(String(255))  # the file name it was uploaded as
    summary: Mapped[dict[str, Any]]  # registry.calibdata: data: inputs and samples; cache: header, algorithm
    uploaded_by: Mapped[str | None] = mapped_column(String(32))  # the API key's id; None: open mode or a build
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalibrationCache(Base):
    """The cache a build's calibration made from a data set, found again by the next build of the same model,
    data set, TensorRT version and calibrator (and GPU, for the calibrators whose caches do not travel:
    `device` is "" for entropy2 and minmax)."""

    __tablename__ = "calibration_caches"

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    data_digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), primary_key=True)
    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    cache_digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int]
    build_id: Mapped[str | None] = mapped_column(String(32))  # the build that calibrated
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Plugin(Base):
    """An uploaded TensorRT plugin library (registry.services.plugins), by the digest of its blob. Uploading needs
    the admin scope; a build may name it only while TRTFARM_ALLOWED_PLUGINS allows its digest."""

    __tablename__ = "plugins"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))  # the file name it was uploaded as
    size: Mapped[int]
    machine: Mapped[str] = mapped_column(String(32))  # the ELF header's architecture (x86_64, aarch64)
    uploaded_by: Mapped[str | None] = mapped_column(String(32))  # the admin key's id; None: open mode
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    toolchains: Mapped[list[Any]]
    devices: Mapped[list[Any]]
    queues: Mapped[list[Any]]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    current_build: Mapped[str | None] = mapped_column(String(32))
    instance: Mapped[str | None] = mapped_column(String(32))  # the process holding the name (a random token)
    drain_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # take no new build


class Outbox(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
