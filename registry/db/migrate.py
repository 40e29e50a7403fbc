"""Run Alembic migrations programmatically (`trtfarm db upgrade`, `trtfarm up`, tests)."""

from __future__ import annotations

from pathlib import Path


def alembic_config(url: str):  # noqa: ANN201
    from alembic.config import Config

    import migrations

    folder = Path(migrations.__file__).resolve().parent
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
