"""/v1/models: upload (multipart: `file` = the .onnx, `files` = its external data), HEAD, GET."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.deps import Farm, farm, session
from registry.errors import InvalidModel
from registry.schemas import ModelInfo
from registry.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", response_model=ModelInfo, status_code=201,
             responses={200: {"model": ModelInfo, "description": "already registered"}})
async def upload_model(request: Request, state: Farm = Depends(farm)) -> JSONResponse:
    form = await request.form(max_files=10_000, max_part_size=state.settings.max_upload_mib << 20)
    main = form.get("file")
    if not isinstance(main, UploadFile):
        raise InvalidModel("multipart field 'file' (the .onnx) is missing; external data goes in fields named 'files'")
    extra = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    folder = Path(tempfile.mkdtemp(prefix="trtfarm-upload-"))
    try:
        main_name = _safe_name(main.filename or "model.onnx")
        _store(main, folder / main_name)
        for f in extra:
            _store(f, folder / _safe_name(f.filename or ""))
        from starlette.concurrency import run_in_threadpool

        info, created = await run_in_threadpool(models.register_model, state.db, state.blobs, folder, main_name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        await form.close()
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


def _safe_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts:
        raise InvalidModel(f"file name {name!r} must be a relative path inside the model's folder, without '..'")
    return path.as_posix()


def _store(upload: UploadFile, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    with open(dest, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


@router.head("/{model_id}")
def model_exists(model_id: str, s: Session = Depends(session)) -> Response:
    models.get_model(s, model_id)
    return Response(status_code=200)


@router.get("/{model_id}", response_model=ModelInfo)
def get_model(model_id: str, s: Session = Depends(session)) -> ModelInfo:
    return models.model_info(s, models.get_model(s, model_id))
