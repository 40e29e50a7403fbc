"""Retention (admin): POST /v1/gc removes engines nobody needs and compacts the timing caches; DELETE
/v1/models/{id} removes a model with its builds and engines (registry.services.retention)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from api.auth import admin_scope
from api.deps import stores
from api.errors import COMMON, documented
from registry.schemas import DIGEST, GcReportInfo, GcRequest, ModelDeleted
from registry.services import retention
from registry.stores import FarmStores

router = APIRouter(tags=["retention"], dependencies=[Depends(admin_scope)], responses={**COMMON, **documented(409)})


@router.post("/v1/gc", response_model=GcReportInfo)
async def gc(request: GcRequest, farm: FarmStores = Depends(stores)) -> GcReportInfo:
    """What gc removes (dry_run, the default) or removed: engines that are not pinned, not among the newest
    keep_last of their (model, target, spec family), not downloaded or built within unused_days; timing-cache
    blobs of superseded generations; timing-cache partitions unused within unused_days whose TensorRT version
    no live worker serves."""
    report = await run_in_threadpool(retention.gc, farm.db, farm.blobs, request.keep_last, request.unused_days,
                                     request.dry_run, live_s=farm.settings.worker_live_s)
    return GcReportInfo.model_validate(report, from_attributes=True)


@router.delete("/v1/models/{model_id}", response_model=ModelDeleted)
async def delete_model(model_id: str = PathParam(pattern=DIGEST), farm: FarmStores = Depends(stores)) -> ModelDeleted:
    """The model, its files, builds and engines, and every blob nothing else uses (409 while it builds)."""
    return ModelDeleted(**await run_in_threadpool(retention.delete_model, farm.db, farm.blobs, model_id))
