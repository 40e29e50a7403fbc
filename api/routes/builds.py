"""/v1/builds: submit (201 new, 200 existing), read, list, log, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.orm import Session

from api.deps import Farm, farm, session
from registry.schemas import BuildInfo, BuildList, BuildRequest, BuildStatus
from registry.services import builds

router = APIRouter(prefix="/v1/builds", tags=["builds"])


@router.post("", response_model=BuildInfo, status_code=201,
             responses={200: {"model": BuildInfo, "description": "a build for this key already exists"}})
def submit_build(request: BuildRequest, state: Farm = Depends(farm)) -> JSONResponse:
    info, created = builds.submit(state.db, state.settings, request)
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=BuildList)
def list_builds(status: BuildStatus | None = None, model: str | None = None, toolchain: str | None = None,
                limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                s: Session = Depends(session)) -> BuildList:
    items, total = builds.list_builds(s, status=status, model=model, toolchain=toolchain, limit=limit, offset=offset)
    return BuildList(items=items, total=total)


@router.get("/{build_id}", response_model=BuildInfo)
def get_build(build_id: str, s: Session = Depends(session)) -> BuildInfo:
    return builds.build_info(s, builds.get_build(s, build_id))


@router.get("/{build_id}/log", response_class=PlainTextResponse)
def get_log(build_id: str, s: Session = Depends(session), state: Farm = Depends(farm)) -> PlainTextResponse:
    row = builds.get_build(s, build_id)
    if row.log_digest:
        return PlainTextResponse(state.blobs.get_bytes(row.log_digest).decode("utf-8", "replace"))
    return PlainTextResponse(row.log_tail or f"(build {build_id} is {row.status}; no log yet)\n")


@router.post("/{build_id}/cancel", response_model=BuildInfo)
def cancel_build(build_id: str, state: Farm = Depends(farm)) -> BuildInfo:
    return builds.cancel(state.db, build_id)
