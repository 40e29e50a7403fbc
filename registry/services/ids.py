"""Ids as people type them: a build or engine id, or any unique prefix of it of at least 8 hex characters
(the CLI's tables show 12). An ambiguous prefix is an error that lists the matches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import InstrumentedAttribute

from registry.errors import InvalidInput

FULL, SHORTEST = 32, 8


def full_id(session: Session, column: InstrumentedAttribute, text: str, what: str) -> str | None:
    """The one id of `column` that starts with `text` (itself when whole); None when none does."""
    if len(text) >= FULL or len(text) < SHORTEST:
        return text
    found = list(session.scalars(select(column).where(column.startswith(text, autoescape=True)).limit(6)))
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise InvalidInput(f"{what} id prefix {text!r} is ambiguous: it starts {shown}; give more characters",
                           details={"matches": found[:5]})
    return found[0] if found else None
