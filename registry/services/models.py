"""Register uploaded ONNX models: validate, content-address, store blobs, then record rows.

The upload arrives as a folder (written by the API while enforcing size limits): the .onnx file plus its
external-data files at their relative paths. The blobs go up while the model is validated, but become
visible only once it passed (BlobStore.begin_puts), so a bad upload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import intake
from registry.blobs.base import BlobStore, StreamedPut
from registry.db.session import Database
from registry.db.tables import Model, ModelFile
from registry.digests import ModelFile as FileDigest
from registry.digests import digest_of_file, model_id
from registry.errors import InvalidModel, ModelNotFound
from registry.intake import IntakeLimits
from registry.schemas import FileInfo, ModelInfo
from registry.services.ids import full_model_id

DEFAULT_LIMITS = IntakeLimits()


def register_model(db: Database, blobs: BlobStore, folder: Path, main: str, uploaded_by: str | None = None,
                   limits: IntakeLimits = DEFAULT_LIMITS, known: dict[str, tuple[str, int]] | None = None,
                   streams: Mapping[str, StreamedPut] | None = None) -> tuple[ModelInfo, bool]:
    """Validate and store the model in `folder` whose .onnx file is `main`. Returns (info, created).
    `uploaded_by` is the API key's id (None in open mode); a model keeps its first uploader. The model is
    parsed with bounded memory and time (registry.intake), never in this process. `known`: digests and sizes
    computed while the files were received (the blob store verifies them again as it stores them).

    The blobs start going up while the parser checks the model (BlobStore.begin_puts: an S3 store uploads
    the parts of large files meanwhile; `streams`, by relative path, were sent while the files arrived) and
    become visible only once the model passed: a refused model leaves nothing behind."""
    pending = None
    try:
        files = _list_files(folder)
        if main not in files:
            raise InvalidModel(f"the upload has no file {main!r}")
        intake.scan(folder / main, limits.max_elements, main)  # in this process, fast: refuses bombs first
        known = known or {}
        digests = [FileDigest(p, *(known.get(p) or digest_of_file(folder / p))) for p in sorted(files)]
        pending = blobs.begin_puts([(folder / f.path, f.sha256) for f in digests],
                                   {folder / p: s for p, s in (streams or {}).items()})
        found = intake.check(folder / main, main, limits, sum(f.size for f in digests))
        _check_external(set(found["external_files"]), files, main)
        # also when the model is known: a blob that went missing is restored (puts are idempotent)
        pending.commit()
    except BaseException:
        if pending is not None:
            pending.abort()
        for stream in (streams or {}).values():  # (aborting twice does nothing)
            stream.abort()
        raise
    mid = model_id(digests)
    with db.session() as s:
        existing = s.get(Model, mid)
        if existing is not None:
            return model_info(s, existing), False
    return _insert(db, mid, main, found, digests, uploaded_by)


def _insert(db: Database, mid: str, main: str, found: dict[str, Any], digests: list[FileDigest],
            uploaded_by: str | None) -> tuple[ModelInfo, bool]:
    row = Model(
        id=mid, name=PurePosixPath(main).name, size=sum(f.size for f in digests), inputs=found["inputs"],
        outputs=found["outputs"], opsets=found["opsets"], ir_version=found["ir_version"],
        producer=found["producer"], uploaded_by=uploaded_by, op_types=found.get("op_types"),
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


def read(db: Database, mid: str) -> ModelInfo:
    """A model's public description; ModelNotFound when the farm lacks it."""
    with db.session() as s:
        return model_info(s, get_model(s, mid))


def exists(db: Database, mid: str) -> None:
    """Nothing when the farm has the model; ModelNotFound otherwise (HEAD /v1/models/{id})."""
    with db.session() as s:
        get_model(s, mid)


def get_model(session: Session, mid: str) -> Model:
    """A model by id, or by a unique prefix of its hex digest of at least 8 characters."""
    full = full_model_id(session, Model.id, mid)
    row = session.get(Model, full) if full else None
    if row is None:
        raise ModelNotFound(f"no model {mid}; upload it first (POST /v1/models or `trtfarm submit PATH`)")
    return row


def model_files(session: Session, mid: str) -> list[ModelFile]:
    """The model's files, the .onnx first."""
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


def _check_external(referenced: set[str], files: list[str], main: str) -> None:
    missing = sorted(referenced - set(files))
    if missing:
        raise InvalidModel(
            f"{main} references external data not in the upload: {', '.join(missing)}; "
            "send each as an extra file with its relative path"
        )
    extra = sorted(set(files) - referenced - {main})
    if extra:
        raise InvalidModel(f"uploaded files not referenced by {main}: {', '.join(extra)}; "
                           "send only the model's own files")
