"""The API's server commands of `trtfarm` (registered through the `trtfarm.commands` entry points):
`api` and `db upgrade`."""

from __future__ import annotations

import typer
from rich.console import Console

from registry.settings import DEFAULT_PORT, Settings

out = Console(soft_wrap=True)
db = typer.Typer(help="Database commands.", no_args_is_help=True)


def api(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(DEFAULT_PORT),
        dispatcher: bool = typer.Option(True, help="also relay the outbox to the broker and run the reaper")) -> None:
    """Run the API server (production: PostgreSQL, Redis, S3 from TRTFARM_* settings)."""
    from api.serve import run_api

    settings = Settings()
    stop = None
    if dispatcher:
        from workers.dispatcher import start_dispatcher_thread

        stop = start_dispatcher_thread(settings)
    try:
        run_api(settings, host, port)
    finally:
        if stop is not None:
            stop.set()


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database (TRTFARM_DATABASE_URL) to the newest schema."""
    from registry.db.migrate import upgrade

    url = Settings().resolved_database_url()
    upgrade(url)
    out.print(f"database at head: {url}")
