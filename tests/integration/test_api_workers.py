"""`trtfarm api --workers 2`: two server processes on one port, each with its own pool and read cache; a
key revoked through the database stops working in both (each process's cache hears the change)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from registry.services import keys
from tests.integration.conftest import RunningFarm, _descendants, wait_for
from tests.models import convnet
from tests.net import free_port


def test_two_server_processes_share_the_port_and_hear_revocations(farm_factory, tmp_path: Path) -> None:  # noqa: ANN001
    farm: RunningFarm = farm_factory(workers=0, auth="required")
    model = farm.sdk.upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=5))
    port = free_port()
    api = farm._spawn("api-workers", ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                                      "--no-dispatcher"], {})
    farm.more_apis.append((api, f"http://127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ready(url), timeout=60, what="the two-process API")
    wait_for(lambda: len(_descendants(api.popen.pid)) >= 2, what="two server processes")

    token = keys.create_key(farm.db, "fleet-host", ["read"]).token
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        for _ in range(40):  # new connections each time: both processes answer, and cache the key
            assert httpx.get(f"{url}/v1/models/{model.id}", headers=http.headers).status_code == 200
        keys.revoke_key(farm.db, "fleet-host")
        time.sleep(1)
        codes = [httpx.get(f"{url}/v1/models/{model.id}", headers=http.headers).status_code for _ in range(40)]
    assert set(codes) == {401}, codes


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
