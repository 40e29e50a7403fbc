"""Public schemas: what the API answers and the SDK reads. Separate from the ORM tables.

Only pydantic here: the SDK imports this module with nothing else installed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.status import BuildStatus

DIGEST = r"^sha256:[0-9a-f]{64}$"  # a model id, a blob digest
HEX_ID = r"^[0-9a-f]{32}$"  # a build or engine id
ID_OR_PREFIX = r"^[0-9a-f]{8,32}$"  # a build or engine id, or a unique prefix of it (registry.services.ids)
MODEL_OR_PREFIX = r"^(sha256:)?[0-9a-f]{8,64}$"  # a model id, or a unique prefix of its digest
SLUG = r"^[a-z0-9][a-z0-9_.-]{0,127}$"  # a toolchain, a device (SKU, sm_XX, CPU), a version
MAX_PLUGINS = 16


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TensorInfo(Schema):
    name: str
    dtype: str
    shape: list[int | str | None] = Field(description="int for a fixed dim, a name for a symbolic one, null if unknown")


class FileInfo(Schema):
    path: str
    sha256: str
    size: int


class ModelInfo(Schema):
    id: str
    name: str
    size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opsets: dict[str, int]
    ir_version: int
    producer: str = ""
    files: list[FileInfo] = []
    op_types: dict[str, int] | None = Field(
        None, description="node count per op type (\"domain:Op\" outside ai.onnx); null for models registered "
                          "before the farm recorded it")
    created_at: datetime


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=DIGEST, description="model id, sha256:<64 hex>")
    target: str = Field(min_length=1, max_length=255,
                        description="kind==version@device; omitted parts are filled from the fleet")
    spec: dict[str, Any] = Field(default_factory=dict, description="BuildSpec fields; unknown fields are an error")
    plugins: list[Annotated[str, Field(pattern=DIGEST)]] = Field(
        default_factory=list, max_length=MAX_PLUGINS, description="plugin library digests (sha256:<64 hex>)")
    calibration: str | None = Field(
        default=None, pattern=DIGEST,
        description="INT8 calibration: the digest (sha256:<64 hex>) of a data set or a calibration cache uploaded "
                    "with POST /v1/calibration (which recorded its kind); part of the build key")


class CalibrationInfo(Schema):
    digest: str = Field(description="sha256:<64 hex> of the uploaded file: what BuildRequest.calibration names")
    kind: str = Field(description="data (an .npz data set) or cache (a TensorRT calibration cache)")
    size: int
    name: str | None = None
    summary: dict[str, Any] = Field(
        description="data: inputs {name: {dtype, shape}} and samples; cache: header, algorithm, tensorrt, tensors")
    created_at: datetime


class PluginInfo(Schema):
    digest: str = Field(description="sha256:<64 hex> of the library: what BuildRequest.plugins names")
    name: str | None = Field(None, description="the file name it was uploaded as")
    size: int
    machine: str = Field(description="the architecture its ELF header names (x86_64, aarch64, ...)")
    uploaded_at: datetime
    allowed: bool = Field(description="whether the API's TRTFARM_ALLOWED_PLUGINS names it (builds may use it only "
                                      "then; each worker checks its own allow-list too)")


class PluginList(BaseModel):
    items: list[PluginInfo]
    allow_list: list[str] = Field(default_factory=list,
                                  description="the API's TRTFARM_ALLOWED_PLUGINS, uploaded or not")


class ErrorInfo(Schema):
    code: str
    message: str


class BuildInfo(Schema):
    id: str
    key: str
    model: str
    target: str
    toolchain: str
    version: str
    device: str
    queue: str
    spec: dict[str, Any]
    calibration: str | None = None  # the INT8 calibration data set or cache it was submitted with
    status: BuildStatus
    attempt: int
    max_attempts: int
    worker: str | None = None
    waiting_reason: str | None = None
    progress: str | None = None
    error: ErrorInfo | None = None
    warnings: list[ErrorInfo] = []  # what the user should know though the build went through
    timings: dict[str, Any] = {}
    timing_cache: dict[str, Any] | None = None
    engine_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status.terminal


class BuildList(Schema):
    items: list[BuildInfo]
    total: int


class EngineTensor(Schema):
    """One input or output of an engine, as a client binds it (the engine's metadata["io"], typed)."""

    name: str
    mode: str = Field(description="input or output")
    dtype: str = Field(description="numpy's name of the element type (float32, float16, int8, ...; bfloat16 for bf16)")
    shape: list[int] = Field(description="-1 for a dimension set at run time (within the input's profiles)")
    format: str = Field("linear", description="memory layout: linear (row major), or one of TensorRT's vectorized "
                                              "formats (hwc8, chw4, ...: docs/design.md, spec.io_formats)")


class EngineInfo(Schema):
    id: str
    build_id: str
    build_key: str
    model: str
    toolchain: str
    version: str
    device: str
    sku: str | None = None
    cc: str | None = None
    hardware_compatibility: str
    version_compatible: bool
    refittable: bool
    spec: dict[str, Any]
    digest: str
    size: int
    filename: str
    metadata: dict[str, Any]
    io: list[EngineTensor] = Field(default_factory=list,
                                   description="the buffers a client binds; read from metadata.io when not given")
    validation: dict[str, Any] | None = None
    validation_passed: bool | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    build_seconds: float | None = None
    pinned: bool = False  # never removed by gc
    plugins: list[str] = Field(default_factory=list, description="the plugin libraries (digests, GET /v1/plugins/"
                               "{digest}) a runtime must load before it deserializes the engine; from metadata")
    created_at: datetime
    fetches: int | None = Field(None, description="downloads handed out (in listings; null elsewhere)")
    last_fetched_at: datetime | None = Field(None, description="the last of them (in listings)")

    @model_validator(mode="after")
    def _io_from_metadata(self) -> EngineInfo:
        """`io` from metadata["io"] (every runner writes it) and `plugins` from metadata["plugins"] when the answer
        has none: an older farm's or a cached answer reads the same."""
        if not self.io and isinstance(self.metadata.get("io"), list):
            try:
                self.io = [EngineTensor.model_validate(t) for t in self.metadata["io"]]
            except ValidationError:
                self.io = []
        if not self.plugins and isinstance(self.metadata.get("plugins"), list):
            self.plugins = [str(d) for d in self.metadata["plugins"]]
        return self


class LocalArtifact(Schema):
    """Where a client on the API's host reads an artifact from disk (the folder store's blob file)."""

    path: str
    digest: str
    size: int


class EngineList(Schema):
    items: list[EngineInfo]


class Resolution(Schema):
    engine: EngineInfo
    match_class: str
    reason: str
    warning: str | None = None


class WorkerInfo(Schema):
    name: str
    hostname: str
    toolchains: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    queues: list[str]
    last_seen: datetime
    current_build: str | None = None
    live: bool = True
    drain_requested: bool = False
    state: str = "idle"  # building, idle, draining (finishing its build, taking no new one), drained, lost


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="unique name, e.g. ci-builder")
    scopes: list[str] = Field(min_length=1, max_length=3, description="read, submit, admin (admin ⊃ submit ⊃ read)")


class KeyInfo(Schema):
    id: str
    name: str
    prefix: str = Field(description="the token starts tf_<prefix>_")
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyInfo):
    token: str = Field(description="shown once: the farm keeps only its hash")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class GcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_last: int = Field(ge=0, le=1_000_000, description="keep the newest N engines per (model, target, spec family)")
    unused_days: float = Field(ge=0, le=36_500, description="keep engines downloaded or built within this many days")
    dry_run: bool = Field(True, description="only report what would go (the default)")


class GcRemoved(Schema):
    engine_id: str
    model: str
    target: str
    size: int
    created_at: datetime
    last_fetched_at: datetime | None = None


class GcCacheRemoved(Schema):
    partition: str
    generation: int | None = Field(None, description="None: a merge that lost its compare-and-swap")
    digest: str
    size: int
    reason: str = Field(description="superseded, not_installed (lost its compare-and-swap) or partition_unused "
                                    "(the whole partition goes: unused and its TensorRT version served by no "
                                    "live worker)")
    since: datetime = Field(description="out of service since; partition_unused: last written or used by a build")


class GcInputRemoved(Schema):
    kind: str = Field(description="calibration data, calibration cache (uploaded, or made by a build from a data "
                                  "set that goes) or plugin")
    digest: str
    size: int
    name: str | None = Field(None, description="the file name it was uploaded as")
    created_at: datetime


class InputDeleted(Schema):
    digest: str
    blobs_removed: int


class GcReportInfo(Schema):
    dry_run: bool
    removed: list[GcRemoved]
    kept: dict[str, int] = Field(description="engines kept, by reason: pinned, newest, used, grace")
    blobs_removed: int = Field(description="blobs deleted: engines, build logs and timing caches")
    bytes_freed: int = Field(description="bytes of the engines' blobs deleted")
    timing_caches_removed: list[GcCacheRemoved] = Field(
        [], description="timing-cache blobs removed (a dry run: that would be), a partition's with it")
    timing_caches_kept: dict[str, int] = Field(
        {}, description="timing-cache partitions kept whole, by reason: served (a live worker has its TensorRT "
                        "version), queued (a queued or running build of that version), used (within unused_days)")
    timing_cache_bytes_freed: int = Field(0, description="bytes of the timing-cache blobs deleted")
    inputs_removed: list[GcInputRemoved] = Field(
        [], description="uploaded calibration inputs and plugin libraries no build names, uploaded before "
                        "unused_days (a data set's made caches go with it)")
    input_bytes_freed: int = Field(0, description="bytes of the removed inputs")


class ModelDeleted(Schema):
    model: str
    engines: int
    files: int
    blobs_removed: int
