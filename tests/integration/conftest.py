"""Integration fixtures: real PostgreSQL, real Redis (Celery broker), moto's S3 server over HTTP, and a
farm of real processes (`python -m registry.cli api` + N × `python -m registry.cli worker`).

Isolation (pytest-xdist runs these in parallel, and other suites may share the machine):
- PostgreSQL: one template database per test session (`trtfarm_it_<xdist worker>_<random>`, migrated once
  with registry.db.migrate.upgrade); every farm gets its own clone of it (CREATE DATABASE … TEMPLATE);
  all of them are dropped at the end of the session.
- Redis: every farm holds one database index (5..15) for its lifetime, claimed with a file lock, flushed
  before use. Queue names are the same in every farm, so two live farms must never share an index.
- S3: one moto server per session, one bucket per session, one key prefix per farm.

Timings are short: the reaper runs every second, builds benchmark a few iterations only.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis as redis_lib

from tests.net import free_port
from tests.s3server import AWS_TEST_ENV, AWS_TEST_UNSET, start_moto_server
from workers.toolchains import BOOTSTRAP as RUNNER_BOOTSTRAP

REPO = Path(__file__).resolve().parents[2]
PG_HOST = os.environ.get("TRTFARM_IT_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TRTFARM_IT_PG_PORT", "5432"))
PG_USER = os.environ.get("TRTFARM_IT_PG_USER", "postgres")
REDIS_HOST = os.environ.get("TRTFARM_IT_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TRTFARM_IT_REDIS_PORT", "6379"))
REDIS_DBS = range(5, 16)  # Redis has 16 databases by default; 0-4 are left to everything else
START_TIMEOUT_S = 90.0


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def sqlalchemy_url(dbname: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def _admin() -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                           connect_timeout=5)


# ------------------------------------------------------------------------------ services reachable?


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> None:
    missing = [f"{name} at {h}:{p}" for name, h, p in (("PostgreSQL", PG_HOST, PG_PORT),
                                                       ("Redis", REDIS_HOST, REDIS_PORT))
               if not _reachable(h, p)]
    if missing:
        pytest.fail(f"integration tests need {' and '.join(missing)} (.ci/run starts them)", pytrace=False)


# -------------------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """The session's template database and the clones made from it."""

    def __init__(self) -> None:
        self.template = f"trtfarm_it_{xdist_worker()}_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    @property
    def template_url(self) -> str:
        return sqlalchemy_url(self.template)

    def create_template(self) -> None:
        from registry.db.migrate import upgrade

        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        upgrade(self.template_url)  # Alembic disposes of its engine: no connection is left on the template

    def clone(self) -> str:
        """A fresh, migrated database (a copy of the template); returns its SQLAlchemy URL."""
        name = f"{self.template}_{uuid.uuid4().hex[:6]}"
        for attempt in range(20):
            try:
                with _admin() as conn:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                break
            except psycopg.errors.ObjectInUse:  # autovacuum or a stray connection is on the template
                self._disconnect_everyone_from_template()
                time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"could not clone {self.template}: it stays in use")
        self.created.append(name)
        return sqlalchemy_url(name)

    def _disconnect_everyone_from_template(self) -> None:
        """The template belongs to this test session alone, so nobody has business being connected to it."""
        with _admin() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()",
                         (self.template,))

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        with _admin() as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def postgres(services: None) -> Iterator[Postgres]:
    pg = Postgres()
    try:
        pg.create_template()
        yield pg
    finally:
        pg.drop_all()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, migrated database of either kind (a clone of the session's PostgreSQL template, or the SQLite
    file of an embedded farm's home), as a registry.db.session.Database."""
    from registry.db.migrate import upgrade
    from registry.db.session import Database
    from registry.settings import Settings

    if request.param == "postgresql":
        postgres: Postgres = request.getfixturevalue("postgres")
        url = postgres.clone()
    else:
        url = Settings(home=tmp_path).resolved_database_url()
        upgrade(url)
    db = Database(url)
    yield db
    db.engine.dispose()
    if request.param == "postgresql":
        postgres.drop(url)


# ------------------------------------------------------------------------------------------- Redis


class RedisSlot:
    """One Redis database index, held (file lock) for as long as a farm lives, flushed before and after."""

    def __init__(self) -> None:
        self.index: int | None = None
        self._lock_file: Any = None

    def acquire(self, timeout: float = 300.0) -> int:
        deadline = time.monotonic() + timeout
        lock_dir = Path(tempfile.gettempdir())
        while time.monotonic() < deadline:
            for index in REDIS_DBS:
                f = open(lock_dir / f"trtfarm-it-redis-{REDIS_PORT}-{index}.lock", "w")  # noqa: SIM115
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.close()
                    continue
                self.index, self._lock_file = index, f
                self.client().flushdb()
                return index
            time.sleep(0.5)
        raise TimeoutError("no free Redis database index for a test farm")

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.index}"

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.index)

    def release(self) -> None:
        if self._lock_file is None:
            return
        try:
            self.client().flushdb()
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


# ---------------------------------------------------------------------------------------------- S3


@dataclass
class S3:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str) -> set[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return {o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])}


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_TEST_ENV.items():
            mp.setenv(name, value)
        for name in AWS_TEST_UNSET:
            mp.delenv(name, raising=False)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request otherwise
        url, stop = start_moto_server()
        try:
            bucket = f"trtfarm-it-{xdist_worker()}-{uuid.uuid4().hex[:8]}".lower()
            S3(url, bucket).client().create_bucket(Bucket=bucket)
            yield S3(url, bucket)
        finally:
            stop()


# ------------------------------------------------------------------------------------------- farms


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc), including ones in other sessions (toolchain runners)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


@dataclass
class Proc:
    """A farm process (API or worker) in its own session, logging to a file."""

    name: str
    popen: subprocess.Popen
    log: Path
    env: dict[str, str]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process, its group and every descendant (a runner lives in its own session)."""
        if not self.alive:
            return
        victims = _descendants(self.popen.pid)
        _signal_group(self.popen.pid, signal.SIGKILL)
        _kill_all(victims)
        self.popen.wait(timeout=10)

    def kill_alone(self) -> None:
        """SIGKILL the process and its own group only, as the OOM killer would: what it started in other
        sessions (toolchain runners) must go by itself."""
        if self.alive:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, grace: float = 5.0) -> None:
        if not self.alive:
            return
        victims = _descendants(self.popen.pid)
        _signal_group(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        if self.alive:
            self.kill()
        _kill_all(victims)  # runners left behind by a warm shutdown

    def tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@dataclass
class RunningFarm:
    """A farm of real processes and handles to its real backing services."""

    name: str
    home: Path
    env: dict[str, str]
    database_url: str
    redis: RedisSlot
    blob_url: str
    s3: S3 | None
    s3_prefix: str | None
    port: int = 0
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    more_apis: list[tuple[Proc, str]] = field(default_factory=list)  # (process, base URL) beside the first API
    token: str | None = None  # an admin key of the harness when the farm requires API keys
    _clients: list[Any] = field(default_factory=list)
    _db: Any = None
    _sdk: Any = None

    # ----- addresses and clients
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, cache_dir: Path | None = None, **kwargs: Any) -> Any:
        """An SDK client of this farm with its own empty cache."""
        from registry.client import Farm

        cache = cache_dir or Path(tempfile.mkdtemp(prefix="sdk-cache-", dir=self.home))
        kwargs.setdefault("token", self.token)
        farm = Farm(self.url, cache_dir=cache, **kwargs)
        self._clients.append(farm)
        return farm

    @property
    def sdk(self) -> Any:
        """The farm's default SDK client (registry.client.Farm, its own cache folder)."""
        if self._sdk is None:
            self._sdk = self.client()
        return self._sdk

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client of the API (no key unless the caller passes headers)."""
        client = httpx.Client(base_url=self.url, timeout=60, **kwargs)
        self._clients.append(client)
        return client

    @property
    def db(self) -> Any:
        """registry.db.session.Database on the farm's own PostgreSQL database."""
        if self._db is None:
            from registry.db.session import Database

            self._db = Database(self.database_url)
        return self._db

    def settings(self, **overrides: Any) -> Any:
        from registry.settings import Settings

        values = dict(database_url=self.database_url, broker_url=self.redis.url, blob_url=self.blob_url,
                      s3_endpoint_url=self.s3.endpoint if self.s3 else None, s3_region="us-east-1", home=self.home)
        values.update(overrides)
        return Settings(**values)

    def celery(self) -> Any:
        from workers.celery_app import make_celery

        return make_celery(self.settings())

    def blob_path(self, digest: str) -> Path:
        """Where a folder-store farm (blobs="file") keeps a blob."""
        from registry.blobs.local import LocalBlobStore

        assert self.blob_url.startswith("file://"), "blob_path is for farms started with blobs='file'"
        return LocalBlobStore(self.blob_url.removeprefix("file://")).path_for(digest)

    def blob_key(self, digest: str) -> str:
        hexdigest = digest.removeprefix("sha256:")
        return f"{self.s3_prefix}/blobs/sha256/{hexdigest[:2]}/{hexdigest}"

    def s3_keys(self) -> set[str]:
        assert self.s3 is not None and self.s3_prefix is not None
        return self.s3.keys(self.s3_prefix + "/")

    # ----- processes
    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str]) -> Proc:
        env = {**self.env, **extra_env}
        log = self.home / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "registry.cli", *args], env=env, cwd=REPO,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return Proc(name, popen, log, env)

    def start_api(self) -> Proc:
        self.port = free_port()
        self.api = self._start_api_process("api", self.port)
        return self.api

    def add_api(self) -> str:
        """One more API process on the same database, broker and store; returns its base URL."""
        port = free_port()
        proc = self._start_api_process(f"api{len(self.more_apis) + 2}", port)
        self.more_apis.append((proc, f"http://127.0.0.1:{port}"))
        return self.more_apis[-1][1]

    def _start_api_process(self, name: str, port: int) -> Proc:
        api = self._spawn(name, ["api", "--host", "127.0.0.1", "--port", str(port)], {})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not api.alive:
                raise RuntimeError(f"the API exited {api.popen.returncode}:\n{api.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return api
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the API was not ready in {START_TIMEOUT_S:.0f} s:\n{api.tail()}")

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()

    def add_worker(self, wait: bool = True, **env: Any) -> Proc:
        """Start one more worker (`python -m registry.cli worker`); env values override the farm's (TRTFARM_*)."""
        index = len(self.workers)
        name = f"{self.name}-w{index}"
        extra = {"TRTFARM_WORKER_NAME": name, **{k: str(v) for k, v in env.items()}}
        proc = self._spawn(f"worker{index}", ["worker"], extra)
        self.workers.append(proc)
        if wait:
            self.wait_live([extra["TRTFARM_WORKER_NAME"]], procs=[proc])
        return proc

    def live_workers(self) -> set[str]:
        answer = httpx.get(f"{self.url}/v1/workers", timeout=10, headers=self.auth_headers).json()
        return {w["name"] for w in answer if w["live"]}

    def wait_live(self, names: list[str], timeout: float = START_TIMEOUT_S, procs: list[Proc] | None = None) -> None:
        deadline = time.monotonic() + timeout
        watched = procs if procs is not None else [w for w in self.workers if w.env["TRTFARM_WORKER_NAME"] in names]
        while time.monotonic() < deadline:
            dead = [w for w in watched if not w.alive]
            if dead:
                raise RuntimeError(f"worker {dead[0].name} exited {dead[0].popen.returncode}:\n{dead[0].tail()}")
            if set(names) <= self.live_workers():
                time.sleep(0.5)  # heartbeat comes before Celery consumes: give the consumer a moment
                return
            time.sleep(0.2)
        raise TimeoutError(f"workers {names} not live in {timeout:.0f} s:\n{self.logs()}")

    def procs(self) -> list[Proc]:
        return [p for p in (self.api, *(p for p, _ in self.more_apis), *self.workers) if p is not None]

    def logs(self) -> str:
        return "\n".join(f"==> {p.name} ({p.log}) <==\n{p.tail()}" for p in self.procs())

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._sdk = None
        for proc in self.procs():
            proc.stop()
        if self._db is not None:
            self._db.engine.dispose()
            self._db = None

    # ----- waiting on builds
    def wait_build(self, build_id: str,
                   until: Callable[[dict], bool] | tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                   timeout: float = 90.0) -> dict:
        """Poll GET /v1/builds/{id} until `until(info)` (or its status is in `until`); return the info."""
        check = until if callable(until) else (lambda info: info["status"] in until)
        deadline = time.monotonic() + timeout
        info: dict = {}
        while time.monotonic() < deadline:
            info = httpx.get(f"{self.url}/v1/builds/{build_id}", timeout=10, headers=self.auth_headers).json()
            if check(info):
                return info
            time.sleep(0.25)
        raise TimeoutError(f"build {build_id} never reached the awaited state; last: {info}\n{self.logs()}")


ACTIVE: list[RunningFarm] = []
# worker_env of a worker whose benchmark step runs for minutes
SLOW_WORKER = {"TRTFARM_BENCH_ITERATIONS": 10**7, "TRTFARM_BENCH_MAX_S": 3600}


def runner_pids(farm: RunningFarm) -> list[int]:
    """Pids of the toolchain runner processes that this farm's workers started."""
    found = []
    for w in farm.workers:
        for pid in _descendants(w.popen.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(RUNNER_BOOTSTRAP).encode() in cmdline:
                found.append(pid)
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `condition()` until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f} s")
        time.sleep(0.1)


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRTFARM_", "AWS_", "CELERY_", "PYTEST_"))}
    for name in AWS_TEST_UNSET:
        env.pop(name, None)
    env.update(AWS_TEST_ENV)
    env["HOME"] = str(home / "user-home")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start_farm(postgres: Postgres, s3: S3, home: Path, *, workers: int = 1, blobs: str = "s3",
               worker_env: dict[str, Any] | None = None, **settings: Any) -> RunningFarm:
    """Start a farm: its own database clone, Redis index, blob prefix; the API; `workers` workers.

    `settings` are TRTFARM_* values for every process (lease_s=3 -> TRTFARM_LEASE_S=3)."""
    name = f"it{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "user-home").mkdir(exist_ok=True)
    redis = RedisSlot()
    redis.acquire()
    database_url = postgres.clone()
    if blobs == "s3":
        prefix = f"farms/{name}"
        blob_url, s3_used = f"s3://{s3.bucket}/{prefix}", s3
    else:
        prefix, s3_used = None, None
        blob_url = f"file://{home / 'blobs'}"
    env = _base_env(home)
    values = {"home": home / "farm-home", "database_url": database_url, "broker_url": redis.url, "blob_url": blob_url,
              "reaper_interval_s": 1, "relay_interval_s": 0.2, "bench_iterations": 3, "worker_live_s": 20}
    if s3_used:
        values.update(s3_endpoint_url=s3.endpoint, s3_region="us-east-1")
    values.update(settings)
    env.update({f"TRTFARM_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    farm = RunningFarm(name=name, home=home, env=env, database_url=database_url, redis=redis, blob_url=blob_url,
                       s3=s3_used, s3_prefix=prefix)
    ACTIVE.append(farm)
    try:
        if settings.get("auth") == "required":
            from registry.db.session import Database
            from registry.services import keys

            farm.token = keys.create_key(Database(database_url), "harness", ["admin"]).token
        farm.start_api()
        for _ in range(workers):
            farm.add_worker(wait=False, **(worker_env or {}))
        if workers:
            farm.wait_live([w.env["TRTFARM_WORKER_NAME"] for w in farm.workers])
    except BaseException:
        stop_farm(farm, postgres, failed=True)
        raise
    return farm


def stop_farm(farm: RunningFarm, postgres: Postgres, failed: bool = False) -> None:
    try:
        if failed:
            sys.stderr.write(f"\n--- logs of farm {farm.name} ---\n{farm.logs()}\n")
        farm.close()
    finally:
        if farm in ACTIVE:
            ACTIVE.remove(farm)
        farm.redis.release()
        postgres.drop(farm.database_url)


@pytest.fixture
def farm_factory(postgres: Postgres, s3: S3, tmp_path: Path) -> Iterator[Callable[..., RunningFarm]]:
    """start(workers=1, blobs='s3'|'file', worker_env=None, **TRTFARM settings) -> RunningFarm."""
    started: list[RunningFarm] = []

    def start(**kwargs: Any) -> RunningFarm:
        farm = start_farm(postgres, s3, tmp_path / f"farm{len(started)}", **kwargs)
        started.append(farm)
        return farm

    yield start
    for farm in started:
        stop_farm(farm, postgres)


@pytest.fixture
def farm(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    """A production-mode farm: PostgreSQL, Redis, S3 (moto), API + one worker."""
    return farm_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and ACTIVE:
        for farm in ACTIVE:
            report.sections.append((f"farm {farm.name} logs ({report.when})", farm.logs()))


# -------------------------------------------------------------------------------------- test data


@pytest.fixture(scope="session")
def ort_runtime() -> str:
    """This host's ONNX Runtime as a runtime string (the workers run the same interpreter)."""
    import onnxruntime

    from registry.targets import cpu_device

    return f"onnxruntime=={onnxruntime.__version__}@{cpu_device()}"


PEER_ORT_PYTHON = REPO / ".venv-ort-peer" / "bin" / "python"  # scripts/setup: an older onnxruntime


@pytest.fixture(scope="session")
def peer_ort() -> tuple[str, str]:
    """(interpreter, version) of the second ONNX Runtime toolchain: the CPU two-version fleet."""
    if not PEER_ORT_PYTHON.exists():
        raise RuntimeError(f"{PEER_ORT_PYTHON} is missing: run scripts/setup (it makes the second ONNX Runtime)")
    from workers.launcher import probe

    return str(PEER_ORT_PYTHON), probe("onnxruntime", str(PEER_ORT_PYTHON)).version


def built_engine_file(farm: RunningFarm, target: str, model: Path, seed: int) -> tuple[Any, Any, Path]:
    """Build a small convnet on a farm with a blob folder: (the build, its engine, the engine's stored file)."""
    from tests.models import convnet

    sdk = farm.client()
    build = sdk.submit(convnet(model, channels=8, layers=2, seed=seed), target, batch_profile(), poll_interval=0.3,
                       timeout=120)
    engine = sdk.engine(build.engine_id)
    return build, engine, farm.home / "blobs" / "blobs" / "sha256" / engine.digest[7:9] / engine.digest[7:]


def batch_profile(name: str = "input", rest: tuple[int, ...] = (3, 16, 16), lo: int = 1, opt: int = 2,
                  hi: int = 4) -> dict:
    """A spec with one optimization profile over the batch dimension of `name`."""
    return {"profiles": [{name: {"min": [lo, *rest], "opt": [opt, *rest], "max": [hi, *rest]}}]}
