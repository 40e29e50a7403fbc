"""Public schemas: what the API answers and the SDK reads. Separate from the ORM tables.

Only pydantic here: the SDK imports this module with nothing else installed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry.status import BuildStatus


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
    created_at: datetime


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model id, sha256:<hex>")
    target: str = Field(description="kind==version@device; omitted parts are filled from the fleet")
    spec: dict[str, Any] = Field(default_factory=dict, description="BuildSpec fields; unknown fields are an error")
    plugins: list[str] = Field(default_factory=list, description="plugin library digests")
    calibration: str | None = Field(default=None, description="INT8 calibration cache digest")


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
    status: BuildStatus
    attempt: int
    max_attempts: int
    worker: str | None = None
    waiting_reason: str | None = None
    progress: str | None = None
    error: ErrorInfo | None = None
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
    validation: dict[str, Any] | None = None
    validation_passed: bool | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    build_seconds: float | None = None
    created_at: datetime


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


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None
