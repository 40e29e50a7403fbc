"""API keys: create (the token is returned once), list, revoke, and authenticate a request's token."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from registry import auth
from registry.db.session import Database
from registry.db.tables import ApiKey, utcnow
from registry.errors import Conflict, NotFound, Unauthorized
from registry.schemas import KeyCreated, KeyInfo

TOKEN_HINT = "send `Authorization: Bearer <token>` (the SDK and CLI read TRTFARM_TOKEN)"


def create_key(db: Database, name: str, scopes: list[str]) -> KeyCreated:
    """A new key; its token is in the answer and nowhere else (only its hash is stored)."""
    name, scopes = auth.check_name(name), auth.check_scopes(scopes)
    prefix, token = auth.new_token()
    row = ApiKey(id=uuid.uuid4().hex, name=name, prefix=prefix, hash=auth.token_hash(token), scopes=scopes)
    try:
        with db.session() as s:
            s.add(row)
    except IntegrityError:
        raise Conflict(f"an API key named {name!r} exists already; revoke it or pick another name") from None
    return KeyCreated(**key_info(row).model_dump(), token=token)


def list_keys(db: Database) -> list[KeyInfo]:
    with db.session() as s:
        return [key_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]


def revoke_key(db: Database, name: str) -> KeyInfo:
    """Revoke a key by name: its token stops working at once. Revoking twice is harmless."""
    with db.session() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"no API key named {name!r}; list them with `trtfarm keys list`")
        s.execute(update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
        s.refresh(row)
        return key_info(row)


def authenticate(db: Database, token: str | None) -> auth.Principal:
    """The key a bearer token belongs to; Unauthorized without one, or for an unknown or revoked one."""
    if not token:
        raise Unauthorized(f"this farm needs an API key: {TOKEN_HINT}")
    prefix = auth.token_prefix(token)
    if prefix is None:
        raise Unauthorized(f"the bearer token is not a trtfarm API key (tf_<8 hex>_<secret>); {TOKEN_HINT}")
    digest = auth.token_hash(token)
    with db.session() as s:
        rows = s.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).all()
    for row in rows:
        if auth.same_hash(row.hash, digest):
            if row.revoked_at is not None:
                raise Unauthorized(f"API key {row.name!r} was revoked at {row.revoked_at:%Y-%m-%d %H:%M} UTC; "
                                   "ask an admin for a new one")
            return auth.Principal(row.id, row.name, auth.implied(row.scopes))
    raise Unauthorized(f"unknown API key tf_{prefix}_…; check TRTFARM_TOKEN, or ask an admin for a key")


def key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(id=row.id, name=row.name, prefix=row.prefix, scopes=list(row.scopes),
                   created_at=row.created_at, revoked_at=row.revoked_at)
