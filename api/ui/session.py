"""Who looks at the dashboard, and the CSRF check of its forms.

Signing in stores the API key in an HttpOnly, SameSite=Strict cookie (api.auth.SESSION_COOKIE) that is
resolved exactly like a bearer token (api.auth.resolve); the API's GET routes accept it too, so the page's
script can read a build's log and events. In open mode (loopback, no keys) nobody signs in.

CSRF: a double-submit token. Every page sets a random `trtfarm_csrf` cookie (SameSite=Strict) when it has
none and puts its value in each form; a POST must send the same value in its `csrf` field.
"""

from __future__ import annotations

import secrets

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.auth import SESSION_COOKIE, resolve
from registry import auth
from registry.errors import Forbidden, Unauthorized

CSRF_COOKIE = "trtfarm_csrf"
COOKIE_DAYS = 7


class SignInNeeded(Exception):
    """A page asked for without a valid key where keys are required: go to the sign-in form."""


async def to_sign_in(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)


async def viewer(request: Request) -> auth.Principal:
    """The Principal of a page request (its read scope checked); SignInNeeded without a valid key."""
    try:
        found = await resolve(request, request.cookies.get(SESSION_COOKIE))
    except Unauthorized as exc:
        raise SignInNeeded() from exc
    if not found.can("read"):
        raise Forbidden(f"API key {found.name!r} lacks the read scope")
    return found


async def actor(request: Request, scope: str) -> tuple[auth.Principal, dict[str, str]]:
    """The Principal of a form POST, which must hold `scope` and carry the CSRF token; and the form."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    check_csrf(request, form)
    try:
        found = await resolve(request, request.cookies.get(SESSION_COOKIE))
    except Unauthorized as exc:
        raise SignInNeeded() from exc
    if not found.can(scope):
        raise Forbidden(f"API key {found.name!r} has scopes {', '.join(sorted(found.scopes))}; this needs {scope!r}")
    return found, form


def check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie, sent = request.cookies.get(CSRF_COOKIE), form.get("csrf")
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: its cookie, or a new one (set_csrf puts it on the response)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = request.state.new_csrf = secrets.token_urlsafe(24)
    return token


def set_csrf(request: Request, response: Response) -> Response:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", path="/ui",
                            secure=request.url.scheme == "https")
    return response


def sign_in(request: Request, response: Response, token: str) -> Response:
    response.set_cookie(SESSION_COOKIE, token, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="strict",
                        path="/", secure=request.url.scheme == "https")
    return response


def sign_out(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
