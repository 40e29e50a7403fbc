"""Alembic on real PostgreSQL: upgrade to head matches registry.db.tables exactly; downgrade undoes it."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from registry.db.migrate import alembic_config, upgrade
from registry.db.tables import Base
from tests.integration.conftest import Postgres, _admin, sqlalchemy_url

TABLES = {"models", "model_files", "builds", "engines", "timing_caches", "workers", "outbox", "api_keys"}


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
