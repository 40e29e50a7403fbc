"""/healthz (the process answers) and /readyz (database and blob store reachable), open to all;
/v1/workers (read scope; /metrics is api/metrics.py); draining and resuming a worker (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from api.auth import admin_scope, read_scope
from api.deps import stores
from api.errors import COMMON
from registry.schemas import WorkerInfo
from registry.services import fleet, health, workerstate
from registry.stores import FarmStores

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database or the blob store does not answer"}})
def readyz(farm: FarmStores = Depends(stores)) -> JSONResponse:
    checks = health.readiness(farm)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/v1/workers", response_model=list[WorkerInfo], tags=["workers"], dependencies=[Depends(read_scope)],
            responses=COMMON)
def workers(farm: FarmStores = Depends(stores)) -> list[WorkerInfo]:
    return fleet.worker_infos(farm.db, farm.settings.worker_live_s)


WORKER_NAME = r"^[^\x00-\x1f/]{1,255}$"


@router.post("/v1/workers/{name}/drain", response_model=WorkerInfo, tags=["workers"],
             dependencies=[Depends(admin_scope)], responses=COMMON)
def drain(name: str = Path(pattern=WORKER_NAME), farm: FarmStores = Depends(stores)) -> WorkerInfo:
    """The worker finishes the build it runs and takes no new one, until resumed (it survives restarts)."""
    return workerstate.set_drain(farm.db, name, True, farm.settings.worker_live_s)


@router.post("/v1/workers/{name}/resume", response_model=WorkerInfo, tags=["workers"],
             dependencies=[Depends(admin_scope)], responses=COMMON)
def resume(name: str = Path(pattern=WORKER_NAME), farm: FarmStores = Depends(stores)) -> WorkerInfo:
    """A drained worker takes builds again."""
    return workerstate.set_drain(farm.db, name, False, farm.settings.worker_live_s)

