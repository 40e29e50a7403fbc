"""/healthz (the process answers), /readyz (database and blob store reachable), /v1/workers, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select, text

from api.deps import Farm, farm
from registry.db.tables import Build, Engine
from registry.schemas import WorkerInfo
from registry.services import fleet

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: Farm = Depends(farm)) -> JSONResponse:
    checks = {}
    try:
        with state.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, don't crash
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    try:
        state.blobs.exists("sha256:" + "0" * 64)
        checks["blobs"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["blobs"] = f"error: {exc.__class__.__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/v1/workers", response_model=list[WorkerInfo], tags=["workers"])
def workers(state: Farm = Depends(farm)) -> list[WorkerInfo]:
    with state.db.session() as s:
        live = {w.name for w in fleet.live_workers(s, state.settings.worker_live_s)}
        rows = fleet.all_workers(s)
        return [WorkerInfo.model_validate(w).model_copy(update={"live": w.name in live}) for w in rows]


@router.get("/metrics", include_in_schema=False)
def metrics(state: Farm = Depends(farm)) -> Response:
    """Prometheus: builds by status and queue, live workers, engines, timing caches (read from SQL)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    builds = Gauge("trtfarm_builds", "builds by status and queue", ["status", "queue"], registry=registry)
    workers = Gauge("trtfarm_workers_live", "live workers", registry=registry)
    engines = Gauge("trtfarm_engines", "engines by toolchain", ["toolchain"], registry=registry)
    with state.db.session() as s:
        for status, queue, n in s.execute(select(Build.status, Build.queue, func.count()).group_by(Build.status, Build.queue)):
            builds.labels(status, queue).set(n)
        for toolchain, n in s.execute(select(Engine.toolchain, func.count()).group_by(Engine.toolchain)):
            engines.labels(toolchain).set(n)
        workers.set(len(fleet.live_workers(s, state.settings.worker_live_s)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
