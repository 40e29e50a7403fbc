"""Who is asking: the bearer token → a Principal with scopes (registry.services.keys), per route.

Open mode (auth not required: the API listens on loopback only, docs/design.md "Security model") lets
every request act with every scope, but a token that is sent is still checked and recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.cached import cached
from registry import auth
from registry.errors import Forbidden
from registry.services import keys

bearer = HTTPBearer(auto_error=False, description="an API key: `trtfarm keys create` prints one (tf_<prefix>_…)")


SESSION_COOKIE = "trtfarm_token"  # the web dashboard's sign-in: an API key in an HttpOnly, SameSite=Strict cookie


async def resolve(request: Request, token: str | None) -> auth.Principal:
    """Who a token (from the Authorization header or the dashboard's cookie) is: OPEN in open mode without
    one; Unauthorized without a valid key."""
    if not request.app.state.auth_required and token is None:
        return auth.OPEN
    farm = request.app.state.stores
    if token is None:
        return keys.authenticate(farm.db, token)  # raises Unauthorized without touching the database
    # a revoked key leaves the cache with the change that revokes it
    return await cached(farm, ("key", auth.token_hash(token)), lambda: keys.authenticate(farm.db, token))


def require(scope: str) -> Callable[..., auth.Principal]:
    """A dependency: the request's Principal, which must hold `scope` (401 without a valid key, 403 without
    the scope)."""

    async def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
                        ) -> auth.Principal:
        token = credentials.credentials if credentials else None
        if token is None and request.method in ("GET", "HEAD"):  # the dashboard's sign-in (api/ui): reads only
            token = request.cookies.get(SESSION_COOKIE)
        found = await resolve(request, token)
        if not found.can(scope):
            raise Forbidden(f"API key {found.name!r} has scopes {', '.join(sorted(found.scopes))}; "
                            f"this needs {scope!r}. Ask an admin for a key with it")
        return found

    principal.__name__ = f"require_{scope}"
    return principal


read_scope, submit_scope, admin_scope = require("read"), require("submit"), require("admin")


def require_unless(public: bool, scope: str) -> list:
    """Route dependencies: none when the setting makes the route public, else `require(scope)`."""
    return [] if public else [Depends(require(scope))]
