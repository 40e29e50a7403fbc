"""The API's server commands of `trtfarm` (registered through the `trtfarm.commands` entry points):
`api`, `db upgrade` and `keys create|list|revoke`."""

from __future__ import annotations

import typer
from rich.console import Console

from registry import auth
from registry.settings import DEFAULT_PORT, Settings

out = Console(soft_wrap=True)
db = typer.Typer(help="Database commands.", no_args_is_help=True)
keys = typer.Typer(help="API keys, straight in the farm's database (TRTFARM_DATABASE_URL or TRTFARM_HOME): "
                        "also for the first admin key of a fresh install.", no_args_is_help=True)


def api(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(DEFAULT_PORT),
        dispatcher: bool = typer.Option(True, help="also relay the outbox to the broker and run the reaper"),
        workers: int = typer.Option(1, min=1, help="server processes (each with its own database pool and read "
                                                   "cache; the dispatcher runs once, in the parent)")) -> None:
    """Run the API server (production: PostgreSQL, Redis, S3 from TRTFARM_* settings)."""
    from api.serve import run_api

    settings = Settings()
    if auth.auth_required(settings.auth, host):  # (and refuses TRTFARM_AUTH=off beyond loopback)
        out.print(f"trtfarm API on {host}:{port}: API keys required (Authorization: Bearer …); "
                  "`trtfarm keys create --name NAME --scope admin` makes one", markup=False)
    else:
        out.print(f"trtfarm API on {host}:{port}: open mode (loopback, no API keys)", markup=False)
    stop = None
    if dispatcher:
        from workers.dispatcher import start_dispatcher_thread

        stop = start_dispatcher_thread(settings)
    try:
        run_api(settings, host, port, workers=workers)
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


def _keys_db():  # noqa: ANN202
    from registry.db.migrate import upgrade
    from registry.db.session import Database

    url = Settings().resolved_database_url()
    upgrade(url)  # a fresh install: the first admin key comes before anything else
    return Database(url)


@keys.command("create")
def keys_create(name: str = typer.Option(..., "--name", help="unique, e.g. ci-builder"),
                scope: list[str] = typer.Option(..., "--scope", help="read, submit or admin (repeatable; "
                                                "admin ⊃ submit ⊃ read)")) -> None:
    """Create a key and print its token once (the farm keeps only a hash)."""
    from registry.services import keys as key_service

    created = key_service.create_key(_keys_db(), name, scope)
    out.print(f"created API key {created.name!r} with scopes {', '.join(created.scopes)}; its token, shown only now:",
              markup=False)
    print(created.token)


@keys.command("list")
def keys_list() -> None:
    """List keys (names, scopes, token prefixes; never tokens)."""
    from rich.table import Table

    from registry.services import keys as key_service

    table = Table("name", "scopes", "token", "created", "revoked")
    for k in key_service.list_keys(_keys_db()):
        table.add_row(k.name, ", ".join(k.scopes), f"tf_{k.prefix}_…", f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    out.print(table)


@keys.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="the key's name")) -> None:
    """Revoke a key: its token stops working at once."""
    from registry.services import keys as key_service

    revoked = key_service.revoke_key(_keys_db(), name)
    out.print(f"revoked API key {revoked.name!r} (tf_{revoked.prefix}_…)", markup=False)
