"""The process twin of infra/compose.yaml: the same topology as real processes, started by one command.

    infra/twin/run [--dir DIR] [--port 8470]

compose service    twin process
-----------------  ------------------------------------------------------------------------------------
db                 a fresh database `trtfarm_twin_<random>` on the local PostgreSQL (TRTFARM_TWIN_PG_*,
                   default postgres@127.0.0.1:5432), dropped on exit
redis              a private `redis-server` on a free port
s3, s3-init        moto's S3 server (`python -m moto.server`) on a free port; the bucket of TRTFARM_BLOB_URL
migrate            `trtfarm db upgrade` (then `trtfarm keys create --name admin --scope admin`: DIR/admin.token)
api (2 replicas)   two `trtfarm api --no-dispatcher` on free ports
proxy              `haproxy` with infra/haproxy/haproxy.cfg, its server lines swapped for the two APIs
dispatcher         `trtfarm dispatcher`
worker-cpu         `trtfarm worker` (ONNX Runtime toolchain of this interpreter)

Every farm process gets infra/farm.env (the file compose's `env_file:` reads) plus the endpoint variables
compose.yaml sets (TRTFARM_DATABASE_URL, TRTFARM_BROKER_URL, TRTFARM_S3_ENDPOINT_URL, AWS keys), pointing at
the local processes. What each process got is written to DIR/env/<service>.env (tests/deploy compares it
with `docker-compose config`). Once everything answers, DIR/ready.json holds the URL, the token file and the
processes; the twin then runs until SIGTERM/SIGINT (or until a process dies: exit 1), stops every process
it started, drops its database and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PG_HOST = os.environ.get("TRTFARM_TWIN_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TRTFARM_TWIN_PG_PORT", "5432"))
PG_USER = os.environ.get("TRTFARM_TWIN_PG_USER", "postgres")
S3_KEY, S3_SECRET = "twin", "twin-secret"  # moto accepts any credentials
START_TIMEOUT_S = 60.0


def log(message: str) -> None:
    print(f"twin: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, '#' comments and blank lines skipped: the subset docker-compose reads the same way."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{path}:{number}: not KEY=value: {line!r}")
        values[key.strip()] = value
    return values


class Twin:
    def __init__(self, workdir: Path, port: int) -> None:
        self.dir = workdir
        self.port = port
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.database: str | None = None
        self.stopping = False
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        (workdir / "env").mkdir(exist_ok=True)
        self.base_env = {k: v for k, v in os.environ.items()
                         if not k.startswith(("TRTFARM_", "AWS_", "CELERY_", "PYTEST_"))}
        self.base_env.update(PYTHONUNBUFFERED="1", HOME=str(workdir / "user-home"))
        (workdir / "user-home").mkdir(exist_ok=True)

    # ----- processes
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        logfile = self.dir / "logs" / f"{name}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(argv, env={**self.base_env, **(env or {})}, cwd=self.dir, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def farm_cmd(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.write_env(name, env)
        return self.spawn(name, [sys.executable, "-m", "registry.cli", *args], env)

    def write_env(self, service: str, env: dict[str, str]) -> None:
        lines = [f"{k}={v}" for k, v in sorted(env.items())]
        (self.dir / "env" / f"{service}.env").write_text("\n".join(lines) + "\n")

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail}")

    def wait_until(self, what: str, check: object, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if check():  # type: ignore[operator]
                    return
            except Exception:  # noqa: BLE001, S110 - not up yet
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{what} not up within {timeout:.0f} s (logs: {self.dir / 'logs'})")

    # ----- services
    def start(self) -> dict:
        import boto3
        import httpx
        import psycopg

        shared = read_env_file(INFRA / "farm.env")
        # db
        self.database = f"trtfarm_twin_{secrets.token_hex(4)}"
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                             connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        log(f"db: PostgreSQL database {self.database} on {PG_HOST}:{PG_PORT}")
        # redis
        redis_port = free_port()
        (self.dir / "redis").mkdir(exist_ok=True)
        self.spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                             "--appendonly", "no", "--dir", str(self.dir / "redis")])
        # s3
        s3_port = free_port()
        self.spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)])
        s3_url = f"http://127.0.0.1:{s3_port}"
        import redis as redis_lib

        self.wait_until("redis", lambda: redis_lib.Redis(port=redis_port, socket_timeout=1).ping())
        self.wait_until("s3", lambda: httpx.get(s3_url, timeout=1).status_code < 500)
        # s3-init: the bucket of TRTFARM_BLOB_URL
        bucket = urlsplit(shared["TRTFARM_BLOB_URL"]).netloc
        boto3.client("s3", endpoint_url=s3_url, region_name=shared.get("TRTFARM_S3_REGION", "us-east-1"),
                     aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET).create_bucket(Bucket=bucket)
        log(f"redis: 127.0.0.1:{redis_port}; s3: moto at {s3_url}, bucket {bucket}")

        # the same variables compose.yaml's x-farm-env sets, pointing here; TRTFARM_HOME: the image's ENV
        env = {**shared,
               "TRTFARM_DATABASE_URL": f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database}",
               "TRTFARM_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
               "TRTFARM_S3_ENDPOINT_URL": s3_url,
               "AWS_ACCESS_KEY_ID": S3_KEY,
               "AWS_SECRET_ACCESS_KEY": S3_SECRET,
               "TRTFARM_HOME": str(self.dir / "farm-home")}

        # migrate, and the first admin key
        self.write_env("migrate", env)
        run_env = {**self.base_env, **env}
        subprocess.run([sys.executable, "-m", "registry.cli", "db", "upgrade"], env=run_env, cwd=self.dir,
                       check=True, capture_output=True, timeout=120)
        created = subprocess.run([sys.executable, "-m", "registry.cli", "keys", "create", "--name", "admin",
                                  "--scope", "admin"], env=run_env, cwd=self.dir, check=True, capture_output=True,
                                 text=True, timeout=60)
        token = created.stdout.strip().splitlines()[-1]
        token_file = self.dir / "admin.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        log("migrate: schema at head; admin key in admin.token")

        # dispatcher, api x2
        self.farm_cmd("dispatcher", ["dispatcher"], env)
        api_ports = [free_port(), free_port()]
        for index, port in enumerate(api_ports, 1):
            self.farm_cmd(f"api-{index}", ["api", "--host", "127.0.0.1", "--port", str(port), "--no-dispatcher"],
                          env)
        for port in api_ports:
            self.wait_until(f"api on {port}",
                            lambda p=port: httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200)
        # proxy
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(haproxy_config((INFRA / "haproxy" / "haproxy.cfg").read_text(), self.port, api_ports))
        subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True)
        self.spawn("proxy", ["haproxy", "-db", "-f", str(cfg)])
        url = f"http://127.0.0.1:{self.port}"
        self.wait_until("proxy", lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200)
        log(f"api: 127.0.0.1:{api_ports[0]} and :{api_ports[1]} behind haproxy at {url}")

        # worker-cpu
        self.farm_cmd("worker-cpu", ["worker"], {**env, "TRTFARM_TOOLCHAINS": f"onnxruntime={sys.executable}",
                                                 "TRTFARM_WORKER_NAME": "worker-cpu"})
        headers = {"Authorization": f"Bearer {token}"}
        self.wait_until("worker-cpu", lambda: any(
            w["name"] == "worker-cpu" and w["live"]
            for w in httpx.get(f"{url}/v1/workers", headers=headers, timeout=5).json()), timeout=90)
        log("worker-cpu: live")

        ready = {"url": url, "token_file": str(token_file), "dir": str(self.dir), "database": self.database,
                 "api_ports": api_ports, "processes": {name: p.pid for name, p in self.procs}}
        tmp = self.dir / "ready.json.tmp"
        tmp.write_text(json.dumps(ready, indent=2))
        tmp.replace(self.dir / "ready.json")
        log(f"ready at {url} (TRTFARM_URL={url} TRTFARM_TOKEN=$(cat {token_file}))")
        return ready

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{name} ignored SIGTERM: killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with_children = _session_members(proc.pid)
            for pid in with_children:  # what the process left behind in its session (e.g. runner children)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.database:
            import psycopg

            with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                                 connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.database = None
        log("stopped")


def _session_members(sid: int) -> list[int]:
    """Live processes of the session `sid` (each service was started in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            found.append(int(entry.name))
    return found


def haproxy_config(shared: str, port: int, api_ports: list[int]) -> str:
    """infra/haproxy/haproxy.cfg with the twin's bind port and API servers (instead of compose's DNS)."""
    out, skipping, in_resolvers = [], False, False
    for line in shared.splitlines():
        stripped = line.strip()
        if stripped.startswith("resolvers "):
            in_resolvers = True
            continue
        if in_resolvers:
            if stripped and line[:1].isspace():
                continue
            in_resolvers = False
        if stripped == "# TWIN-SERVERS-BEGIN":
            skipping = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(f"{indent}server api-{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(api_ports, 1))
            continue
        if stripped == "# TWIN-SERVERS-END":
            skipping = False
            continue
        if skipping:
            continue
        if stripped == "bind :8470":
            line = line.replace("bind :8470", f"bind 127.0.0.1:{port}")
        out.append(line)
    text = "\n".join(out) + "\n"
    if f"bind 127.0.0.1:{port}" not in text or "server api-2" not in text:
        raise SystemExit("infra/haproxy/haproxy.cfg lost its `bind :8470` line or its TWIN-SERVERS markers")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="logs, env files, ready.json (default: a new temp folder)")
    parser.add_argument("--port", type=int, default=8470, help="the proxy's port (compose: API_PORT)")
    args = parser.parse_args()
    missing = [tool for tool in ("haproxy", "redis-server") if shutil.which(tool) is None]
    if missing:
        print(f"twin: {' and '.join(missing)} missing: scripts/setup installs them (root), or apt-get install "
              "haproxy redis-server", file=sys.stderr)
        return 2
    workdir = (args.dir or Path(tempfile.mkdtemp(prefix="trtfarm-twin-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    twin = Twin(workdir, args.port)
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    code = 0
    try:
        log(f"starting in {workdir}")
        twin.start()
        while not stop_requested:
            twin.check_alive()
            time.sleep(0.3)
    except Exception as e:  # noqa: BLE001 - report, stop everything, exit 1
        print(f"twin: {e}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        twin.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
