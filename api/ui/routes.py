"""The dashboard's pages: Fleet, Builds (list, detail with the live log, cancel), Models (the engine matrix,
a build for an empty cell), and the sign-in form. Thin: each calls the services the API routes call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from api.deps import stores
from api.ui import session
from api.ui.session import viewer
from registry import auth
from registry.errors import InvalidInput, NotFound, Unauthorized
from registry.schemas import ID_OR_PREFIX, MODEL_OR_PREFIX, BuildRequest
from registry.services import builds, dashboard, engines, fleet, keys
from registry.status import BuildStatus
from registry.stores import FarmStores

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
BuildId = PathParam(pattern=ID_OR_PREFIX)
ModelId = PathParam(pattern=MODEL_OR_PREFIX)
FILTERS = ("status", "model", "target", "submitter")


def render(request: Request, who: auth.Principal, name: str, **context: Any) -> Response:
    context.update(who=who, csrf=session.csrf_token(request), auth_required=request.app.state.auth_required,
                   statuses=[s.value for s in BuildStatus])
    return session.set_csrf(request, templates.TemplateResponse(request, name, context))


@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/fleet", response_class=HTMLResponse)
async def fleet_page(request: Request, who: auth.Principal = Depends(viewer),
                     farm: FarmStores = Depends(stores)) -> Response:
    live_s = farm.settings.worker_live_s
    workers = await run_in_threadpool(fleet.worker_infos, farm.db, live_s)
    queues = await run_in_threadpool(dashboard.queue_infos, farm.db, live_s)
    return render(request, who, "fleet.html", page="fleet", workers=workers, queues=queues)


@router.get("/builds", response_class=HTMLResponse)
async def builds_page(request: Request, who: auth.Principal = Depends(viewer),
                      farm: FarmStores = Depends(stores)) -> Response:
    chosen = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    status = chosen["status"] if chosen["status"] in {s.value for s in BuildStatus} else None
    found = await run_in_threadpool(lambda: builds.list_builds(
        farm.db, status=BuildStatus(status) if status else None, model=chosen["model"] or None,
        target=chosen["target"] or None, submitter=chosen["submitter"] or None, limit=200))
    return render(request, who, "builds.html", page="builds", builds=found.items, total=found.total, chosen=chosen)


@router.get("/builds/{build_id}", response_class=HTMLResponse)
async def build_page(request: Request, build_id: str = BuildId, who: auth.Principal = Depends(viewer),
                     farm: FarmStores = Depends(stores)) -> Response:
    info = await run_in_threadpool(builds.read, farm.db, build_id)
    log = await run_in_threadpool(builds.log_text, farm.db, farm.blobs, info.id)
    engine = await run_in_threadpool(engines.read, farm.db, info.engine_id) if info.engine_id else None
    return render(request, who, "build.html", page="builds", build=info, log=log, engine=engine)


@router.post("/builds/{build_id}/cancel")
async def cancel(request: Request, build_id: str = BuildId, farm: FarmStores = Depends(stores)) -> Response:
    who, _ = await session.actor(request, "submit")
    info = await run_in_threadpool(builds.cancel, farm.db, build_id, who)
    farm.reads.forget_build(info.id)
    return RedirectResponse(f"/ui/builds/{info.id}", status_code=303)


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, who: auth.Principal = Depends(viewer),
                      farm: FarmStores = Depends(stores)) -> Response:
    rows = await run_in_threadpool(dashboard.model_rows, farm.db)
    return render(request, who, "models.html", page="models", models=rows)


@router.get("/models/{model_id}", response_class=HTMLResponse)
async def matrix_page(request: Request, model_id: str = ModelId, who: auth.Principal = Depends(viewer),
                      farm: FarmStores = Depends(stores)) -> Response:
    matrix = await run_in_threadpool(dashboard.engine_matrix, farm.db, model_id, farm.settings.worker_live_s)
    return render(request, who, "matrix.html", page="models", matrix=matrix)


@router.post("/models/{model_id}/builds")
async def submit_for_cell(request: Request, model_id: str = ModelId, farm: FarmStores = Depends(stores)) -> Response:
    who, form = await session.actor(request, "submit")
    try:
        spec = json.loads(form.get("spec") or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"spec is not JSON: {exc}") from exc
    if not model_id.startswith("sha256:") or len(model_id) != 71:
        raise NotFound(f"a build needs the model's full id (sha256:<64 hex>), not {model_id!r}")
    request_ = BuildRequest(model=model_id, target=form.get("target", ""), spec=spec)
    info, _ = await run_in_threadpool(lambda: builds.submit(farm.db, farm.settings, request_, submitted_by=who.key_id,
                                                            blobs=farm.blobs))
    return RedirectResponse(f"/ui/builds/{info.id}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui/fleet", error: str | None = None) -> Response:
    return render(request, auth.Principal(None, "", frozenset()), "login.html", page="login", next=_local(next),
                  error=error)


@router.post("/login")
async def login(request: Request, farm: FarmStores = Depends(stores)) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    session.check_csrf(request, form)
    token = form.get("token", "").strip()
    try:
        await run_in_threadpool(keys.authenticate, farm.db, token)
    except Unauthorized as exc:
        return render(request, auth.Principal(None, "", frozenset()), "login.html", page="login",
                      next=_local(form.get("next", "")), error=str(exc))
    return session.sign_in(request, RedirectResponse(_local(form.get("next", "")), status_code=303), token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    session.check_csrf(request, form)
    return session.sign_out(RedirectResponse("/ui/login", status_code=303))


def _local(path: str) -> str:
    """Only a dashboard page to go back to after signing in (never another site)."""
    return path if path.startswith("/ui/") and not path.startswith("//") else "/ui/fleet"
