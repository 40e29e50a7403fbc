"""Alembic on real PostgreSQL: upgrade to head matches registry.db.tables exactly; downgrade undoes it; 0006's
backfill counts existing engines; 0010 computes their profile widths."""

from __future__ import annotations

import math
import random
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from registry.blobs.local import LocalBlobStore
from registry.db.migrate import alembic_config, upgrade
from registry.db.session import Database
from registry.db.tables import Base, Build, Engine
from registry.services.models import register_model
from tests import fleets
from tests.integration.conftest import Postgres, _admin, sqlalchemy_url
from tests.models import convnet

TABLES = {"models", "model_files", "builds", "engines", "engine_signatures", "timing_caches", "workers", "outbox",
          "api_keys"}


@pytest.fixture
def empty_database(postgres: Postgres) -> str:
    name = f"{postgres.template}_mig_{uuid.uuid4().hex[:6]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    postgres.created.append(name)
    url = sqlalchemy_url(name)
    yield url
    postgres.drop(url)


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_leaves_no_diff_against_the_tables(empty_database: str) -> None:
    upgrade(empty_database)

    assert _diff(empty_database) == []
    engine = create_engine(empty_database)
    try:
        insp = inspect(engine)
        assert set(insp.get_table_names()) >= TABLES
        assert any(u["column_names"] == ["key"] for u in insp.get_unique_constraints("builds")) or any(
            i["unique"] and i["column_names"] == ["key"] for i in insp.get_indexes("builds"))
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is not None
    finally:
        engine.dispose()

    upgrade(empty_database)  # idempotent at head


def test_downgrade_to_base_and_back(empty_database: str) -> None:
    from alembic import command

    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    engine = create_engine(empty_database)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_database)
    assert _diff(empty_database) == []


def test_0006_fills_the_signature_summary_from_existing_engines(empty_database: str, tmp_path: Path) -> None:
    """Engines written before 0006 are counted by its backfill as the service counts new ones."""
    model_id = fleets.model_at_revision(empty_database, "0005", tmp_path)
    db = Database(empty_database)
    try:
        rows = fleets.engine_rows(random.Random(11), model_id, 300)
        rows[0]["sku"] = rows[0]["cc"] = None
        builds, engines = (sa.Table(name, sa.MetaData(), autoload_with=db.engine) for name in ("builds", "engines"))
        with db.session() as s:  # the tables as 0005 has them (later revisions add columns the ORM knows)
            s.execute(sa.insert(builds), [_columns_of(builds, r["build"]) for r in rows])
            s.execute(sa.insert(engines), [_columns_of(engines, {k: v for k, v in r.items() if k != "build"})
                                           for r in rows])
        upgrade(empty_database)
        assert fleets.summary_in(db) == fleets.summary(rows)
    finally:
        db.engine.dispose()


def test_0010_computes_profile_widths_and_the_widest_of_each_signature(empty_database: str, tmp_path: Path) -> None:
    """Engines written before 0010 get the width the service computes from their specs (ONNX Runtime without
    profiles: any shape; overlapping profiles counted once), and the summary each signature's widest; a
    downgrade gives 0006's summary back."""
    from alembic import command

    from registry.services.shapes import ANY_SHAPE_WIDTH, profile_width
    from registry.spec import parse_spec

    upgrade(empty_database, "0009")
    db = Database(empty_database)
    try:
        convnet(tmp_path / "upload" / "m.onnx")
        model, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), tmp_path / "upload", "m.onnx")
        rows = fleets.engine_rows(random.Random(12), model.id, 400)
        n = [1, 3, 16, 16]
        rows[0]["spec"] = {**rows[0]["spec"], "profiles": [  # batches 1..8 and 4..12 overlap: 12 shapes
            {"input": {"min": n, "opt": n, "max": [8, 3, 16, 16]}},
            {"input": {"min": [4, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [12, 3, 16, 16]}}]}
        rows[0]["profile_width"] = profile_width(parse_spec(rows[0]["spec"]), rows[0]["toolchain"])
        assert rows[0]["profile_width"] == round(math.log2(12), 9)
        assert ANY_SHAPE_WIDTH in {r["profile_width"] for r in rows}  # ONNX Runtime engines without profiles
        builds, engines = (sa.Table(name, sa.MetaData(), autoload_with=db.engine) for name in ("builds", "engines"))
        with db.session() as s:
            s.execute(sa.insert(builds), [_columns_of(builds, r["build"]) for r in rows])
            s.execute(sa.insert(engines), [_columns_of(engines, {k: v for k, v in r.items() if k != "build"})
                                           for r in rows])
        upgrade(empty_database)
        with db.session() as s:
            widths = dict(s.execute(sa.select(Engine.id, Engine.profile_width)).all())
        assert widths == {r["id"]: r["profile_width"] for r in rows}
        assert fleets.summary_in(db) == fleets.summary(rows)
        command.downgrade(alembic_config(empty_database), "0009")
        with db.engine.connect() as conn:
            old = {tuple(r[:11]): tuple(r[11:]) for r in conn.execute(sa.text(
                "SELECT model_id, spec_family, toolchain, version, device, sku, cc, hardware_compatibility, "
                "version_compatible, exclude_lean_runtime, validation_failed, newest, engines, example "
                "FROM engine_signatures"))}
        assert old == {key: value[:3] for key, value in fleets.summary(rows).items()}
    finally:
        db.engine.dispose()


def _columns_of(table: sa.Table, row: dict) -> dict:
    """The row's values for the columns `table` has, with the ORM's defaults for those the row leaves out."""
    orm = {"builds": Build, "engines": Engine}[table.name].__table__
    values = {}
    for column in table.columns:
        if column.name in row:
            values[column.name] = row[column.name]
        elif (default := orm.columns[column.name].default) is not None:
            values[column.name] = default.arg({}) if callable(default.arg) else default.arg
    return values
