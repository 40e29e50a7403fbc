"""/v1/engines: resolve for a runtime, read, download (presigned redirect or streamed; Range; ETag)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api.deps import stores
from api.errors import error_response
from registry import compat
from registry.errors import InvalidInput, RangeNotSatisfiable
from registry.schemas import EngineInfo, EngineList, Resolution
from registry.services import engines
from registry.stores import FarmStores

router = APIRouter(prefix="/v1/engines", tags=["engines"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("/resolve", response_model=Resolution)
def resolve(model: str, toolchain: str, version: str, sku: str | None = None, cc: str | None = None,
            cpu: str | None = None, allow_cross_sku: bool = False, lean_runtime: bool = False,
            engine_host_code_allowed: bool = False, spec_family: str | None = None,
            shape: list[str] = Query([], description="NAME:1x3x224x224; only engines whose profiles hold it"),
            farm: FarmStores = Depends(stores)) -> Resolution:
    runtime = compat.Runtime(toolchain=toolchain, version=version, sku=sku, cc=cc, cpu=cpu,
                             allow_cross_sku=allow_cross_sku, lean_runtime=lean_runtime,
                             engine_host_code_allowed=engine_host_code_allowed)
    return engines.resolve(farm.db, model, runtime, spec_family=spec_family, shapes=engines.parse_shapes(shape))


@router.get("", response_model=EngineList)
def list_engines(model: str | None = Query(None), farm: FarmStores = Depends(stores)) -> EngineList:
    return EngineList(items=engines.list_engines(farm.db, model))


@router.get("/{engine_id}", response_model=EngineInfo)
def get_engine(engine_id: str, farm: FarmStores = Depends(stores)) -> EngineInfo:
    return engines.read(farm.db, engine_id)


@router.get("/{engine_id}/artifact", responses={206: {}, 304: {}, 307: {}})
def get_artifact(engine_id: str, range_: str | None = Header(None, alias="range"),
                 if_none_match: str | None = Header(None), farm: FarmStores = Depends(stores)) -> Response:
    engine = engines.read(farm.db, engine_id)
    etag = f'"{engine.digest}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "X-Content-SHA256": engine.digest,
               "Content-Disposition": f'attachment; filename="{engine.filename}"'}
    if if_none_match and (etag in if_none_match or if_none_match.strip() == "*"):
        return Response(status_code=304, headers=headers)
    url = farm.blobs.presigned_url(engine.digest, filename=engine.filename)
    if url:
        return RedirectResponse(url, status_code=307, headers=headers)
    try:
        start, end = byte_range(range_, engine.size)
    except RangeNotSatisfiable as exc:  # RFC 9110: 416 with the current length
        return error_response(exc, headers={**headers, "Content-Range": f"bytes */{engine.size}"})
    body = farm.blobs.open_range(engine.digest, start, end + 1)  # open_range's end is exclusive
    headers["Content-Length"] = str(end - start + 1)
    if range_:
        headers["Content-Range"] = f"bytes {start}-{end}/{engine.size}"
    return StreamingResponse(body, status_code=206 if range_ else 200, media_type="application/octet-stream",
                             headers=headers)


def byte_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) byte of a `Range: bytes=…` header, inclusive."""
    if not header:
        return 0, size - 1
    m = _RANGE.match(header.strip())
    if not m or not (m[1] or m[2]):
        raise InvalidInput(f"Range {header!r} is not 'bytes=START-END'")
    if not m[1]:
        if int(m[2]) == 0:
            raise RangeNotSatisfiable(f"Range {header!r} asks for the last 0 bytes of the {size}-byte artifact")
        return max(0, size - int(m[2])), size - 1
    start, end = int(m[1]), int(m[2]) if m[2] else None
    if end is not None and start > end:
        raise InvalidInput(f"Range {header!r}: the first byte is after the last one; use 'bytes=START-END'")
    if start >= size:
        raise RangeNotSatisfiable(f"Range {header!r} starts past the end of the {size}-byte artifact; "
                                  f"ask for bytes 0-{size - 1}")
    return start, size - 1 if end is None else min(end, size - 1)
