"""registry.auth (tokens, scopes, where keys are required) and registry.services.keys on a real SQLite file."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from registry import auth
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.errors import Conflict, InvalidInput, NotFound, Unauthorized
from registry.services import keys


@pytest.mark.parametrize(("given", "held"), [
    (["read"], {"read"}),
    (["submit"], {"read", "submit"}),
    (["admin"], {"read", "submit", "admin"}),
    (["read", "admin"], {"read", "submit", "admin"}),
])
def test_scopes_nest(given, held):
    assert auth.implied(given) == held


@pytest.mark.parametrize("bad", [[], ["write"], ["read", "root"]])
def test_unknown_or_no_scopes_are_refused(bad):
    with pytest.raises(InvalidInput, match="read, submit, admin"):
        auth.check_scopes(bad)


def test_tokens_are_random_prefixed_and_parse_back():
    (p1, t1), (_, t2) = auth.new_token(), auth.new_token()
    assert t1 != t2 and t1.startswith(f"tf_{p1}_") and auth.token_prefix(t1) == p1
    assert auth.token_prefix("tf_zzzzzzzz_" + "a" * 43) is None and auth.token_prefix("Bearer x") is None
    assert auth.same_hash(auth.token_hash(t1), auth.token_hash(t1)) and not auth.same_hash(auth.token_hash(t1),
                                                                                            auth.token_hash(t2))


@pytest.mark.parametrize(("mode", "host", "required"), [
    ("auto", "127.0.0.1", False), ("auto", "localhost", False), ("auto", "::1", False), ("auto", "127.0.0.2", False),
    ("auto", "0.0.0.0", True), ("auto", "10.1.2.3", True), ("auto", "farm.internal", True), ("auto", "::", True),
    ("required", "127.0.0.1", True), ("off", "127.0.0.1", False),
])
def test_keys_are_required_beyond_loopback(mode, host, required):
    assert auth.auth_required(mode, host) is required


def test_auth_off_is_refused_beyond_loopback():
    with pytest.raises(InvalidInput, match="only on a loopback address"):
        auth.auth_required("off", "0.0.0.0")


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    upgrade(url)
    return Database(url)


def test_create_authenticate_list_revoke(db):
    created = keys.create_key(db, "ci-builder", ["submit", "read"])
    assert created.scopes == ["read", "submit"] and created.token.startswith(f"tf_{created.prefix}_")
    who = keys.authenticate(db, created.token)
    assert (who.key_id, who.name, who.scopes) == (created.id, "ci-builder", {"read", "submit"})
    listed = keys.list_keys(db)
    assert [k.name for k in listed] == ["ci-builder"] and "token" not in listed[0].model_dump()
    with db.session() as s:  # only the hash is stored
        stored = str(s.execute(text("SELECT * FROM api_keys")).all())
    assert created.token not in stored and auth.token_hash(created.token) in stored
    revoked = keys.revoke_key(db, "ci-builder")
    assert revoked.revoked_at is not None and keys.revoke_key(db, "ci-builder").revoked_at == revoked.revoked_at
    with pytest.raises(Unauthorized, match="revoked"):
        keys.authenticate(db, created.token)


def test_bad_tokens_and_names(db):
    created = keys.create_key(db, "reader", ["read"])
    forged = created.token[:-4] + ("AAAA" if not created.token.endswith("AAAA") else "BBBB")
    for token, why in ((None, "needs an API key"), ("", "needs an API key"), ("secret", "not a trtfarm API key"),
                       (forged, "unknown API key")):
        with pytest.raises(Unauthorized, match=why):
            keys.authenticate(db, token)
    with pytest.raises(Conflict, match="exists already"):
        keys.create_key(db, "reader", ["admin"])
    with pytest.raises(InvalidInput, match="key name"):
        keys.create_key(db, "no spaces please", ["read"])
    with pytest.raises(NotFound, match="no API key named"):
        keys.revoke_key(db, "nobody")
