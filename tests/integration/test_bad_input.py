"""Bad input over HTTP: a clear 4xx with a JSON {code, message}, and nothing half-written in PostgreSQL or S3.

One farm for the module (no worker needed: everything here is refused before a build exists), with a 1 MiB
upload limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from registry.db.tables import Build, Model, ModelFile, Outbox
from registry.errors import TooLarge
from tests.integration.conftest import S3, Postgres, RunningFarm, batch_profile, start_farm, stop_farm
from tests.models import IR_VERSION, OPSET, convnet, external_data_model, protobuf_bomb

MISSING_MODEL = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def farm(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = start_farm(postgres, s3, tmp_path_factory.mktemp("bad-input-farm"), workers=0, max_upload_mib=1)
    try:
        yield farm
    finally:
        stop_farm(farm, postgres)


@pytest.fixture(scope="module")
def model_id(farm: RunningFarm, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A valid model with a dynamic batch (input [N,3,16,16])."""
    path = convnet(tmp_path_factory.mktemp("good") / "good.onnx", channels=4, layers=1, seed=51)
    with farm.client() as sdk:
        return sdk.upload(path).id


class Snapshot:
    """Rows and S3 objects of the farm, to prove that a refused request wrote nothing."""

    def __init__(self, farm: RunningFarm) -> None:
        self.farm = farm
        self.before = self.take()

    def take(self) -> dict:
        with self.farm.db.session() as s:
            counts = {t.__name__: s.scalar(select(func.count()).select_from(t))
                      for t in (Model, ModelFile, Build, Outbox)}
        return {**counts, "s3": self.farm.s3_keys()}

    def unchanged(self) -> None:
        assert self.take() == self.before


def error(response: httpx.Response, status: int, code: str, *fragments: str) -> dict:
    """Assert a JSON error body {code, message[, details]} with these message fragments."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"code", "message", "details"} and body["code"] == code, body
    assert isinstance(body["message"], str) and len(body["message"]) > 20, body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return body


# ---------------------------------------------------------------------------------------------- models


def _raw_model(nodes: list, inputs: list, outputs: list, initializers: list = ()):  # noqa: ANN202
    """A ModelProto built without the checker (helper.make_model does not check)."""
    from onnx import helper

    graph = helper.make_graph(nodes, "bad", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="trtfarm-tests")
    model.ir_version = IR_VERSION
    return model


def _unknown_op() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return _raw_model([helper.make_node("NoSuchOp", ["x"], ["y"])], [x], [y]).SerializeToString()


def _dangling_input() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return _raw_model([helper.make_node("Add", ["x", "not_defined_anywhere"], ["y"])], [x], [y]).SerializeToString()


def _wrong_arity() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return _raw_model([helper.make_node("Add", ["x"], ["y"])], [x], [y]).SerializeToString()


@pytest.mark.parametrize(("make", "fragments"), [
    (lambda: b"this is a text file, not an ONNX model\n" * 20, ("is not an ONNX model",)),
    (lambda: b"", ("bad.onnx",)),
    (_dangling_input, ("fails the ONNX checker", "not_defined_anywhere")),
    (_wrong_arity, ("fails the ONNX checker",)),
], ids=["not-onnx", "empty", "dangling-input", "wrong-arity"])
def test_invalid_model_is_refused(farm: RunningFarm, make, fragments: tuple[str, ...]) -> None:  # noqa: ANN001
    snap = Snapshot(farm)
    with farm.http() as http:
        r = http.post("/v1/models", files={"file": ("bad.onnx", make())})
    error(r, 422, "invalid_model", *fragments)
    snap.unchanged()


def test_an_op_no_opset_has_is_taken_as_a_tensorrt_plugin_op(farm: RunningFarm) -> None:
    """Not bad input: TensorRT's parser builds an op ONNX does not define from a plugin of that name (e.g.
    EfficientNMS_TRT), so the farm stores the model and records its op types."""
    with farm.http() as http:
        r = http.post("/v1/models", files={"file": ("plugin.onnx", _unknown_op())})
    assert r.status_code == 201, r.text
    assert r.json()["op_types"] == {"NoSuchOp": 1}


def _external(tmp_path: Path, location: str | None) -> tuple[Path, Path]:
    """A convnet whose weights live in weights.bin; `location` rewrites where the model says they are."""
    import onnx

    path = external_data_model(tmp_path / "ext")
    weights = path.parent / "weights.bin"
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path.write_bytes(proto.SerializeToString())
    return path, weights


@pytest.mark.parametrize(("location", "name", "fragments"), [
    ("../weights.bin", "weights.bin", ("'../weights.bin' outside the upload",)),
    ("sub/../../weights.bin", "weights.bin", ("outside the upload",)),
    ("ABSOLUTE", "weights.bin", ("outside the upload",)),
    (None, "../weights.bin", ("must be a relative path inside the model's folder",)),
    (None, "/tmp/weights.bin", ("must be a relative path inside the model's folder",)),
], ids=["dotdot", "nested-dotdot", "absolute", "part-name-dotdot", "part-name-absolute"])
def test_external_data_outside_the_upload_is_refused(farm: RunningFarm, tmp_path: Path, location: str | None,
                                                     name: str, fragments: tuple[str, ...]) -> None:
    if location == "ABSOLUTE":
        location = str((tmp_path / "ext" / "weights.bin").resolve())  # exists on this host: still refused
    path, weights = _external(tmp_path, location)
    snap = Snapshot(farm)
    with farm.http() as http:
        r = http.post("/v1/models", files=[("file", ("model.onnx", path.read_bytes())),
                                           ("files", (name, weights.read_bytes()))])
    error(r, 422, "invalid_model", *fragments)
    snap.unchanged()


def test_external_data_missing_or_extra_files(farm: RunningFarm, tmp_path: Path) -> None:
    path, weights = _external(tmp_path, None)
    snap = Snapshot(farm)
    with farm.http() as http:
        missing = http.post("/v1/models", files={"file": ("model.onnx", path.read_bytes())})
        error(missing, 422, "invalid_model", "references external data not in the upload: weights.bin")
        extra = http.post("/v1/models", files=[("file", ("model.onnx", path.read_bytes())),
                                               ("files", ("weights.bin", weights.read_bytes())),
                                               ("files", ("notes.txt", b"not part of the model"))])
        error(extra, 422, "invalid_model", "notes.txt")
        no_file = http.post("/v1/models", files={"files": ("weights.bin", weights.read_bytes())})
        error(no_file, 422, "invalid_model", "'file'")
    snap.unchanged()


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_a_protobuf_bomb_is_refused_without_the_api_growing(farm_factory, tmp_path: Path) -> None:
    """8 MiB of empty nodes (once 1 GiB and 6 s inside the API): refused by the raw scan, never parsed."""
    farm = farm_factory(workers=0)  # this module's farm takes 1 MiB uploads only
    bomb = tmp_path / "bomb.onnx"
    bomb.write_bytes(protobuf_bomb())  # 8 MiB: 4 Mi empty NodeProtos
    before = _peak_rss_mib(farm.api.popen.pid)
    with farm.http() as http:
        r = http.post("/v1/models", files={"file": ("bomb.onnx", bomb.read_bytes())})
    error(r, 422, "invalid_model", "graph elements", "TRTFARM_MAX_MODEL_ELEMENTS")
    assert _peak_rss_mib(farm.api.popen.pid) - before < 100  # the upload spools to disk; nothing parses it here
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Model)) == 0


def test_oversize_upload_is_refused(farm: RunningFarm, tmp_path: Path) -> None:
    big = convnet(tmp_path / "big.onnx", channels=16, layers=1, size=64)  # a 2.6 MB model; the limit is 1 MiB
    assert big.stat().st_size > 2 << 20
    snap = Snapshot(farm)
    with farm.http() as http:
        declared = http.post("/v1/models", files={"file": ("big.onnx", big.read_bytes())})
        error(declared, 413, "too_large", "1 MiB", "TRTFARM_MAX_UPLOAD_MIB")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body streams
            boundary = b"--b0undary"
            yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n'
            data = big.read_bytes()
            for i in range(0, len(data), 64 << 10):
                yield data[i:i + (64 << 10)]
            yield b"\r\n" + boundary + b"--\r\n"

        streamed = http.post("/v1/models", content=chunks(),
                             headers={"content-type": "multipart/form-data; boundary=b0undary"})
        error(streamed, 413, "too_large")
    with farm.client() as sdk, pytest.raises(TooLarge) as exc:
        sdk.upload(big)
    assert exc.value.status == 413 and exc.value.code == "too_large"
    snap.unchanged()


# ---------------------------------------------------------------------------------------------- builds


def _profile(name: str = "input", lo: list | None = None, opt: list | None = None, hi: list | None = None) -> dict:
    return {"profiles": [{name: {"min": lo or [1, 3, 16, 16], "opt": opt or [2, 3, 16, 16],
                                 "max": hi or [4, 3, 16, 16]}}]}


FULL = "onnxruntime==1.99.0@x86_64-avx2"  # a full target: accepted without a fleet

SPEC_CASES = [
    ("unknown-field", FULL, {"precison": ["fp16"], **batch_profile()}, 422, "invalid_spec",
     ("spec.precison: unknown field", "precision")),
    ("unknown-nested-field", FULL, {"onnxruntime": {"level": "all"}, **batch_profile()}, 422, "invalid_spec",
     ("spec.onnxruntime.level: unknown field", "graph_optimization_level")),
    ("bad-choice", FULL, {"onnxruntime": {"graph_optimization_level": "max"}, **batch_profile()}, 422, "invalid_spec",
     ("spec.onnxruntime.graph_optimization_level", "'extended'", "'max'")),
    ("min-over-opt", FULL, _profile(lo=[4, 3, 16, 16], opt=[2, 3, 16, 16], hi=[8, 3, 16, 16]), 422, "invalid_spec",
     ("min <= opt <= max",)),
    ("unknown-input", FULL, _profile(name="image"), 422, "invalid_spec", ("no input 'image'", "input")),
    ("rank-mismatch", FULL, _profile(lo=[1, 3, 16], opt=[2, 3, 16], hi=[4, 3, 16]), 422, "invalid_spec", ("rank 3",)),
    ("fixed-dim-mismatch", FULL, _profile(lo=[1, 4, 16, 16], opt=[2, 4, 16, 16], hi=[4, 4, 16, 16]), 422,
     "invalid_spec", ("fixed at 3",)),
    ("tensorrt-option-on-onnxruntime", FULL, {"precision": ["fp16"], **batch_profile()}, 422, "invalid_spec",
     ("precision", "TensorRT options", FULL)),
    ("bad-target", "tensorflow==2.0@x86_64-avx2", batch_profile(), 422, "invalid_target", ("unknown toolchain",)),
    ("gpu-device-for-onnxruntime", "onnxruntime==1.2.0@sm_90", batch_profile(), 422, "invalid_target",
     ("CPU device",)),
    ("partial-target-no-fleet", "onnxruntime", batch_profile(), 409, "unserved_target",
     ("no live worker", "full target")),
    ("dim-over-the-limit", FULL, _profile(hi=[2**20 + 1, 3, 16, 16]), 422, "invalid_spec",
     ("TRTFARM_MAX_PROFILE_DIM",)),
    ("dim-over-int32", FULL, _profile(hi=[2**62, 3, 16, 16]), 422, "invalid_spec", ("32-bit",)),
    ("dim-10e30", FULL, _profile(hi=[10**30, 3, 16, 16]), 422, "invalid_spec", ("32-bit",)),
]


@pytest.mark.parametrize(("target", "spec", "status", "code", "fragments"), [c[1:] for c in SPEC_CASES],
                         ids=[c[0] for c in SPEC_CASES])
def test_bad_build_request_is_refused(farm: RunningFarm, model_id: str, target: str, spec: dict, status: int,
                                      code: str, fragments: tuple[str, ...]) -> None:
    snap = Snapshot(farm)
    with farm.http() as http:
        r = http.post("/v1/builds", json={"model": model_id, "target": target, "spec": spec})
    error(r, status, code, *fragments)
    snap.unchanged()


def test_bad_build_request_envelope(farm: RunningFarm, model_id: str) -> None:
    snap = Snapshot(farm)
    with farm.http() as http:
        r = http.post("/v1/builds", json={"model": model_id, "target": FULL, "spec": batch_profile(), "priority": 1})
        error(r, 422, "invalid_request", "priority")
        r = http.post("/v1/builds", json={"target": FULL})
        error(r, 422, "invalid_request", "model")
        r = http.post("/v1/builds", json={"model": MISSING_MODEL, "target": FULL, "spec": batch_profile()})
        error(r, 404, "model_not_found", MISSING_MODEL, "upload it first")
        for extra, fragment in (({"plugins": ["not-a-digest"]}, "plugins"), ({"calibration": "garbage"}, "calibration"),
                                ({"calibration": "sha256:" + "a" * 300}, "calibration"),
                                ({"model": "sha256:\u0000" + "a" * 63}, "model"), ({"target": "x" * 300}, "target")):
            r = http.post("/v1/builds", json={"model": model_id, "target": FULL, "spec": batch_profile(), **extra})
            error(r, 422, "invalid_request", fragment)
        r = http.post("/v1/builds", json={"model": model_id, "target": FULL, "spec": batch_profile(),
                                          "calibration": "sha256:" + "c" * 64})
        error(r, 422, "invalid_input", "calibration cache sha256:cccc", "not in the farm's blob store")
        r = http.post("/v1/builds", json={"model": model_id, "target": FULL, "spec": batch_profile(),
                                          "plugins": ["sha256:" + "b" * 64]})
        error(r, 404, "plugin_not_found", "plugin library sha256:bbbb", "never uploaded", "trtfarm plugins upload")
    snap.unchanged()


def test_nul_bytes_and_out_of_range_numbers_are_4xx_json(farm: RunningFarm, model_id: str) -> None:
    with farm.http() as http:
        for path in ("/v1/builds/ab%00cd", "/v1/models/sha256:%00", "/v1/builds?model=%00",
                     "/v1/engines/resolve?model=a%00&toolchain=onnxruntime&version=1", "/v1/builds?toolchain=a%00b"):
            error(http.get(path), 422, "invalid_request", "NUL")
        error(http.get("/v1/builds", params={"offset": 2**63}), 422, "invalid_request", "offset")
        error(http.get("/v1/builds", params={"limit": 10**30}), 422, "invalid_request", "limit")
        error(http.get("/v1/builds/not-an-id"), 422, "invalid_request", "build_id")
        error(http.get("/v1/engines/not-an-id/artifact"), 422, "invalid_request", "engine_id")
        error(http.get("/v1/models/sha256:short"), 422, "invalid_request", "model_id")
        error(http.get("/v1/builds", params={"toolchain": "Tensor RT"}), 422, "invalid_request", "toolchain")


@pytest.mark.parametrize(("name", "fragment"), [("a\x00b.onnx", "control characters"), (".", "relative path"),
                                                ("x" * 300 + ".onnx", "too long"), ("../m.onnx", "relative path"),
                                                ("/etc/m.onnx", "relative path")])
def test_bad_upload_file_names_are_refused(farm: RunningFarm, tmp_path: Path, name: str, fragment: str) -> None:
    snap = Snapshot(farm)
    data = convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=91).read_bytes()
    head = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() +
            b'"\r\nContent-Type: application/octet-stream\r\n\r\n')  # raw: httpx would escape a NUL
    with farm.http() as http:
        r = http.post("/v1/models", content=head + data + b"\r\n--b0undary--\r\n",
                      headers={"content-type": "multipart/form-data; boundary=b0undary"})
    error(r, 422, "invalid_model", fragment)
    snap.unchanged()


# ---------------------------------------------------------------------------------------------- lookups


def test_unknown_ids_are_404(farm: RunningFarm, model_id: str) -> None:
    with farm.http() as http:
        error(http.get(f"/v1/models/{MISSING_MODEL}"), 404, "model_not_found", MISSING_MODEL)
        assert http.head(f"/v1/models/{MISSING_MODEL}").status_code == 404
        assert http.head(f"/v1/models/{model_id}").status_code == 200
        error(http.get("/v1/builds/0123456789abcdef0123456789abcdef"), 404, "build_not_found")
        error(http.get("/v1/builds/0123456789abcdef0123456789abcdef/log"), 404, "build_not_found")
        error(http.post("/v1/builds/0123456789abcdef0123456789abcdef/cancel"), 404, "build_not_found")
        error(http.get("/v1/engines/0123456789abcdef0123456789abcdef"), 404, "engine_not_found")
        error(http.get("/v1/engines/0123456789abcdef0123456789abcdef/artifact"), 404, "engine_not_found")
        query = {"model": model_id, "toolchain": "onnxruntime", "version": "1.99.0", "cpu": "x86_64-avx2"}
        body = error(http.get("/v1/engines/resolve", params=query), 404, "no_compatible_engine")
        assert body["details"]["suggested_target"] == "onnxruntime==1.99.0@x86_64-avx2"
        assert body["details"]["rejections"] == []
        error(http.get("/v1/engines/resolve", params={**query, "model": MISSING_MODEL}), 404, "model_not_found")
        error(http.get("/v1/engines/resolve", params={**query, "shape": "input:2x3x16x16x"}), 422, "invalid_input",
              "NAME:1x3x224x224")
        error(http.get("/v1/engines/resolve", params={**query, "shape": "pixels:2x3x16x16"}), 422, "invalid_input",
              "no input named 'pixels'")


def test_malformed_multipart_bodies_are_4xx_json(farm: RunningFarm) -> None:
    """Not multipart, no boundary, garbage before the boundary, a body that ends inside the file, no 'file'
    field: each a 422 invalid_model saying what to send; nothing is registered."""
    bodies = [
        ("text/plain", b"x", "multipart/form-data"),
        ("multipart/form-data", b"x", "multipart/form-data"),
        ("multipart/form-data; boundary=abc", b"garbage--abc\r\nbroken", "malformed"),
        ("multipart/form-data; boundary=abc",
         b'--abc\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\nhalf a model', "incomplete"),
        ("multipart/form-data; boundary=abc",
         b'--abc\r\nContent-Disposition: form-data; name="other"; filename="m.onnx"\r\n\r\nx\r\n--abc--\r\n', "'file'"),
    ]
    with farm.db.session() as s:
        before = s.scalar(select(func.count()).select_from(Model))
    with farm.http() as http:
        for content_type, body, fragment in bodies:
            answer = http.post("/v1/models", content=body, headers={"content-type": content_type})
            assert answer.status_code == 422 and answer.json()["code"] == "invalid_model", answer.text
            assert fragment in answer.json()["message"], (fragment, answer.text)
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Model)) == before
