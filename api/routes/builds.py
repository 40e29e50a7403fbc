"""/v1/builds: submit (201 new, 200 existing), read, list, log, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api.auth import read_scope, submit_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.auth import Principal
from registry.readcache import MISSING, build_answer
from registry.schemas import DIGEST, ID_OR_PREFIX, SLUG, BuildInfo, BuildList, BuildRequest
from registry.services import builds
from registry.status import BuildStatus
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/builds", tags=["builds"], responses={**COMMON, **documented(409, 502)})
MAX_OFFSET = 10**9
BuildId = Path(pattern=ID_OR_PREFIX, description="a build id (32 hex), or a unique prefix of 8 or more")
JSON = "application/json"


@router.post("", response_model=BuildInfo, status_code=201,
             responses={200: {"model": BuildInfo, "description": "a build for this key already exists"}})
async def submit_build(request: BuildRequest, farm: FarmStores = Depends(stores),
                       who: Principal = Depends(submit_scope)) -> Response:
    # A duplicate submit whose key follows from the request is answered from the read cache when it holds the
    # build's answer (forgotten as soon as the build's row changes: registry/readcache.py); anything else goes
    # to services.builds.submit in a worker thread. (A comment, not a docstring: that would be the API docs.)
    key = builds.known_key(request)  # remembered per request: no parse or hash on a repeat
    build_id = farm.reads.get(("build-of-key", key)) if key else MISSING
    if build_id is not MISSING:
        body = farm.reads.get(build_answer(build_id))
        if body is not MISSING:
            return Response(body, media_type=JSON)
    token = farm.reads.token()
    info, created = await run_in_threadpool(builds.submit, farm.db, farm.settings, request, submitted_by=who.key_id,
                                            blobs=farm.blobs)
    body = info.model_dump_json().encode()
    if key == info.key and not created and info.status not in (BuildStatus.FAILED, BuildStatus.CANCELLED):
        farm.reads.put(("build-of-key", key), info.id, token)  # a key's build never changes its id
        farm.reads.put(build_answer(info.id), body, token)
    return Response(body, status_code=201 if created else 200, media_type=JSON)


@router.get("", response_model=BuildList, dependencies=[Depends(read_scope)])
def list_builds(status: BuildStatus | None = None, model: str | None = Query(None, pattern=DIGEST),
                toolchain: str | None = Query(None, pattern=SLUG),
                target: str | None = Query(None, max_length=255, description="a full target: kind==version@device"),
                submitter: str | None = Query(None, max_length=100, description="the submitting API key's name"),
                limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
                farm: FarmStores = Depends(stores)) -> BuildList:
    return builds.list_builds(farm.db, status=status, model=model, toolchain=toolchain, target=target,
                              submitter=submitter, limit=limit, offset=offset)


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
    info = builds.cancel(farm.db, build_id, who)
    farm.reads.forget_build(info.id)  # here at once (the notification tells every process, a moment later)
    return info
