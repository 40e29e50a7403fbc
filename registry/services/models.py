"""Register uploaded ONNX models: validate, content-address, store blobs, then record rows.

The upload arrives as a folder (written by the API while enforcing size limits): the .onnx file plus its
external-data files at their relative paths. Validation happens before anything is stored, so a bad
upload leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.db.tables import Model, ModelFile
from registry.digests import ModelFile as FileDigest
from registry.digests import digest_of_file, model_id
from registry.errors import InvalidModel, ModelNotFound
from registry.schemas import FileInfo, ModelInfo


def register_model(db: Database, blobs: BlobStore, folder: Path, main: str) -> tuple[ModelInfo, bool]:
    """Validate and store the model in `folder` whose .onnx file is `main`. Returns (info, created)."""
    files = _list_files(folder)
    if main not in files:
        raise InvalidModel(f"the upload has no file {main!r}")
    proto = _load(folder / main, main)
    referenced = _external_locations(proto, main)
    _check_external(referenced, files, main)
    _check_model(folder / main, main)
    digests = [FileDigest(p, *digest_of_file(folder / p)) for p in sorted(files)]
    mid = model_id(digests)
    with db.session() as s:
        existing = s.get(Model, mid)
        if existing is not None:
            return model_info(s, existing), False
    for f in digests:
        blobs.put_file(folder / f.path, expected_digest=f.sha256)
    return _insert(db, mid, main, proto, digests)


def _insert(db: Database, mid: str, main: str, proto, digests: list[FileDigest]) -> tuple[ModelInfo, bool]:  # noqa: ANN001
    row = Model(
        id=mid, name=PurePosixPath(main).name, size=sum(f.size for f in digests),
        inputs=_tensors(proto, inputs=True), outputs=_tensors(proto, inputs=False),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        ir_version=int(proto.ir_version), producer=f"{proto.producer_name} {proto.producer_version}".strip(),
    )
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            s.add_all(ModelFile(model_id=mid, path=f.path, digest=f.sha256, size=f.size, is_model=f.path == main)
                      for f in digests)
    except IntegrityError:  # registered concurrently by someone else: same content, same id
        with db.session() as s:
            return model_info(s, s.get(Model, mid)), False
    with db.session() as s:
        return model_info(s, s.get(Model, mid)), True


def get_model(session: Session, mid: str) -> Model:
    row = session.get(Model, mid)
    if row is None:
        raise ModelNotFound(f"no model {mid}; upload it first (POST /v1/models or `trtfarm submit PATH`)")
    return row


def model_files(session: Session, mid: str) -> list[ModelFile]:
    rows = session.scalars(select(ModelFile).where(ModelFile.model_id == mid))
    return sorted(rows, key=lambda f: (not f.is_model, f.path))


def model_info(session: Session, row: Model) -> ModelInfo:
    info = ModelInfo.model_validate(row)
    info.files = [FileInfo(path=f.path, sha256=f.digest, size=f.size) for f in model_files(session, row.id)]
    return info


def _list_files(folder: Path) -> list[str]:
    files = []
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise InvalidModel(f"upload contains a link ({path.relative_to(folder)}); send regular files only")
        if path.is_file():
            files.append(path.relative_to(folder).as_posix())
    return files


def _load(path: Path, main: str):  # noqa: ANN202
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidModel(f"{main} is not an ONNX model ({exc.__class__.__name__}: {exc}); upload a .onnx file") from None
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModel(f"{main} parsed as an empty ONNX model (no nodes, no outputs); is it really a .onnx file?")
    return proto


def _external_locations(proto, main: str) -> set[str]:  # noqa: ANN001
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    base = PurePosixPath(main).parent
    locations = set()
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        locations.add(_confined(location, base, tensor.name))
    return locations


def _confined(location: str, base: PurePosixPath, tensor: str) -> str:
    loc = PurePosixPath(location.replace("\\", "/"))
    if not location or loc.is_absolute() or ".." in loc.parts or location.startswith("~"):
        raise InvalidModel(
            f"tensor {tensor!r} points at external data {location!r} outside the upload; "
            "external data must be a relative path inside the model's own folder, without '..'"
        )
    return os.path.normpath(str(base / loc)).replace(os.sep, "/")


def _check_external(referenced: set[str], files: list[str], main: str) -> None:
    missing = sorted(referenced - set(files))
    if missing:
        raise InvalidModel(
            f"{main} references external data not in the upload: {', '.join(missing)}; "
            "send each as an extra file with its relative path"
        )
    extra = sorted(set(files) - referenced - {main})
    if extra:
        raise InvalidModel(f"uploaded files not referenced by {main}: {', '.join(extra)}; send only the model's own files")


def _check_model(path: Path, main: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InvalidModel(f"{main} fails the ONNX checker: {first}", details={"checker": str(exc)[:4000]}) from None


def _tensors(proto, *, inputs: bool) -> list[dict]:  # noqa: ANN001
    from onnx import helper

    initializers = {i.name for i in proto.graph.initializer}
    values = proto.graph.input if inputs else proto.graph.output
    result = []
    for v in values:
        if v.name in initializers:
            continue
        tt = v.type.tensor_type
        dtype = _dtype_name(tt.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        result.append({"name": v.name, "dtype": dtype, "shape": dims})
    return result


def _dtype_name(elem_type: int) -> str:
    from onnx import TensorProto, helper

    if not elem_type:
        return "unknown"
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):  # bfloat16, float8 and friends have no plain numpy dtype
        return TensorProto.DataType.Name(elem_type).lower()
