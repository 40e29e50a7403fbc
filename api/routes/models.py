"""/v1/models: upload (multipart: `file` = the .onnx, `files` = its external data), HEAD, GET."""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.auth import read_scope, submit_scope
from api.cached import cached, cached_json
from api.deps import stores
from api.errors import COMMON, documented
from registry.atomic import writer_tag
from registry.auth import Principal
from registry.errors import InvalidModel, StoreFull
from registry.schemas import DIGEST, ModelInfo
from registry.services import models
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/models", tags=["models"], responses={**COMMON, **documented(413, 502, 507)})
UPLOAD_DIR_PREFIX = "trtfarm-upload-"  # swept at API start when an API died mid-upload (api/serve.py)
ModelId = PathParam(pattern=DIGEST, description="a model id (sha256:<64 hex>)")


@router.post("", response_model=ModelInfo, status_code=201,
             responses={200: {"model": ModelInfo, "description": "already registered"}})
async def upload_model(request: Request, farm: FarmStores = Depends(stores),
                       who: Principal = Depends(submit_scope)) -> JSONResponse:
    form = await request.form(max_files=10_000, max_part_size=farm.settings.max_upload_mib << 20)
    main = form.get("file")
    if not isinstance(main, UploadFile):
        raise InvalidModel("multipart field 'file' (the .onnx) is missing; external data goes in fields named 'files'")
    extra = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    folder = Path(tempfile.mkdtemp(prefix=UPLOAD_DIR_PREFIX + writer_tag()))
    try:
        main_name = _safe_name(main.filename or "model.onnx")
        for f, name in [(main, main_name), *((f, _safe_name(f.filename or "")) for f in extra)]:
            await run_in_threadpool(_store, f, folder / name)  # a 600 MB copy must not hold the event loop
        info, created = await run_in_threadpool(models.register_model, farm.db, farm.blobs, folder, main_name,
                                                who.key_id, farm.settings.intake_limits())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        await form.close()
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


MAX_NAME = 255  # bytes per path component, as file systems allow
MAX_PATH = 1024  # the model_files.path column


def _safe_name(name: str) -> str:
    """A multipart file name as a relative path inside the upload; InvalidModel for anything else."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or path.as_posix() in (".", ""):
        raise InvalidModel(f"file name {name!r} must be a relative path inside the model's folder, without '..'")
    if any(ord(c) < 32 for c in name):  # NUL, newline, tab, …
        raise InvalidModel(f"file name {name!r} contains control characters (NUL, newline, …); rename the file")
    if len(path.as_posix().encode()) > MAX_PATH or any(len(p.encode()) > MAX_NAME for p in path.parts):
        raise InvalidModel(f"file name {name[:80]!r}… is too long: at most {MAX_NAME} bytes per folder or file name "
                           f"and {MAX_PATH} in all")
    return path.as_posix()


def _store(upload: UploadFile, dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        upload.file.seek(0)
        with open(dest, "wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull("the API's upload folder is full; nothing was kept. Free space (or point TMPDIR "
                            "elsewhere) and upload again") from None
        raise


@router.head("/{model_id}", dependencies=[Depends(read_scope)])
async def model_exists(model_id: str = ModelId, farm: FarmStores = Depends(stores)) -> Response:
    await cached(farm, ("model-exists", model_id), lambda: models.exists(farm.db, model_id))
    return Response(status_code=200)


@router.get("/{model_id}", response_model=ModelInfo, dependencies=[Depends(read_scope)])
async def get_model(model_id: str = ModelId, farm: FarmStores = Depends(stores)) -> Response:
    return await cached_json(farm, ("model-json", model_id), lambda: models.read(farm.db, model_id))
