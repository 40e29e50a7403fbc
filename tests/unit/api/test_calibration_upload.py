"""POST /v1/calibration in process (ASGI, a fresh SQLite farm): data sets and caches go up as the raw body,
come back as JSON with their kind and summary; bad files are a 4xx JSON error, an over-limit body a 413. The
SDK uploads through the same app (Farm.upload_calibration, Farm.submit(calibration=PATH)), and an int8 build
of a model without Q/DQ nodes and without calibration is refused with 422."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.calibfolder import merge_folder
from registry.client import Farm
from registry.db.migrate import upgrade
from registry.errors import CalibrationNeeded, InvalidCalibration
from registry.settings import Settings
from tests.models import calibration_set, convnet

OCTETS = {"Content-Type": "application/octet-stream"}
CACHE = b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n"
H100 = "tensorrt==8.6.0@h100-80gb-hbm3"


@pytest.fixture
def client(tmp_path: Path):
    settings = Settings(home=tmp_path / "home", max_calibration_mib=1)
    upgrade(settings.resolved_database_url())
    with TestClient(create_app(settings)) as client:
        yield client


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def error(response, status: int, code: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and fragment in body["message"], body


def test_a_data_set_goes_up_once_and_is_described(client):
    body = npz(input=np.zeros((4, 3, 16, 16), np.float32))
    r = client.post("/v1/calibration", content=body, params={"name": "calib.npz"}, headers=OCTETS)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["digest"] == "sha256:" + hashlib.sha256(body).hexdigest() and info["size"] == len(body)
    assert (info["kind"], info["name"], info["summary"]["samples"]) == ("data", "calib.npz", 4)
    assert info["summary"]["inputs"] == {"input": {"dtype": "float32", "shape": [4, 3, 16, 16]}}
    assert client.post("/v1/calibration", content=body, headers=OCTETS).status_code == 200
    assert client.head(f"/v1/calibration/{info['digest']}").status_code == 200
    assert client.get(f"/v1/calibration/{info['digest']}").json() == info
    assert client.head("/v1/calibration/sha256:" + "0" * 64).status_code == 404
    error(client.get("/v1/calibration/sha256:" + "0" * 64), 404, "calibration_not_found", "POST /v1/calibration")


def test_a_cache_goes_up_as_a_cache(client):
    r = client.post("/v1/calibration", content=CACHE, params={"kind": "cache"}, headers=OCTETS)
    assert r.status_code == 201 and r.json()["kind"] == "cache"
    assert r.json()["summary"] == {"header": "TRT-8601-EntropyCalibration2", "algorithm": "entropy2",
                                   "tensorrt": "8601", "tensors": 1}
    error(client.post("/v1/calibration", content=CACHE, params={"kind": "data"}), 422, "invalid_calibration",
          "kind=data")


@pytest.mark.parametrize("body,fragment", [
    (b"", "neither a calibration data set"),
    (b"hello", "neither a calibration data set"),
    (b"PK\x03\x04" + b"\0" * 40, "not a readable .npz"),
    (npz(input=np.array(["a", "b"])), "must be numeric"),
    (npz(input=np.array([np.inf], np.float32)), "NaN or infinite"),
    (b"TRT-8601-EntropyCalibration2\nnot a scale line\n", "line 2"),
])
def test_a_bad_upload_is_a_4xx_json_error(client, body, fragment):
    error(client.post("/v1/calibration", content=body, headers=OCTETS), 422, "invalid_calibration", fragment)


def test_an_upload_over_the_limit_is_413(client):
    body = npz(input=np.zeros((2, 3, 256, 256), np.float32))  # 1.5 MiB: over TRTFARM_MAX_CALIBRATION_MIB=1
    error(client.post("/v1/calibration", content=body, headers=OCTETS), 413, "too_large",
          "TRTFARM_MAX_CALIBRATION_MIB")


def test_a_multipart_form_or_a_wrong_content_digest_is_refused(client):
    error(client.post("/v1/calibration", files={"file": ("c.npz", CACHE)}), 422, "invalid_calibration",
          "not as a multipart form")
    claimed = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    error(client.post("/v1/calibration", content=CACHE, headers={**OCTETS, "Content-Digest": f"sha-256=:{claimed}:"}),
          422, "invalid_request", "changed on the way")


def test_the_sdk_uploads_then_submits_and_int8_without_calibration_is_refused(client, tmp_path):
    farm = Farm(str(client.base_url), transport=client._transport, cache_dir=tmp_path / "sdk")
    model = convnet(tmp_path / "m.onnx")
    with pytest.raises(CalibrationNeeded) as refused:
        farm.submit(model, H100, {"precision": ["int8"]}, wait=False)
    assert refused.value.status == 422 and "upload a calibration data set" in refused.value.message
    data = calibration_set(tmp_path / "calib.npz", samples=8)
    info = farm.upload_calibration(data)
    assert info.kind == "data" and farm.has_calibration(info.digest) and farm.upload_calibration(data) == info
    spec = {"precision": ["int8"], "profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16],
                                                           "max": [8, 3, 16, 16]}}]}
    build = farm.submit(model, H100, spec, calibration=data, wait=False)
    assert build.calibration == info.digest and build.status == "queued"
    assert farm.submit(model, H100, spec, calibration=info.digest, wait=False).id == build.id
    with pytest.raises(InvalidCalibration, match="fewer than one batch of 16"):
        farm.submit(model, H100, {"precision": ["int8"], "profiles": [{"input": {
            "min": [1, 3, 16, 16], "opt": [16, 3, 16, 16], "max": [16, 3, 16, 16]}}]}, calibration=data, wait=False)


def test_the_cli_uploads_the_calibration_then_submits(client, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from registry import cli

    monkeypatch.setattr(cli, "_farm", lambda: Farm(str(client.base_url), transport=client._transport,
                                                   cache_dir=tmp_path / "sdk"))
    model, data = convnet(tmp_path / "m.onnx"), calibration_set(tmp_path / "calib.npz", samples=8)
    result = CliRunner().invoke(cli.app, [
        "submit", str(model), "--target", H100, "--precision", "int8", "--shape", "input:1x3x16x16,4x3x16x16,8x3x16x16",
        "--calibration", str(data), "--calibration-algorithm", "minmax", "--json"])
    assert result.exit_code == 0, result.output
    build = json.loads(result.stdout)
    assert build["calibration"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert build["spec"]["calibration_algorithm"] == "minmax" and build["status"] == "queued"


def test_a_folder_of_batches_goes_up_as_one_data_set(client, tmp_path):
    """The SDK merges a folder's .npz batches in name order (each array along axis 0) and uploads one data set;
    a batch that disagrees with the first is named before anything goes up, and an empty folder is refused."""
    farm = Farm(str(client.base_url), transport=client._transport, cache_dir=tmp_path / "sdk")
    rng = np.random.default_rng(5)
    batches = [rng.standard_normal((n, 3, 8, 8)).astype(np.float32) for n in (4, 2, 3)]
    folder = tmp_path / "batches"
    folder.mkdir()
    for i, batch in enumerate(batches):  # names sort as written: b0, b1, b2 (plus a file that is no batch)
        np.savez(folder / f"b{i}.npz", input=batch, mask=np.full((len(batch), 2), i, np.int32))
    (folder / "README.txt").write_text("not a batch")
    info = farm.upload_calibration(folder)
    assert info.kind == "data" and info.summary["samples"] == 9
    assert info.summary["inputs"] == {"input": {"dtype": "float32", "shape": [9, 3, 8, 8]},
                                      "mask": {"dtype": "int32", "shape": [9, 2]}}
    with np.load(merge_folder(folder, tmp_path / "merged.npz")) as data:
        np.testing.assert_array_equal(data["input"], np.concatenate(batches))
        assert data["mask"][:, 0].tolist() == [0] * 4 + [1] * 2 + [2] * 3
    assert farm.upload_calibration(folder) == info  # merged again to the same bytes: already there
    np.savez(folder / "b3.npz", input=np.zeros((2, 3, 8, 4), np.float32), mask=np.zeros((2, 2), np.int32))
    with pytest.raises(InvalidCalibration, match=r"b3\.npz holds .*shape after axis 0"):
        farm.upload_calibration(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidCalibration, match="holds no .npz file"):
        farm.upload_calibration(tmp_path / "empty")
