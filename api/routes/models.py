"""/v1/models: upload (multipart: `file` = the .onnx, `files` = its external data), HEAD, GET."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import stores
from registry.errors import InvalidModel
from registry.schemas import ModelInfo
from registry.services import models
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", response_model=ModelInfo, status_code=201,
             responses={200: {"model": ModelInfo, "description": "already registered"}})
async def upload_model(request: Request, farm: FarmStores = Depends(stores)) -> JSONResponse:
    form = await request.form(max_files=10_000, max_part_size=farm.settings.max_upload_mib << 20)
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
        info, created = await run_in_threadpool(models.register_model, farm.db, farm.blobs, folder, main_name)
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
def model_exists(model_id: str, farm: FarmStores = Depends(stores)) -> Response:
    models.exists(farm.db, model_id)
    return Response(status_code=200)


@router.get("/{model_id}", response_model=ModelInfo)
def get_model(model_id: str, farm: FarmStores = Depends(stores)) -> ModelInfo:
    return models.read(farm.db, model_id)
