"""`trtfarm plugins upload FILE` / `list` / `delete DIGEST`: TensorRT plugin libraries, added to `registry.cli`'s
app by `register` (kept apart to keep registry/cli.py short). A build names them with `trtfarm submit --plugin`."""

from __future__ import annotations

from pathlib import Path

import typer

PLUGIN_HELP = ("a TensorRT plugin library (.so; uploaded unless the farm has it, which needs an admin key) or the "
               "sha256:… digest of an uploaded one; the farm's TRTFARM_ALLOWED_PLUGINS must allow it (repeatable)")
plugins_app = typer.Typer(help="TensorRT plugin libraries: an admin uploads them; a build may load one only where "
                               "TRTFARM_ALLOWED_PLUGINS names its digest.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `trtfarm plugins` to the CLI (`registry.cli` calls it on its app)."""
    app.add_typer(plugins_app, name="plugins")


@plugins_app.command("upload")
def upload(file: Path = typer.Argument(..., help="the plugin library (an ELF shared object, .so)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Upload a plugin library (admin key). Prints its digest, what `trtfarm submit --plugin` and
    TRTFARM_ALLOWED_PLUGINS name."""
    from registry.cli import _farm, _print_json, err, out

    info = _farm().upload_plugin(file)
    if as_json:
        return _print_json(info.model_dump(mode="json"))
    out.print(info.digest, markup=False, highlight=False)
    if not info.allowed:
        err.print(f"note: the farm does not allow {info.name or 'it'} yet: builds may name it once "
                  f"TRTFARM_ALLOWED_PLUGINS (on the API and on the workers that load it) includes {info.digest}",
                  markup=False, highlight=False)


@plugins_app.command("list")
def list_plugins(as_json: bool = typer.Option(False, "--json")) -> None:
    """The uploaded plugin libraries and whether the farm's TRTFARM_ALLOWED_PLUGINS allows each."""
    from registry.cli import _farm, _print_json, out

    found = _farm().plugins()
    if as_json:
        return _print_json(found.model_dump(mode="json"))
    if not found.items:
        out.print("no plugin libraries uploaded (an admin uploads one: trtfarm plugins upload FILE)", markup=False)
    for p in found.items:  # whole digests, one per line: what TRTFARM_ALLOWED_PLUGINS takes
        out.print(f"{p.digest}  {'allowed' if p.allowed else 'not allowed'}  {p.name or '-'}  {p.size} bytes  "
                  f"{p.machine}  uploaded {p.uploaded_at:%Y-%m-%d %H:%M}", markup=False, highlight=False)
    uploaded = {p.digest for p in found.items}
    for digest in found.allow_list:
        if digest not in uploaded:
            out.print(f"allowed but not uploaded: {digest}", markup=False, highlight=False)


@plugins_app.command("delete")
def delete(digest: str = typer.Argument(..., help="the library's sha256:… digest")) -> None:
    """Remove an uploaded plugin library (admin key); refused while a build names it (gc its engines first)."""
    from registry.cli import _farm, out

    done = _farm().delete_plugin(digest)
    out.print(f"removed {done.digest} ({done.blobs_removed} blob(s) deleted)", markup=False, highlight=False)
