"""Retention of the build inputs users upload: INT8 calibration data sets and caches, TensorRT plugin libraries
(`trtfarm gc`, DELETE /v1/calibration/{digest}, DELETE /v1/plugins/{digest}; docs/design.md "Retention").

An input is in use while a build names it (`builds.calibration`, `builds.plugins`, whatever the build's status:
an engine's build is what a rollout or a matrix copies, and a failed build may be submitted again). A cache a
build made from a data set (a `calibration_caches` row; its blob also has a `calibrations` row) lives as long
as that data set: it is what the next build of the same data set reuses. gc removes an input no build names
that was uploaded before `since` (a fresh upload awaits its submit); DELETE removes one at once, refused
while a build names it. Either way the rows go in one transaction that checks again under the row lock, then
each blob no row refers to any more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, Calibration, CalibrationCache, Plugin
from registry.errors import CalibrationNotFound, Conflict, PluginNotFound

log = logging.getLogger("trtfarm.retention")
Drop = Callable[[str], list[str]]  # delete a blob unless a row refers to it: the digests deleted


@dataclass
class InputRemoved:
    """An uploaded build input gc removes (or, in a dry run, would remove)."""

    kind: str  # calibration data, calibration cache (uploaded or made by a build), plugin
    digest: str
    size: int
    name: str | None
    created_at: datetime


def unused(db: Database, since: datetime) -> list[InputRemoved]:
    """The inputs gc would remove: uploaded before `since`, named by no build, no data set's made cache."""
    with db.read_session() as s:
        named = _named(s)
        made = set(s.scalars(select(CalibrationCache.cache_digest)))
        found = [InputRemoved(f"calibration {row.kind}", row.digest, row.size, row.name, row.created_at)
                 for row in s.scalars(select(Calibration).where(Calibration.created_at < since))
                 if row.digest not in named and row.digest not in made]
        found += [InputRemoved("plugin", row.digest, row.size, row.name, row.created_at)
                  for row in s.scalars(select(Plugin).where(Plugin.created_at < since)) if row.digest not in named]
    return sorted(found, key=lambda item: item.created_at)


def collect(db: Database, drop: Drop, since: datetime, dry_run: bool) -> tuple[list[InputRemoved], int]:
    """gc's part: the inputs removed (a dry run: that would be) and how many blobs went with them."""
    candidates = unused(db, since)
    if dry_run:
        return candidates, 0
    removed, blobs = [], 0
    for item in candidates:
        digests = _remove(db, item.digest, item.kind == "plugin", refuse=False)
        if digests is None:
            continue  # named by a build meanwhile
        removed.append(item)
        blobs += sum(len(drop(d)) for d in digests)
        log.info("gc removed %s=%s size=%d name=%s created=%s", item.kind.replace(" ", "_"), item.digest, item.size,
                 item.name, item.created_at.isoformat())
    return removed, blobs


def delete_input(db: Database, drop: Drop, digest: str, plugin: bool) -> dict:
    """DELETE of one calibration input or plugin library: 404 unknown, 409 while a build names it."""
    digests = _remove(db, digest, plugin, refuse=True)
    assert digests is not None
    blobs = sum(len(drop(d)) for d in digests)
    log.info("%s removed digest=%s blobs=%d", "plugin" if plugin else "calibration", digest, blobs)
    return {"digest": digest, "blobs_removed": blobs}


def _remove(db: Database, digest: str, plugin: bool, refuse: bool) -> list[str] | None:
    """Delete the input's rows (a data set's made caches with it): the digests whose blobs may go now; None
    when a build names it and not `refuse` (else Conflict)."""
    table = Plugin if plugin else Calibration
    with db.session() as s:
        row = s.get(table, digest, with_for_update=True)
        if row is None:
            missing = PluginNotFound if plugin else CalibrationNotFound
            raise missing(f"no {'plugin library' if plugin else 'calibration input'} {digest}")
        users = _users(s, digest, plugin)
        if users:
            if not refuse:
                return None
            raise Conflict(f"{digest} is named by {len(users)} build(s) ({', '.join(users[:5])}): remove their engines "
                           "first (trtfarm gc, or delete the model), then this", details={"builds": users[:100]})
        digests = [digest]
        if not plugin:
            made = s.execute(select(CalibrationCache.cache_digest).where(CalibrationCache.data_digest == digest))
            digests += [d for (d,) in made if not _users(s, d, plugin=False)]  # one a build names stays
            s.execute(delete(CalibrationCache).where(or_(CalibrationCache.data_digest == digest,
                                                         CalibrationCache.cache_digest == digest)))
            s.execute(delete(Calibration).where(Calibration.digest.in_(digests[1:])))
        s.delete(row)
    return digests


def _users(s: Session, digest: str, plugin: bool) -> list[str]:
    if not plugin:
        return list(s.scalars(select(Build.id).where(Build.calibration == digest).limit(100)))
    return [build for build, plugins in s.execute(select(Build.id, Build.plugins).where(_has_plugins()))
            if digest in (plugins or [])][:100]


def _named(s: Session) -> set[str]:
    """Every calibration digest and plugin digest some build names."""
    named = set(s.scalars(select(Build.calibration).where(Build.calibration.is_not(None)).distinct()))
    for (plugins,) in s.execute(select(Build.plugins).where(_has_plugins())):
        named.update(plugins or [])
    return named


def _has_plugins():  # noqa: ANN202 - a SQL condition: a non-empty JSON list (its text is longer than "[]")
    return func.length(cast(Build.plugins, String)) > 2
