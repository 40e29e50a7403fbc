"""/v1/engines: resolve for a runtime, read, download (presigned redirect or streamed; Range; ETag)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api.auth import admin_scope, read_scope
from api.cached import cached, cached_json
from api.deps import stores
from api.errors import COMMON, documented, error_response
from api.ranges import byte_range
from registry import compat
from registry.auth import is_loopback
from registry.db.tables import utcnow
from registry.errors import NoLocalPath, RangeNotSatisfiable
from registry.schemas import DIGEST, ID_OR_PREFIX, SLUG, EngineInfo, EngineList, LocalArtifact, Resolution
from registry.services import engines, resolution
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/engines", tags=["engines"], dependencies=[Depends(read_scope)],
                   responses={**COMMON, **documented(502)})
EngineId = Path(pattern=ID_OR_PREFIX, description="an engine id (32 hex), or a unique prefix of 8 or more")


@router.get("/resolve", response_model=Resolution)
async def resolve(model: str = Query(pattern=DIGEST), toolchain: str = Query(pattern=SLUG),
            version: str = Query(pattern=SLUG), sku: str | None = Query(None, pattern=SLUG),
            cc: str | None = Query(None, pattern=SLUG), cpu: str | None = Query(None, pattern=SLUG),
            allow_cross_sku: bool = False, lean_runtime: bool = False, engine_host_code_allowed: bool = False,
            spec_family: str | None = Query(None, pattern=r"^[0-9a-f]{64}$"),
            shape: list[str] = Query([], max_length=64,
                                     description="NAME:1x3x224x224; only engines whose profiles hold it"),
            farm: FarmStores = Depends(stores)) -> Response:
    runtime = compat.Runtime(toolchain=toolchain, version=version, sku=sku, cc=cc, cpu=cpu,
                             allow_cross_sku=allow_cross_sku, lean_runtime=lean_runtime,
                             engine_host_code_allowed=engine_host_code_allowed)
    shapes = resolution.parse_shapes(shape)
    key = ("resolve", model, runtime, spec_family, tuple(shape))
    return await cached_json(farm, key, lambda: resolution.resolve(farm.db, model, runtime, spec_family=spec_family,
                                                                   shapes=shapes))


@router.get("", response_model=EngineList)
def list_engines(model: str | None = Query(None, pattern=DIGEST), toolchain: str | None = Query(None, pattern=SLUG),
                 version: str | None = Query(None, pattern=SLUG),
                 fetched_within_days: float | None = Query(None, ge=0, le=36_500,
                                                           description="only engines downloaded within this many days"),
                 farm: FarmStores = Depends(stores)) -> EngineList:
    since = None if fetched_within_days is None else utcnow() - timedelta(days=fetched_within_days)
    return EngineList(items=engines.list_engines(farm.db, model, toolchain, version, since))


@router.get("/{engine_id}", response_model=EngineInfo)
async def get_engine(engine_id: str = EngineId, farm: FarmStores = Depends(stores)) -> Response:
    return await cached_json(farm, ("engine-json", engine_id), lambda: engines.read(farm.db, engine_id))


def _artifact_headers(engine: EngineInfo) -> dict[str, str]:
    return {"ETag": f'"{engine.digest}"', "Accept-Ranges": "bytes", "X-Content-SHA256": engine.digest,
            "Content-Disposition": f'attachment; filename="{engine.filename}"'}


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    return bool(if_none_match) and (etag in if_none_match or if_none_match.strip() == "*")


@router.head("/{engine_id}/artifact", responses={200: {"description": "the artifact's headers, no body"},
                                                 304: {"description": "If-None-Match matched"}})
async def head_artifact(engine_id: str = EngineId, if_none_match: str | None = Header(None),
                        farm: FarmStores = Depends(stores)) -> Response:
    """The headers a GET would send (Range does not apply), answered by the API also for S3-backed farms:
    a presigned URL is signed for GET only."""
    engine = await _engine(farm, engine_id)
    headers = _artifact_headers(engine)
    if _not_modified(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(status_code=200, headers={**headers, "Content-Length": str(engine.size)},
                    media_type="application/octet-stream")


@router.get("/{engine_id}/artifact", responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the whole artifact"},
    206: {"description": "one byte range (Range: bytes=…)"}, 304: {"description": "If-None-Match matched"},
    307: {"description": "a presigned URL of the blob store"}, **documented(416)})
def get_artifact(engine_id: str = EngineId, range_: str | None = Header(None, alias="range"),
                 if_range: str | None = Header(None), if_none_match: str | None = Header(None),
                 farm: FarmStores = Depends(stores)) -> Response:
    """The engine's bytes: streamed (Range, If-Range, ETag), or a redirect to the blob store."""
    engine = farm.reads.lookup(("engine", engine_id), lambda: engines.read(farm.db, engine_id))
    headers = _artifact_headers(engine)
    etag = headers["ETag"]
    if _not_modified(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    url = farm.blobs.presigned_url(engine.digest, filename=engine.filename)
    if url:
        engines.count_fetch(farm.db, engine_id)
        return RedirectResponse(url, status_code=307, headers=headers)
    try:
        wanted = byte_range(range_, engine.size, if_range=if_range, etag=etag)
    except RangeNotSatisfiable as exc:
        return error_response(exc, headers={**headers, "Content-Range": f"bytes */{engine.size}"})
    if wanted is None or wanted[0] == 0:  # a download starts (a resumed one is not counted again)
        engines.count_fetch(farm.db, engine_id)
    if wanted is None:  # the whole artifact, checked as it streams: a corrupt blob never arrives complete
        headers["Content-Length"] = str(engine.size)
        return StreamingResponse(farm.blobs.stream_verified(engine.digest), media_type="application/octet-stream",
                                 headers=headers)
    _verify(farm, engine.digest)  # a range cannot be checked alone: the whole blob is, first
    start, end = wanted
    headers["Content-Length"] = str(end - start + 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{engine.size}"
    body = farm.blobs.open_range(engine.digest, start, end + 1)  # open_range's end is exclusive
    return StreamingResponse(body, status_code=206, media_type="application/octet-stream", headers=headers)


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


@router.get("/{engine_id}/artifact/local", response_model=LocalArtifact, responses=documented(404))
def local_artifact(request: Request, background: BackgroundTasks, engine_id: str = EngineId,
                   farm: FarmStores = Depends(stores)) -> LocalArtifact:
    """Where a client on this host reads the artifact from disk (a folder store; TRTFARM_LOCAL_READS), counted as
    a fetch once answered; 404 no_local_path for a client elsewhere or behind a proxy, and for other stores:
    download it."""
    engine = farm.reads.lookup(("engine", engine_id), lambda: engines.read(farm.db, engine_id))
    client = request.client.host if request.client else ""
    path = farm.blobs.local_path(engine.digest) if farm.settings.local_reads else None
    if path is None or not is_loopback(client) or any(h in request.headers for h in PROXY_HEADERS):
        raise NoLocalPath(f"engine {engine.id} cannot be read from this host's disk (the blob store is "
                          f"{farm.blobs.describe()}; only clients on the API's host, not through a proxy, with "
                          "TRTFARM_LOCAL_READS on): download it from /artifact", details={"engine": engine.id})
    background.add_task(engines.count_fetch, farm.db, engine.id)
    return LocalArtifact(path=str(path), digest=engine.digest, size=engine.size)


@router.post("/{engine_id}/pin", response_model=EngineInfo, dependencies=[Depends(admin_scope)])
def pin(engine_id: str = EngineId, farm: FarmStores = Depends(stores)) -> EngineInfo:
    """Keep the engine whatever gc's rules say."""
    return engines.set_pinned(farm.db, engine_id, True)


@router.post("/{engine_id}/unpin", response_model=EngineInfo, dependencies=[Depends(admin_scope)])
def unpin(engine_id: str = EngineId, farm: FarmStores = Depends(stores)) -> EngineInfo:
    return engines.set_pinned(farm.db, engine_id, False)


async def _engine(farm: FarmStores, engine_id: str) -> EngineInfo:
    return await cached(farm, ("engine", engine_id), lambda: engines.read(farm.db, engine_id))


def _verify(farm: FarmStores, digest: str) -> None:
    """DigestMismatch (and the blob quarantined) unless the stored blob hashes to its digest (or is proven
    unchanged since it did: the folder store's stamps)."""
    farm.blobs.verify(digest)
