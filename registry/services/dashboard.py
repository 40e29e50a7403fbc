"""What the web dashboard (api/ui) shows beyond the API's own answers: queues with their depth and oldest
wait, the models the farm knows, and one model's engine matrix (spec variants × toolchain version and device).
Read-only; read from SQL like everything else, so every API replica shows the same."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from registry.db.session import Database
from registry.db.tables import Build, Engine, Model
from registry.fleetclient import fleet_targets
from registry.services import fleet, models
from registry.services.metrics import QueueState, queue_states

MEASUREMENT = ("bench",)  # spec fields that change the measurement, not the engine: not a matrix row of their own


@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    created_at: datetime
    builds: int


@dataclass
class Cell:
    build_id: str | None = None
    status: str | None = None
    engine_id: str | None = None
    latency_p50_ms: float | None = None
    validation_passed: bool | None = None


@dataclass
class Matrix:
    model: Any  # ModelInfo
    columns: list[str]  # full targets: kind==version@device
    rows: list[dict[str, Any]]  # the spec variants
    cells: dict[tuple[int, str], Cell] = field(default_factory=dict)  # (row index, target) -> the newest build

    def cell(self, row: int, target: str) -> Cell | None:
        return self.cells.get((row, target))

    def label(self, row: int) -> str:
        """What sets a row apart: its values of the fields that differ between the rows (compact JSON)."""
        fields = sorted({k for r in self.rows for k in r if any(r.get(k) != o.get(k) for o in self.rows)})
        if not fields:
            return "the spec"
        return json.dumps({k: self.rows[row].get(k) for k in fields}, sort_keys=True, separators=(",", ":"))


def queue_infos(db: Database, live_s: int) -> list[tuple[str, QueueState]]:
    """Every queue that has queued or running builds or a live worker serving it, by name (the same
    computation as the metrics')."""
    return sorted(db.read(lambda s: queue_states(s, live_s)).items())


def model_rows(db: Database, limit: int = 200) -> list[ModelRow]:
    """The farm's models, newest first, with how many builds each has."""
    with db.session() as s:
        counts = dict(s.execute(select(Build.model_id, func.count()).group_by(Build.model_id)).all())
        rows = s.scalars(select(Model).order_by(Model.created_at.desc()).limit(limit))
        return [ModelRow(m.id, m.name, m.created_at, int(counts.get(m.id, 0))) for m in rows]


def spec_variant(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in MEASUREMENT}


def engine_matrix(db: Database, model_id: str, live_s: int) -> Matrix:
    """One model's engines: a row per spec variant it was built with, a column per target it was built for or
    the live fleet serves; a cell holds the newest build of that (spec, target) and its engine."""
    info = models.read(db, model_id)
    fleet_now = fleet.worker_infos(db, live_s)
    with db.session() as s:
        builds = list(s.scalars(select(Build).where(Build.model_id == info.id).order_by(Build.created_at)))
        engines = {e.build_id: e for e in s.scalars(select(Engine).where(Engine.model_id == info.id))}
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        matrix = Matrix(info, sorted({b.target for b in builds} | set(fleet_targets(fleet_now))), rows)
        for b in builds:  # oldest first: a newer build of the same cell replaces an older one
            variant = spec_variant(b.spec or {})
            key = json.dumps(variant, sort_keys=True)
            if key not in keys:
                keys.append(key)
                rows.append(variant)
            e = engines.get(b.id)
            matrix.cells[(keys.index(key), b.target)] = Cell(
                b.id, str(b.status), e.id if e else None, e.latency_p50_ms if e else None,
                e.validation_passed if e else None)
    if not rows:
        rows.append({})
    return matrix
