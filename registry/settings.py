"""One settings class per process, read from TRTFARM_* environment variables (pydantic-settings).

Nothing is read at import time: call `get_settings()` (cached) or build `Settings(...)` explicitly.
Embedded defaults put everything under TRTFARM_HOME (SQLite, a blob folder, kombu's SQLAlchemy
transport on SQLite); production sets the database, broker and blob URLs.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.db.session import PoolSize
from registry.intake import IntakeLimits

DEFAULT_PORT = 8470  # `trtfarm up` and `trtfarm api` listen here unless told otherwise


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "trtfarm"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRTFARM_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None  # default: sqlite:///<home>/farm.db
    broker_url: str | None = None  # default: sqla+sqlite:///<home>/broker.db
    blob_url: str | None = None  # file:///… or s3://bucket/prefix; default: file://<home>/blobs
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    # toolchains this worker runs: "tensorrt=/opt/trt86/bin/python,onnxruntime=python3"; a kind may repeat
    # ("tensorrt=/opt/trt85/bin/python,tensorrt=/opt/trt86/bin/python": both versions' queues, one build at a time)
    toolchains: str = Field(default_factory=lambda: f"onnxruntime={sys.executable}")
    # GPU index this worker owns (CUDA_VISIBLE_DEVICES for its runners); None = all / CPU only
    gpu: int | None = None
    worker_name: str | None = None

    # API keys: "auto" = required unless the API listens on loopback only; "required"; "off" (loopback only)
    auth: Literal["auto", "required", "off"] = "auto"
    metrics_public: bool = False  # /metrics without a key (a scraper inside the cluster)
    metrics_cache_s: float = 5.0  # /metrics reads the farm's state from the database at most this often
    docs_public: bool = False  # /docs and /openapi.json without a key

    # database connections per process (the API runs at most size + overflow request threads: no request
    # waits for a connection it cannot get)
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_pool_timeout_s: float = 10.0
    # the API's cache of resolve answers, engine infos and API keys, emptied by the database's change
    # notifications (PostgreSQL only; registry/readcache.py)
    read_cache: bool = True
    read_cache_entries: int = 10_000
    # live event streams (GET /v1/builds/{id}/events, /v1/events): at most this many at once per API process
    # (503 beyond), a comment every keepalive seconds, and how often a stream looks for new events when no
    # notification wakes it (SQLite always; PostgreSQL while its listener is not connected)
    event_streams: int = 200
    event_keepalive_s: float = 15.0
    event_poll_s: float = 0.5

    # a folder store's blobs read from disk by SDK clients on this host (loopback, no proxy in between) instead
    # of streamed through the API (GET /v1/engines/{id}/artifact/local): the SDK still hashes every byte
    local_reads: bool = True

    max_upload_mib: int = 2048
    # an INT8 calibration upload (POST /v1/calibration): the request body, and a data set's arrays uncompressed
    max_calibration_mib: int = 2048
    # TensorRT plugin libraries (POST /v1/plugins, admin scope; docs/design.md "Security model"): the upload
    # limit, and the sha256 digests this process allows (comma-separated): the API refuses a build naming any
    # other, and a worker never loads any other, whatever the API allowed
    max_plugin_mib: int = 256
    allowed_plugins: str = ""
    # model intake: graph elements scanned before parsing; the parser's memory (plus 3x the upload) and time
    max_model_elements: int = 500_000
    intake_memory_mib: int = 1024
    intake_timeout_s: float = 120.0
    # optimization profiles: the largest dimension and the most elements of one input's max shape
    max_profile_dim: int = 1 << 20
    max_profile_elements: int = 1 << 31
    build_timeout_s: int = 3600
    lease_s: int = 120
    max_attempts: int = 3
    validation_seed: int = 0
    # the benchmark of each built engine (a spec's `bench` overrides them): timed runs, untimed runs before,
    # and a wall-time budget that ends it early (never below 3 timed runs)
    bench_iterations: int = 50
    bench_warmup: int = 5
    bench_max_s: float = 5.0
    # one long-lived runner process per toolchain serves every command of every build (workers/warm.py);
    # it is replaced after this many commands. Off: a fresh runner process per command.
    warm_runners: bool = True
    runner_max_commands: int = 200
    worker_live_s: int = 60  # a worker whose heartbeat is older is not counted as serving
    reaper_interval_s: float = 5.0
    # a queued build with no message in flight for this long, while a worker of its queue idles, is re-sent
    requeue_stale_s: float = 30.0
    relay_interval_s: float = 0.3

    @field_validator("allowed_plugins")
    @classmethod
    def _digests(cls, value: str) -> str:
        """TRTFARM_ALLOWED_PLUGINS as canonical digests (sha256:<64 hex>; the bare hex is taken too)."""
        found = []
        for item in filter(None, (p.strip().lower() for p in value.split(","))):
            digest = item if item.startswith("sha256:") else f"sha256:{item}"
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ValueError(f"TRTFARM_ALLOWED_PLUGINS item {item!r} is not a sha256 digest (sha256:<64 hex>, "
                                 "as `trtfarm plugins list` shows them)")
            found.append(digest)
        return ",".join(dict.fromkeys(found))

    def allowed_plugin_digests(self) -> frozenset[str]:
        """The plugin libraries this process allows (TRTFARM_ALLOWED_PLUGINS)."""
        return frozenset(filter(None, self.allowed_plugins.split(",")))

    def pool(self) -> PoolSize:
        return PoolSize(self.db_pool_size, self.db_max_overflow, self.db_pool_timeout_s)

    def intake_limits(self) -> IntakeLimits:
        return IntakeLimits(self.max_model_elements, self.intake_memory_mib, self.intake_timeout_s)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'farm.db'}"

    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{self.home / 'blobs'}"

    def toolchain_entries(self) -> list[tuple[str, str]]:
        """Parse TRTFARM_TOOLCHAINS into [(kind, interpreter)], in order; a kind may repeat (one worker serving
        two TensorRT versions: tensorrt=/opt/trt85/bin/python,tensorrt=/opt/trt86/bin/python)."""
        from registry.errors import InvalidInput

        entries: list[tuple[str, str]] = []
        for item in filter(None, (p.strip() for p in self.toolchains.split(","))):
            kind, sep, python = item.partition("=")
            if not sep or not kind.strip() or not python.strip():
                raise InvalidInput(
                    f"TRTFARM_TOOLCHAINS item {item!r} is not kind=interpreter "
                    "(e.g. tensorrt=/opt/trt86/bin/python,onnxruntime=python3)"
                )
            entry = (kind.strip(), python.strip())
            if entry in entries:
                raise InvalidInput(f"TRTFARM_TOOLCHAINS names {entry[0]}={entry[1]} twice")
            entries.append(entry)
        return entries

    def toolchain_interpreters(self) -> dict[str, str]:
        """{kind: interpreter} of the first interpreter given for each kind."""
        first: dict[str, str] = {}
        for kind, python in self.toolchain_entries():
            first.setdefault(kind, python)
        return first


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
