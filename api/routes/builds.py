"""/v1/builds: submit (201 new, 200 existing), read, list, log, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from api.auth import read_scope, submit_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.auth import Principal
from registry.schemas import DIGEST, HEX_ID, SLUG, BuildInfo, BuildList, BuildRequest
from registry.services import builds
from registry.status import BuildStatus
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/builds", tags=["builds"], responses={**COMMON, **documented(409, 502)})
MAX_OFFSET = 10**9
BuildId = Path(pattern=HEX_ID, description="a build id (32 hex)")


@router.post("", response_model=BuildInfo, status_code=201,
             responses={200: {"model": BuildInfo, "description": "a build for this key already exists"}})
def submit_build(request: BuildRequest, farm: FarmStores = Depends(stores),
                 who: Principal = Depends(submit_scope)) -> JSONResponse:
    info, created = builds.submit(farm.db, farm.settings, request, submitted_by=who.key_id, blobs=farm.blobs)
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=BuildList, dependencies=[Depends(read_scope)])
def list_builds(status: BuildStatus | None = None, model: str | None = Query(None, pattern=DIGEST),
                toolchain: str | None = Query(None, pattern=SLUG),
                limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
                farm: FarmStores = Depends(stores)) -> BuildList:
    return builds.list_builds(farm.db, status=status, model=model, toolchain=toolchain, limit=limit, offset=offset)


@router.get("/{build_id}", response_model=BuildInfo, dependencies=[Depends(read_scope)])
def get_build(build_id: str = BuildId, farm: FarmStores = Depends(stores)) -> BuildInfo:
    return builds.read(farm.db, build_id)


@router.get("/{build_id}/log", dependencies=[Depends(read_scope)], response_model=None, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the build's log"}})
def get_log(build_id: str = BuildId, farm: FarmStores = Depends(stores)) -> PlainTextResponse:
    return PlainTextResponse(builds.log_text(farm.db, farm.blobs, build_id))


@router.post("/{build_id}/cancel", response_model=BuildInfo)
def cancel_build(build_id: str = BuildId, farm: FarmStores = Depends(stores),
                 who: Principal = Depends(submit_scope)) -> BuildInfo:
    return builds.cancel(farm.db, build_id, who)
