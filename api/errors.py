"""The one place where FarmErrors become HTTP status codes and JSON bodies {code, message, details}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry import errors as e

STATUS: list[tuple[type[e.FarmError], int]] = [
    (e.TooLarge, 413),
    (e.RangeNotSatisfiable, 416),
    (e.InvalidInput, 422),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.DigestMismatch, 500),
    (e.BlobError, 502),
    (e.ToolchainError, 500),
]


def status_for(exc: e.FarmError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: e.FarmError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=status_for(exc), headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(e.FarmError)
    async def farm_error(_: Request, exc: e.FarmError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        return error_response(e.InvalidRequest("; ".join(problems), details={"errors": problems}))
