"""API keys: tokens, their hashes, scopes, and who a request acts as. Standard library only.

A token is `tf_<prefix>_<secret>`: the prefix (8 hex) names the key in listings and finds its row; the
secret (32 random bytes) never leaves the client after it is shown once. The farm stores the sha256 of
the whole token (random tokens need no slow hash) and compares in constant time.

Scopes nest: `admin` ⊃ `submit` ⊃ `read`.
- read:   models, builds, engines, resolve, artifacts, workers
- submit: upload models, submit builds, cancel the key's own builds
- admin:  API keys, cancel any build, fleet operations, delete
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from registry.errors import InvalidInput

SCOPES = ("read", "submit", "admin")
TOKEN = re.compile(r"^tf_(?P<prefix>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: an API key, or everyone (open mode on loopback)."""

    key_id: str | None
    name: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_open(self) -> bool:
        return self.key_id is None


OPEN = Principal(None, "open mode", frozenset(SCOPES))


def implied(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The scopes a key holds: each given scope and those below it (admin ⊃ submit ⊃ read)."""
    return frozenset(s for given in scopes for s in SCOPES[: SCOPES.index(given) + 1])


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        got = ", ".join(scopes) or "none"
        raise InvalidInput(f"scopes must be among {', '.join(SCOPES)} (at least one); got {got}")
    return sorted(set(scopes), key=SCOPES.index)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidInput(f"key name {name!r}: 1-100 characters, letters, digits and . _ @ -, starting with a "
                           "letter or digit (e.g. ci-builder, inference@eu-1)")
    return name


def new_token() -> tuple[str, str]:
    """(prefix, token) of a fresh random token."""
    prefix = secrets.token_hex(4)
    return prefix, f"tf_{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str | None:
    """The prefix of a well-formed token; None for anything else."""
    m = TOKEN.fullmatch(token)
    return m["prefix"] if m else None


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches only this machine ('localhost', 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(mode: str, host: str) -> bool:
    """Whether an API bound to `host` demands keys. `off` is refused beyond loopback."""
    if mode == "off" and not is_loopback(host):
        raise InvalidInput(f"TRTFARM_AUTH=off is allowed only on a loopback address, not {host!r}: "
                           "create a key with `trtfarm keys create --name admin --scope admin`")
    return mode == "required" or (mode == "auto" and not is_loopback(host))
