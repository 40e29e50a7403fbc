"""/v1/models: upload (multipart: `file` = the .onnx, `files` = its external data), HEAD, GET."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import uploads
from api.auth import read_scope, submit_scope
from api.cached import cached, cached_json
from api.deps import stores
from api.errors import COMMON, documented
from registry.auth import Principal
from registry.errors import InvalidModel
from registry.schemas import MODEL_OR_PREFIX, ModelInfo
from registry.services import models
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/models", tags=["models"], responses={**COMMON, **documented(413, 502, 507)})
ModelId = PathParam(pattern=MODEL_OR_PREFIX, description="a model id (sha256:<64 hex>), or a unique prefix of 8+ hex")


@router.post("", response_model=ModelInfo, status_code=201,
             responses={200: {"model": ModelInfo, "description": "already registered"}})
async def upload_model(request: Request, farm: FarmStores = Depends(stores),
                       who: Principal = Depends(submit_scope)) -> JSONResponse:
    async with uploads.upload_folder() as folder:
        # written and hashed in one pass; a file whose part states its digest may go on to the store meanwhile
        received = await uploads.receive(request, folder, stream=farm.blobs.begin_stream)
        if received.main is None:
            for stream in received.streams.values():
                await run_in_threadpool(stream.abort)
            raise InvalidModel("multipart field 'file' (the .onnx) is missing; external data goes in fields "
                               "named 'files'")
        info, created = await run_in_threadpool(models.register_model, farm.db, farm.blobs, folder, received.main,
                                                who.key_id, farm.settings.intake_limits(), received.files,
                                                received.streams)
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.head("/{model_id}", dependencies=[Depends(read_scope)])
async def model_exists(model_id: str = ModelId, farm: FarmStores = Depends(stores)) -> Response:
    await cached(farm, ("model-exists", model_id), lambda: models.exists(farm.db, model_id))
    return Response(status_code=200)


@router.get("/{model_id}", response_model=ModelInfo, dependencies=[Depends(read_scope)])
async def get_model(model_id: str = ModelId, farm: FarmStores = Depends(stores)) -> Response:
    return await cached_json(farm, ("model-json", model_id), lambda: models.read(farm.db, model_id))
