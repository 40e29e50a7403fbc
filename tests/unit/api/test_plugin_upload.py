"""TensorRT plugin libraries at the API, in process (ASGI, a fresh SQLite farm that requires API keys): only an
admin key uploads one (the raw body, an ELF shared object, at most TRTFARM_MAX_PLUGIN_MIB), every reader lists
and looks them up with whether TRTFARM_ALLOWED_PLUGINS allows each; a build naming a library the farm never
received (404) or does not allow (422, naming the setting) is refused at submit, an allowed one is queued and
its digest is part of the build key. The SDK and the CLI go through the same app."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.client import Farm
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.errors import Forbidden, PluginNotAllowed, PluginNotFound
from registry.services import keys
from registry.settings import Settings
from tests.models import convnet

OCTETS = {"Content-Type": "application/octet-stream"}
H100 = "tensorrt==8.6.0@h100-80gb-hbm3"
ORT = "onnxruntime==1.99.0@x86_64-avx2"


def elf(payload: bytes = b"", *, bits: int = 2, kind: int = 3, machine: int = 62) -> bytes:
    """An ELF header (64-bit little-endian unless told) of a shared object for x86-64 unless told, then bytes."""
    return b"\x7fELF" + bytes([bits, 1, 1]) + bytes(9) + kind.to_bytes(2, "little") + \
        machine.to_bytes(2, "little") + bytes(44) + payload


ALLOWED, OTHER = elf(b"allowed plugin"), elf(b"other plugin")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def farm(tmp_path: Path):
    settings = Settings(home=tmp_path / "home", auth="required", max_plugin_mib=1, allowed_plugins=digest(ALLOWED))
    upgrade(settings.resolved_database_url())
    db = Database(settings.resolved_database_url())
    tokens = {scope: keys.create_key(db, scope, [scope]).token for scope in ("read", "submit", "admin")}
    with TestClient(create_app(settings)) as client:
        yield client, tokens


def as_key(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(response, status: int, code: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return body


def sdk(client: TestClient, token: str, tmp_path: Path) -> Farm:
    return Farm(str(client.base_url), token=token, transport=client._transport, cache_dir=tmp_path / "sdk")


def test_only_an_admin_key_uploads_and_every_reader_lists_and_looks_up(farm):
    client, tokens = farm
    for scope in ("read", "submit"):
        refused = error(client.post("/v1/plugins", content=ALLOWED, headers={**OCTETS, **as_key(tokens[scope])}),
                        403, "forbidden", "this needs 'admin'")
        assert scope in refused["message"]
    error(client.post("/v1/plugins", content=ALLOWED, headers=OCTETS), 401, "unauthorized")
    admin = {**OCTETS, **as_key(tokens["admin"])}
    r = client.post("/v1/plugins", content=ALLOWED, params={"name": "libnms.so"}, headers=admin)
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["digest"], info["name"], info["size"]) == (digest(ALLOWED), "libnms.so", len(ALLOWED))
    assert (info["machine"], info["allowed"]) == ("x86_64", True) and info["uploaded_at"]
    assert client.post("/v1/plugins", content=ALLOWED, headers=admin).status_code == 200  # known: 200, same row
    other = client.post("/v1/plugins", content=OTHER, headers=admin).json()
    assert other["allowed"] is False and other["name"] is None
    reader = as_key(tokens["read"])
    listed = client.get("/v1/plugins", headers=reader).json()
    assert {p["digest"]: p["allowed"] for p in listed["items"]} == {digest(ALLOWED): True, digest(OTHER): False}
    assert listed["allow_list"] == [digest(ALLOWED)]
    assert client.head(f"/v1/plugins/{digest(OTHER)}", headers=reader).status_code == 200
    assert client.get(f"/v1/plugins/{digest(ALLOWED)}", headers=reader).json() == info
    missing = "sha256:" + "0" * 64
    assert client.head(f"/v1/plugins/{missing}", headers=reader).status_code == 404
    error(client.get(f"/v1/plugins/{missing}", headers=reader), 404, "plugin_not_found", "trtfarm plugins upload")


@pytest.mark.parametrize("body,fragment", [
    (b"", "starts with nothing"),
    (b"#include <NvInfer.h>\n", "starts with 23 69 6e 63"),
    (b"\x7fELF\x02", "cut short or malformed"),
    (elf(bits=1), "32-bit"),
    (elf(kind=2), "an executable, not a shared object"),
    (elf(kind=1), "a relocatable object (.o)"),
])
def test_anything_but_a_64_bit_elf_shared_object_is_refused(farm, body, fragment):
    client, tokens = farm
    error(client.post("/v1/plugins", content=body, headers={**OCTETS, **as_key(tokens["admin"])}), 422,
          "invalid_plugin", fragment)


def test_an_aarch64_library_is_recorded_as_such_and_the_limits_hold(farm):
    client, tokens = farm
    admin = {**OCTETS, **as_key(tokens["admin"])}
    assert client.post("/v1/plugins", content=elf(machine=183), headers=admin).json()["machine"] == "aarch64"
    error(client.post("/v1/plugins", content=elf(bytes(1 << 20)), headers=admin), 413, "too_large",
          "TRTFARM_MAX_PLUGIN_MIB")
    error(client.post("/v1/plugins", files={"file": ("lib.so", ALLOWED)}, headers=as_key(tokens["admin"])), 422,
          "invalid_plugin", "not as a multipart form")


def test_submit_refuses_unknown_and_not_allowed_libraries_and_keys_the_allowed_ones(farm, tmp_path):
    client, tokens = farm
    admin = sdk(client, tokens["admin"], tmp_path)
    library, other = tmp_path / "libnms.so", tmp_path / "libother.so"
    library.write_bytes(ALLOWED)
    other.write_bytes(OTHER)
    model = convnet(tmp_path / "m.onnx")
    submitter = sdk(client, tokens["submit"], tmp_path)
    with pytest.raises(PluginNotFound) as unknown:  # a submit key may name a digest, never upload a file
        submitter.submit(model, H100, plugins=[digest(ALLOWED)], wait=False)
    assert unknown.value.status == 404 and "was never uploaded to this farm" in unknown.value.message
    with pytest.raises(Forbidden, match="this needs 'admin'"):
        submitter.submit(model, H100, plugins=[library], wait=False)
    assert admin.upload_plugin(library).allowed and not admin.upload_plugin(other).allowed
    assert [p.name for p in submitter.plugins().items] == ["libother.so", "libnms.so"]  # newest first
    with pytest.raises(PluginNotAllowed) as refused:
        submitter.submit(model, H100, plugins=[library, other], wait=False)  # files the farm has: just hashed
    assert refused.value.status == 422 and refused.value.details["setting"] == "TRTFARM_ALLOWED_PLUGINS"
    assert f"plugin library {digest(OTHER)} (libother.so) is not allowed on this farm" in refused.value.message
    plain = submitter.submit(model, H100, wait=False)
    built = submitter.submit(model, H100, plugins=[library], wait=False)
    assert built.status == "queued" and built.key != plain.key
    assert submitter.submit(model, H100, plugins=[digest(ALLOWED)], wait=False).id == built.id  # same key
    r = client.post("/v1/builds", headers=as_key(tokens["submit"]), json={
        "model": built.model, "target": ORT, "plugins": [digest(ALLOWED)]})
    error(r, 422, "invalid_spec", "plugins are TensorRT plugin libraries; onnxruntime builds load none")


def test_the_cli_uploads_lists_and_submits_with_plugins(farm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from registry import cli

    client, tokens = farm
    monkeypatch.setattr(cli, "_farm", lambda: sdk(client, tokens["admin"], tmp_path))
    library = tmp_path / "libnms.so"
    library.write_bytes(ALLOWED)
    runner = CliRunner()
    uploaded = runner.invoke(cli.app, ["plugins", "upload", str(library)])
    assert uploaded.exit_code == 0, uploaded.output
    assert uploaded.stdout.strip() == digest(ALLOWED)
    listed = runner.invoke(cli.app, ["plugins", "list"])
    assert listed.exit_code == 0 and f"{digest(ALLOWED)}  allowed  libnms.so  {len(ALLOWED)} bytes  x86_64" in \
        listed.stdout
    as_json = json.loads(runner.invoke(cli.app, ["plugins", "list", "--json"]).stdout)
    assert as_json["allow_list"] == [digest(ALLOWED)] and as_json["items"][0]["allowed"] is True
    model = convnet(tmp_path / "m.onnx")
    submitted = runner.invoke(cli.app, ["submit", str(model), "--target", H100, "--plugin", str(library), "--json"])
    assert submitted.exit_code == 0, submitted.output
    build = json.loads(submitted.stdout)
    assert build["status"] == "queued"
    again = runner.invoke(cli.app, ["submit", str(model), "--target", H100, "--plugin", digest(ALLOWED), "--json"])
    assert json.loads(again.stdout)["id"] == build["id"]
