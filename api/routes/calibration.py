"""/v1/calibration: upload an INT8 calibration data set (.npz) or a TensorRT calibration cache (the raw request
body), HEAD and GET by digest, DELETE (admin). Formats: registry/calibdata.py and docs/design.md "INT8 calibration"."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import uploads
from api.auth import admin_scope, read_scope, submit_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.auth import Principal
from registry.errors import InvalidCalibration
from registry.schemas import DIGEST, CalibrationInfo, InputDeleted
from registry.services import calibration, retention
from registry.stores import FarmStores

PREFIX = "/v1/calibration"
router = APIRouter(prefix=PREFIX, tags=["calibration"], responses={**COMMON, **documented(413, 502, 507)})
Digest = PathParam(pattern=DIGEST, description="the upload's digest, sha256:<64 hex>")
BODY = {"requestBody": {"required": True, "description": "the file itself: an .npz data set or a calibration cache",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


UPLOAD_DOC = (
    "Upload an INT8 calibration input as the raw request body (Content-Type: application/octet-stream; a "
    "`Content-Digest: sha-256=:…:` header is checked). **Data set**: one .npz (numpy.savez), one array per model "
    "input named after it, axis 0 counting samples, each sample the input's shape at profile 0's opt less the "
    "batch axis; numeric, finite; at most TRTFARM_MAX_CALIBRATION_MIB uncompressed. **Cache**: a TensorRT "
    "calibration cache (`TRT-<version>-<Calibrator>` header, then `<tensor>: <hex>` lines). The answer's `digest` "
    "is what BuildRequest.calibration names; 200 when it was uploaded before.")


@router.post("", response_model=CalibrationInfo, status_code=201, openapi_extra=BODY, description=UPLOAD_DOC,
             responses={200: {"model": CalibrationInfo, "description": "already uploaded"}})
async def upload_calibration(
    request: Request,
    kind: Literal["data", "cache"] | None = Query(None, description="what the file must be (found from its bytes "
                                                                    "when omitted)"),
    name: str | None = Query(None, min_length=1, max_length=255, description="its file name, for people"),
    farm: FarmStores = Depends(stores), who: Principal = Depends(submit_scope),
) -> JSONResponse:
    async with uploads.raw_file(request, "the calibration upload", "the file", "calib.npz",
                                InvalidCalibration) as (path, digest, size):
        info, created = await run_in_threadpool(
            lambda: calibration.register(farm.db, farm.blobs, path, digest, size, kind=kind, name=name,
                                         uploaded_by=who.key_id, max_bytes=farm.settings.max_calibration_mib << 20))
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.head("/{digest}", dependencies=[Depends(read_scope)])
def calibration_exists(digest: str = Digest, farm: FarmStores = Depends(stores)) -> Response:
    calibration.read(farm.db, digest)
    return Response(status_code=200)


@router.get("/{digest}", response_model=CalibrationInfo, dependencies=[Depends(read_scope)])
def get_calibration(digest: str = Digest, farm: FarmStores = Depends(stores)) -> CalibrationInfo:
    return calibration.read(farm.db, digest)


@router.delete("/{digest}", response_model=InputDeleted, dependencies=[Depends(admin_scope)],
               responses=documented(409))
async def delete_calibration(digest: str = Digest, farm: FarmStores = Depends(stores)) -> InputDeleted:
    """Remove a calibration data set or cache (admin; 409 while a build names it: gc its engines first); a data
    set's made caches go with it, and every blob nothing else uses."""
    return InputDeleted(**await run_in_threadpool(retention.delete_input, farm.db, farm.blobs, digest, False))
