"""Ids as people type them: a build, engine or model id, or any unique prefix of it of at least 8 hex
characters (the CLI's tables show 12; a model's `sha256:` may be left out). An ambiguous prefix is an error
that lists the matches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import InstrumentedAttribute

from registry.errors import InvalidInput

FULL, SHORTEST = 32, 8


MODEL_PREFIX = "sha256:"


def full_model_id(session: Session, column: InstrumentedAttribute, text: str) -> str | None:
    """A model id from itself or a unique prefix of its hex part (`sha256:` optional), as `full_id`."""
    text = text if text.startswith(MODEL_PREFIX) else MODEL_PREFIX + text
    return full_id(session, column, text, "model", full=len(MODEL_PREFIX) + 64, shortest=len(MODEL_PREFIX) + SHORTEST)


def full_id(session: Session, column: InstrumentedAttribute, text: str, what: str, full: int = FULL,
            shortest: int = SHORTEST) -> str | None:
    """The one id of `column` that starts with `text` (itself when whole); None when none does."""
    if len(text) >= full or len(text) < shortest:
        return text
    found = list(session.scalars(select(column).where(column.startswith(text, autoescape=True)).limit(6)))
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise InvalidInput(f"{what} id prefix {text!r} is ambiguous: it starts {shown}; give more characters",
                           details={"matches": found[:5]})
    return found[0] if found else None
