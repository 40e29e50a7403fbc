"""/v1/builds: submit (201 new, 200 existing), read, list, log, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import stores
from registry.schemas import BuildInfo, BuildList, BuildRequest
from registry.services import builds
from registry.status import BuildStatus
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/builds", tags=["builds"])


@router.post("", response_model=BuildInfo, status_code=201,
             responses={200: {"model": BuildInfo, "description": "a build for this key already exists"}})
def submit_build(request: BuildRequest, farm: FarmStores = Depends(stores)) -> JSONResponse:
    info, created = builds.submit(farm.db, farm.settings, request)
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=BuildList)
def list_builds(status: BuildStatus | None = None, model: str | None = None, toolchain: str | None = None,
                limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                farm: FarmStores = Depends(stores)) -> BuildList:
    return builds.list_builds(farm.db, status=status, model=model, toolchain=toolchain, limit=limit, offset=offset)


@router.get("/{build_id}", response_model=BuildInfo)
def get_build(build_id: str, farm: FarmStores = Depends(stores)) -> BuildInfo:
    return builds.read(farm.db, build_id)


@router.get("/{build_id}/log", response_class=PlainTextResponse)
def get_log(build_id: str, farm: FarmStores = Depends(stores)) -> PlainTextResponse:
    return PlainTextResponse(builds.log_text(farm.db, farm.blobs, build_id))


@router.post("/{build_id}/cancel", response_model=BuildInfo)
def cancel_build(build_id: str, farm: FarmStores = Depends(stores)) -> BuildInfo:
    return builds.cancel(farm.db, build_id)
