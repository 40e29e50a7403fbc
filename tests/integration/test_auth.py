"""API keys over the wire, in production mode (PostgreSQL, Redis, S3, real API and worker processes):
keys made with the CLI straight in the database, 401/403 as JSON errors, scopes per route, owners of
builds and models, revocation, and auth required by default once the API binds beyond loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from registry.db.tables import Build, Model
from registry.errors import Forbidden, Unauthorized
from tests.integration.conftest import REPO, RunningFarm, batch_profile
from tests.models import convnet
from tests.net import free_port

UNSERVED = "onnxruntime==9.9.9@x86_64-avx2"  # stays queued: cancellable at leisure


def trtfarm(farm: RunningFarm, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], env=farm.env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def new_key(farm: RunningFarm, name: str, *scopes: str) -> str:
    done = trtfarm(farm, "keys", "create", "--name", name, *[a for s in scopes for a in ("--scope", s)])
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("tf_") and "shown only now" in done.stdout
    return token


def as_key(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


@pytest.fixture
def farm(farm_factory) -> RunningFarm:
    return farm_factory(workers=1, auth="required")


def test_routes_need_a_key_with_the_right_scope(farm: RunningFarm) -> None:
    admin, reader = new_key(farm, "admin", "admin"), new_key(farm, "reader", "read")
    http = farm.http()
    for path in ("/healthz", "/readyz"):  # probes stay open
        assert http.get(path).status_code == 200
    for method, path in (("GET", "/v1/builds"), ("GET", "/v1/workers"), ("GET", "/metrics"), ("GET", "/docs"),
                         ("GET", "/openapi.json"), ("POST", "/v1/builds"), ("GET", "/v1/keys"),
                         ("GET", "/v1/engines?model=sha256:" + "0" * 64)):
        r = http.request(method, path)
        error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
    error(http.get("/v1/builds", headers=as_key("tf_0000abcd_" + "x" * 43)), 401, "unauthorized")
    error(http.get("/v1/builds", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), 401, "unauthorized")
    for path in ("/v1/builds", "/v1/workers", "/metrics", "/openapi.json", "/docs"):
        assert http.get(path, headers=as_key(reader)).status_code == 200, path
    refused = error(http.post("/v1/builds", json={}, headers=as_key(reader)), 403, "forbidden")
    assert "needs 'submit'" in refused["message"]
    error(http.get("/v1/keys", headers=as_key(reader)), 403, "forbidden")
    unknown = "sha256:" + "e" * 64
    for path in (f"/v1/calibration/{unknown}", f"/v1/plugins/{unknown}"):  # removing an upload: admin only
        error(http.delete(path, headers=as_key(reader)), 403, "forbidden")
    error(http.delete(f"/v1/calibration/{unknown}", headers=as_key(admin)), 404, "calibration_not_found")
    error(http.delete(f"/v1/plugins/{unknown}", headers=as_key(admin)), 404, "plugin_not_found")
    error(http.delete("/v1/plugins/not-a-digest", headers=as_key(admin)), 422, "invalid_request")
    made = http.post("/v1/keys", json={"name": "made-by-api", "scopes": ["read"]}, headers=as_key(admin))
    assert made.status_code == 201 and made.json()["token"].startswith("tf_")
    listed = http.get("/v1/keys", headers=as_key(admin)).json()
    assert {k["name"] for k in listed} == {"harness", "admin", "reader", "made-by-api"}
    assert all("token" not in k for k in listed)
    assert http.get("/v1/workers", headers=as_key(made.json()["token"])).status_code == 200


def test_builds_remember_their_key_and_only_it_or_an_admin_cancels(farm: RunningFarm, tmp_path: Path,
                                                                    ort_runtime: str) -> None:
    ci, other, admin = new_key(farm, "ci", "submit"), new_key(farm, "other", "submit"), new_key(farm, "boss", "admin")
    sdk, sdk_other, sdk_admin = farm.client(token=ci), farm.client(token=other), farm.client(token=admin)
    model = sdk.upload(convnet(tmp_path / "a.onnx", channels=4, layers=1, seed=61))
    built = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True, timeout=120)
    assert built.status == "succeeded"
    mine, theirs = (sdk.submit(model.id, UNSERVED, spec, wait=False)
                    for spec in (batch_profile(), batch_profile(hi=8)))
    with pytest.raises(Forbidden, match="another API key"):
        sdk_other.cancel(mine.id)
    assert sdk.cancel(mine.id).status == "cancelled"
    assert sdk_admin.cancel(theirs.id).status == "cancelled"
    listed = farm.http().get("/v1/keys", headers=as_key(admin)).json()
    ci_id = next(k["id"] for k in listed if k["name"] == "ci")
    with farm.db.session() as s:
        assert {s.get(Build, b).submitted_by for b in (built.id, mine.id, theirs.id)} == {ci_id}
        assert s.get(Model, model.id).uploaded_by == ci_id
    # the build list filters by the submitting key's name and by the full target
    assert {b.id for b in sdk_admin.builds(submitter="ci").items} == {built.id, mine.id, theirs.id}
    assert sdk_admin.builds(submitter="boss").items == []
    assert [b.id for b in sdk_admin.builds(target=built.target).items] == [built.id]


def test_revoked_keys_stop_at_once_and_the_sdk_reads_trtfarm_token(farm: RunningFarm,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    token = new_key(farm, "inference-eu", "read")
    monkeypatch.setenv("TRTFARM_TOKEN", token)
    from registry.client import Farm

    with Farm(farm.url, cache_dir=farm.home / "eu-cache") as sdk:
        assert isinstance(sdk.workers(), list)
        listed = trtfarm(farm, "keys", "list")
        assert "inference-eu" in listed.stdout and token not in listed.stdout and token[:11] in listed.stdout
        assert trtfarm(farm, "keys", "revoke", "inference-eu").returncode == 0
        with pytest.raises(Unauthorized, match="revoked"):
            sdk.workers()
    done = subprocess.run([sys.executable, "-m", "registry.cli", "workers"], cwd=REPO, capture_output=True, text=True,
                          env={**farm.env, "TRTFARM_URL": farm.url, "TRTFARM_TOKEN": token}, timeout=60)
    # the CLI takes TRTFARM_TOKEN too; a revoked one is a clear error
    assert done.returncode == 1 and "revoked" in done.stderr


def test_binding_beyond_loopback_requires_keys_by_default(farm: RunningFarm) -> None:
    env = {k: v for k, v in farm.env.items() if k != "TRTFARM_AUTH"}  # the default, auto
    port = free_port()
    with open(farm.home / "api-any.log", "ab") as log:
        api = subprocess.Popen([sys.executable, "-m", "registry.cli", "api", "--host", "0.0.0.0", "--port", str(port),
                                "--no-dispatcher"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"  # traffic stays on this machine
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (farm.home / "api-any.log").read_text()
                time.sleep(0.2)
        error(httpx.get(f"{url}/v1/builds"), 401, "unauthorized")
    finally:
        api.terminate()
        api.wait(30)
    off = subprocess.run([sys.executable, "-m", "registry.cli", "api", "--host", "0.0.0.0", "--port", str(port)],
                         env={**env, "TRTFARM_AUTH": "off"}, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert off.returncode != 0 and "only on a loopback address" in off.stderr
