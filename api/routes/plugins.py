"""/v1/plugins: TensorRT plugin libraries. Upload (the raw request body) and DELETE need the admin scope: a
library is code the workers run. List, HEAD and GET by digest need read. Which libraries builds may load is the
setting TRTFARM_ALLOWED_PLUGINS (docs/design.md "Security model"); `allowed` says whether the API's names each."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import uploads
from api.auth import admin_scope, read_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.auth import Principal
from registry.errors import InvalidPlugin
from registry.schemas import DIGEST, InputDeleted, PluginInfo, PluginList
from registry.services import plugins, retention
from registry.stores import FarmStores

PREFIX = "/v1/plugins"
router = APIRouter(prefix=PREFIX, tags=["plugins"], responses={**COMMON, **documented(413, 502, 507)})
Digest = PathParam(pattern=DIGEST, description="the library's digest, sha256:<64 hex>")
BODY = {"requestBody": {"required": True, "description": "the plugin library itself (an ELF shared object, .so)",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
UPLOAD_DOC = (
    "Upload a TensorRT plugin library (admin scope) as the raw request body (Content-Type: "
    "application/octet-stream; a `Content-Digest: sha-256=:…:` header is checked): a 64-bit ELF shared object, at "
    "most TRTFARM_MAX_PLUGIN_MIB. The answer's `digest` is what BuildRequest.plugins names; a build may name it "
    "only while TRTFARM_ALLOWED_PLUGINS allows that digest (`allowed`), and a worker loads it only when its own "
    "TRTFARM_ALLOWED_PLUGINS does. 200 when it was uploaded before.")


@router.post("", response_model=PluginInfo, status_code=201, openapi_extra=BODY, description=UPLOAD_DOC,
             responses={200: {"model": PluginInfo, "description": "already uploaded"}})
async def upload_plugin(
    request: Request,
    name: str | None = Query(None, min_length=1, max_length=255, description="its file name, for people"),
    farm: FarmStores = Depends(stores), who: Principal = Depends(admin_scope),
) -> JSONResponse:
    settings = farm.settings
    async with uploads.raw_file(request, "the plugin upload", "the library", "libmyplugin.so",
                                InvalidPlugin) as (path, digest, size):
        info, created = await run_in_threadpool(
            lambda: plugins.register(farm.db, farm.blobs, path, digest, size, name=name, uploaded_by=who.key_id,
                                     max_bytes=settings.max_plugin_mib << 20,
                                     allowed=settings.allowed_plugin_digests()))
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=PluginList, dependencies=[Depends(read_scope)])
def list_plugins(farm: FarmStores = Depends(stores)) -> PluginList:
    """Every uploaded library, newest first, with whether TRTFARM_ALLOWED_PLUGINS allows it; and the allow-list."""
    return plugins.list_plugins(farm.db, farm.settings.allowed_plugin_digests())


@router.head("/{digest}", dependencies=[Depends(read_scope)])
def plugin_exists(digest: str = Digest, farm: FarmStores = Depends(stores)) -> Response:
    plugins.read(farm.db, digest)
    return Response(status_code=200)


@router.get("/{digest}", response_model=PluginInfo, dependencies=[Depends(read_scope)])
def get_plugin(digest: str = Digest, farm: FarmStores = Depends(stores)) -> PluginInfo:
    return plugins.read(farm.db, digest, farm.settings.allowed_plugin_digests())


@router.delete("/{digest}", response_model=InputDeleted, dependencies=[Depends(admin_scope)],
               responses=documented(409))
async def delete_plugin(digest: str = Digest, farm: FarmStores = Depends(stores)) -> InputDeleted:
    """Remove a plugin library (admin; 409 while a build names it: gc its engines first) and its blob."""
    return InputDeleted(**await run_in_threadpool(retention.delete_input, farm.db, farm.blobs, digest, True))
