"""Alembic environment: the URL comes from the same settings the farm uses (or the caller's config)."""

from alembic import context

from registry.db.tables import Base

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from registry.settings import get_settings

    return get_settings().resolved_database_url()


def run_migrations_online() -> None:
    from registry.db.session import make_engine

    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()  # leave no pooled connection behind (it would block CREATE DATABASE … TEMPLATE)


def _run(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
