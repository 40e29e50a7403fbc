"""The process twin of infra/compose.yaml (infra/twin/run), end to end: start it with one command, upload a
real model through the proxy, build it on the CPU worker, fetch the engine through the SDK, see both API
replicas answer, stop it with SIGTERM and find nothing left running. Also: the twin's processes got the
same settings as compose.yaml's services (no drift)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg

from tests.deploy.infra import INFRA, REPO, compose_config, read_env_file, service_env
from tests.integration.conftest import pid_alive
from tests.models import convnet
from tests.net import free_port

# values that differ by topology: endpoints, credentials, and the home that the image's ENV sets in compose
TOPOLOGY = {"TRTFARM_DATABASE_URL", "TRTFARM_BROKER_URL", "TRTFARM_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "TRTFARM_TOOLCHAINS", "TRTFARM_HOME"}
TWIN_TO_COMPOSE = {"migrate": "migrate", "api-1": "api", "api-2": "api", "dispatcher": "dispatcher",
                   "worker-cpu": "worker-cpu"}


def test_twin_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "twin"
    port = free_port()
    out = open(tmp_path / "twin.out", "wb")  # noqa: SIM115
    twin = subprocess.Popen([str(INFRA / "twin" / "run"), "--dir", str(workdir), "--port", str(port)], cwd=REPO,
                            stdout=out, stderr=subprocess.STDOUT)
    ready_file = workdir / "ready.json"
    ready = None
    try:
        deadline = time.monotonic() + 60
        while not ready_file.exists():
            said = (tmp_path / "twin.out").read_text()
            assert twin.poll() is None, f"the twin exited {twin.returncode}:\n{said}"
            assert time.monotonic() < deadline, f"the twin was not ready in 60 s:\n{said}"
            time.sleep(0.2)
        ready = json.loads(ready_file.read_text())
        url, token = ready["url"], Path(ready["token_file"]).read_text().strip()
        assert url == f"http://127.0.0.1:{port}"

        # keys are required, as in compose (TRTFARM_AUTH=required from farm.env)
        assert httpx.get(f"{url}/v1/builds", timeout=10).status_code == 401

        # upload, build, fetch through the proxy with the SDK
        from registry.client import Farm

        model = convnet(tmp_path / "model.onnx", channels=4, layers=1, seed=3)
        spec = {"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}],
                "bench": {"iterations": 3, "warmup": 1}}
        with Farm(url, token=token) as farm:
            build = farm.submit(model, "onnxruntime", spec, poll_interval=0.3, timeout=60)
            assert build.status == "succeeded" and build.worker == "worker-cpu", build
            engine = farm.engine(build.engine_id)
            assert engine.validation_passed is True
            import onnxruntime

            from registry.targets import cpu_device

            path = farm.fetch(model, runtime=f"onnxruntime=={onnxruntime.__version__}@{cpu_device()}",
                              dest=tmp_path / "model.ort")
            assert Path(path).stat().st_size == engine.size

        # both API replicas served requests: HAProxy names the one that answered
        served = set()
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            for _ in range(6):
                answer = client.get(f"{url}/v1/builds/{build.id}")
                assert answer.status_code == 200
                served.add(answer.headers["x-trtfarm-backend"])
        assert served == {"api-1", "api-2"}

        # no drift: each twin process got farm.env and the variables compose sets on its service
        config, shared = compose_config(), read_env_file(INFRA / "farm.env")
        for twin_name, service in TWIN_TO_COMPOSE.items():
            got = read_env_file(workdir / "env" / f"{twin_name}.env")
            compose_env = service_env(config, service)
            assert set(got) - {"TRTFARM_HOME"} == set(compose_env), (twin_name, set(got) ^ set(compose_env))
            assert {k: v for k, v in got.items() if k not in TOPOLOGY} == \
                   {k: v for k, v in compose_env.items() if k not in TOPOLOGY}, twin_name
            assert shared.items() <= got.items()
    finally:
        if twin.poll() is None:
            twin.send_signal(signal.SIGTERM)
        try:
            code = twin.wait(timeout=60)
        except subprocess.TimeoutExpired:
            twin.kill()
            raise
        finally:
            out.close()
    log = (tmp_path / "twin.out").read_text()
    assert code == 0 and "twin: stopped" in log, log
    # stopped cleanly: no process of it left, its database dropped
    assert ready is not None
    left = [name for name, pid in ready["processes"].items() if pid_alive(pid)]
    assert not left, f"still running after the twin stopped: {left}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", connect_timeout=5) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ready["database"],)).fetchone() is None
