"""/v1/engines: resolve for a runtime, read, download (presigned redirect or streamed; Range; ETag)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api.auth import read_scope
from api.deps import stores
from api.errors import error_response
from api.ranges import byte_range
from registry import compat
from registry.errors import RangeNotSatisfiable
from registry.schemas import DIGEST, HEX_ID, SLUG, EngineInfo, EngineList, ErrorBody, Resolution
from registry.services import engines
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/engines", tags=["engines"], dependencies=[Depends(read_scope)])
EngineId = Path(pattern=HEX_ID, description="an engine id (32 hex)")


@router.get("/resolve", response_model=Resolution)
def resolve(model: str = Query(pattern=DIGEST), toolchain: str = Query(pattern=SLUG),
            version: str = Query(pattern=SLUG), sku: str | None = Query(None, pattern=SLUG),
            cc: str | None = Query(None, pattern=SLUG), cpu: str | None = Query(None, pattern=SLUG),
            allow_cross_sku: bool = False, lean_runtime: bool = False, engine_host_code_allowed: bool = False,
            spec_family: str | None = Query(None, pattern=r"^[0-9a-f]{64}$"),
            shape: list[str] = Query([], max_length=64,
                                     description="NAME:1x3x224x224; only engines whose profiles hold it"),
            farm: FarmStores = Depends(stores)) -> Resolution:
    runtime = compat.Runtime(toolchain=toolchain, version=version, sku=sku, cc=cc, cpu=cpu,
                             allow_cross_sku=allow_cross_sku, lean_runtime=lean_runtime,
                             engine_host_code_allowed=engine_host_code_allowed)
    return engines.resolve(farm.db, model, runtime, spec_family=spec_family, shapes=engines.parse_shapes(shape))


@router.get("", response_model=EngineList)
def list_engines(model: str | None = Query(None, pattern=DIGEST), farm: FarmStores = Depends(stores)) -> EngineList:
    return EngineList(items=engines.list_engines(farm.db, model))


@router.get("/{engine_id}", response_model=EngineInfo)
def get_engine(engine_id: str = EngineId, farm: FarmStores = Depends(stores)) -> EngineInfo:
    return engines.read(farm.db, engine_id)


@router.api_route("/{engine_id}/artifact", methods=["GET", "HEAD"], responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the whole artifact"},
    206: {"description": "one byte range (Range: bytes=…)"}, 304: {"description": "If-None-Match matched"},
    307: {"description": "a presigned URL of the blob store (GET only)"},
    416: {"model": ErrorBody, "description": "the range starts past the end"}})
def get_artifact(request: Request, engine_id: str = EngineId, range_: str | None = Header(None, alias="range"),
                 if_range: str | None = Header(None), if_none_match: str | None = Header(None),
                 farm: FarmStores = Depends(stores)) -> Response:
    """The engine's bytes: streamed (Range, If-Range, ETag, HEAD), or a redirect to the blob store."""
    engine = engines.read(farm.db, engine_id)
    etag = f'"{engine.digest}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "X-Content-SHA256": engine.digest,
               "Content-Disposition": f'attachment; filename="{engine.filename}"'}
    if if_none_match and (etag in if_none_match or if_none_match.strip() == "*"):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":  # Range applies to GET only; a presigned URL is signed for GET
        headers["Content-Length"] = str(engine.size)
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    url = farm.blobs.presigned_url(engine.digest, filename=engine.filename)
    if url:
        return RedirectResponse(url, status_code=307, headers=headers)
    try:
        wanted = byte_range(range_, engine.size, if_range=if_range, etag=etag)
    except RangeNotSatisfiable as exc:
        return error_response(exc, headers={**headers, "Content-Range": f"bytes */{engine.size}"})
    start, end = wanted or (0, engine.size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{engine.size}"
    body = farm.blobs.open_range(engine.digest, start, end + 1)  # open_range's end is exclusive
    return StreamingResponse(body, status_code=206 if wanted else 200, media_type="application/octet-stream",
                             headers=headers)
