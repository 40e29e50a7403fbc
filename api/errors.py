"""The one place where errors become HTTP status codes and JSON bodies {code, message, details}: every
FarmError by its class, request validation as 422, database trouble as 503/422, anything else as a JSON
500 (never a plain-text one)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from registry import errors as e
from registry.schemas import DIGEST, HEX_ID, ID_OR_PREFIX, MODEL_OR_PREFIX, SLUG, ErrorBody

log = logging.getLogger("trtfarm.api")

STATUS: list[tuple[type[e.FarmError], int]] = [
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.TooLarge, 413),
    (e.RangeNotSatisfiable, 416),
    (e.InvalidInput, 422),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.StoreFull, 507),
    (e.DigestMismatch, 500),
    (e.BlobError, 502),
    (e.Unavailable, 503),
    (e.ToolchainError, 500),
]


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for error statuses: each answers the JSON ErrorBody."""
    what = {401: "no valid API key", 403: "the key lacks the scope", 404: "not found", 409: "conflict",
            413: "request body over the limit", 416: "range not satisfiable", 422: "bad input",
            500: "a bug (the server log has it)", 502: "the blob store failed", 503: "the database does not answer",
            507: "the blob store is full"}
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}


# What any route may answer besides its own successes: auth, bad input, database down, a bug.
COMMON = documented(401, 403, 404, 422, 500, 503)


def status_for(exc: e.FarmError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: e.FarmError, headers: dict[str, str] | None = None) -> JSONResponse:
    if isinstance(exc, e.Unauthorized):  # RFC 9110: a 401 names the scheme to use
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="trtfarm"'}
    if isinstance(exc, e.Unavailable):
        headers = {**(headers or {}), "Retry-After": "5"}
    return JSONResponse(exc.to_dict(), status_code=status_for(exc), headers=headers)


def database_error(exc: DBAPIError) -> e.FarmError:
    """A value the database refuses is the caller's; a database that does not answer is nobody's fault."""
    if isinstance(exc, DataError):
        return e.InvalidInput("the database cannot store a value of this request (a NUL character, a number out of "
                              "range, an over-long text?); check the request's values")
    if _missing_schema(exc):
        return e.Unavailable("the farm's database has no tables (or an older schema): an operator runs "
                             "`trtfarm db upgrade` with this farm's TRTFARM_DATABASE_URL")
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return e.Unavailable("the farm's database does not answer right now; try again in a few seconds")
    return e.InternalError("the database refused the request; the server log has the details")


def _missing_schema(exc: DBAPIError) -> bool:
    """SQLite's "no such table", PostgreSQL's undefined table (SQLSTATE 42P01)."""
    return "no such table" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "42P01"


PATTERNS = {  # what an id or name that fails its pattern should look like, and where to find real ones
    HEX_ID: "an id of 32 hex characters (list them with `trtfarm builds` / `trtfarm engines MODEL`)",
    ID_OR_PREFIX: "an id, or a prefix of one, of 8 to 32 hex characters (list them with `trtfarm builds` / "
                  "`trtfarm engines MODEL`)",
    DIGEST: "sha256:<64 hex> (a model id: `trtfarm submit` prints it; the SDK computes it)",
    MODEL_OR_PREFIX: "a model id (sha256:<64 hex>) or a prefix of its digest of 8 or more hex characters",
    SLUG: "lower-case letters, digits, '.', '_' or '-' (e.g. onnxruntime, 8.6.0, h100-80gb-hbm3, x86_64-avx2)",
}


def describe(err: dict) -> str:
    """One line per validation problem: where, what came, what is expected."""
    where = ".".join(str(p) for p in err["loc"])
    pattern = (err.get("ctx") or {}).get("pattern")
    if err.get("type") == "string_pattern_mismatch" and pattern in PATTERNS:
        return f"{where}: {str(err.get('input'))[:80]!r} is not {PATTERNS[pattern]}"
    return f"{where}: {err['msg']}"


def install(app: FastAPI) -> None:
    @app.exception_handler(e.FarmError)
    async def farm_error(_: Request, exc: e.FarmError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [describe(err) for err in exc.errors()]
        return error_response(e.InvalidRequest("; ".join(problems), details={"errors": problems}))

    @app.exception_handler(DBAPIError)
    async def db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        log.warning("%s %s: database error: %s", request.method, request.url.path, exc)
        return error_response(database_error(exc))

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("%s %s: no database connection free: %s", request.method, request.url.path, exc)
        return error_response(e.Unavailable("the farm is too busy to get a database connection right now; "
                                            "try again in a few seconds"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(e.InternalError(f"the farm failed on {request.method} {request.url.path} "
                                              f"({type(exc).__name__}); the server log has the traceback"))
