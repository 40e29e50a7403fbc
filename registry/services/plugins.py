"""TensorRT plugin libraries (docs/design.md "Security model"): uploads, the list, and the checks at submit.

A plugin library is executable code that a worker loads into its TensorRT process, so:
- `register`: only an admin key uploads one (the API's route says so); the file must be an ELF shared object
  (`inspect_library`), at most TRTFARM_MAX_PLUGIN_MIB; it is stored as a content-addressed blob (verified on
  write) and recorded by digest.
- `check_submit`: a build may name a library only when it was uploaded (PluginNotFound) and the API's
  TRTFARM_ALLOWED_PLUGINS names its digest (PluginNotAllowed); TensorRT builds only. Each worker checks its
  own allow-list again before it loads anything (workers/plugins.py). The digests are part of the build key.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.db.tables import Plugin
from registry.errors import InvalidPlugin, InvalidSpec, PluginNotAllowed, PluginNotFound, TooLarge
from registry.schemas import PluginInfo, PluginList

ELF_MAGIC = b"\x7fELF"
ET_DYN = 3  # e_type of a shared object
MACHINES = {3: "x86", 20: "ppc", 21: "ppc64", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv"}
SETTING = "TRTFARM_ALLOWED_PLUGINS"
UPLOAD_HINT = ("an admin uploads it with `trtfarm plugins upload FILE` (POST /v1/plugins); "
               "`trtfarm plugins list` shows the uploaded ones")


# ------------------------------------------------------------------------------------------------ uploads


def inspect_library(path: Path, size: int, max_bytes: int) -> str:
    """The architecture of an ELF shared object (its header's e_machine); InvalidPlugin for anything else."""
    if size > max_bytes:
        raise TooLarge(f"the plugin library is {size} bytes, over the {max_bytes >> 20} MiB limit "
                       "(TRTFARM_MAX_PLUGIN_MIB)")
    with open(path, "rb") as f:
        header = f.read(20)
    if not header.startswith(ELF_MAGIC):
        shown = header[:4].hex(" ") or "nothing"
        raise InvalidPlugin(f"a plugin library is an ELF shared object (a .so starting with 7f 45 4c 46); this file "
                            f"starts with {shown}. Upload the compiled library (e.g. libmyplugin.so), not its "
                            "source or an archive")
    if len(header) < 20 or header[4] not in (1, 2) or header[5] not in (1, 2):
        raise InvalidPlugin("the file starts like an ELF file but its header is cut short or malformed")
    if header[4] != 2:
        raise InvalidPlugin("a 32-bit ELF library cannot load into TensorRT's 64-bit process; build it for 64 bits")
    order = "little" if header[5] == 1 else "big"
    kind, machine = int.from_bytes(header[16:18], order), int.from_bytes(header[18:20], order)
    if kind != ET_DYN:
        what = {1: "a relocatable object (.o)", 2: "an executable", 4: "a core dump"}.get(kind, f"ELF type {kind}")
        raise InvalidPlugin(f"the file is {what}, not a shared object: link the plugin with -shared")
    return MACHINES.get(machine, f"elf-machine-{machine}")


def register(db: Database, blobs: BlobStore, path: Path, digest: str, size: int, *, name: str | None = None,
             uploaded_by: str | None = None, max_bytes: int,
             allowed: Collection[str] = ()) -> tuple[PluginInfo, bool]:
    """Inspect, store and record an uploaded library (hashed to `digest` while it arrived; the blob store checks
    it again). Returns (info, created); a known digest is answered from its row (its blob restored if missing)."""
    machine = inspect_library(path, size, max_bytes)
    blobs.put_file(path, expected_digest=digest)
    values = dict(digest=digest, name=name, size=size, machine=machine, uploaded_by=uploaded_by)
    with db.session() as s:
        dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(Plugin).values(**values).on_conflict_do_nothing(index_elements=["digest"])
        created = bool(s.execute(statement).rowcount)
        return info_of(s.get(Plugin, digest), allowed), created


def read(db: Database, digest: str, allowed: Collection[str] = ()) -> PluginInfo:
    with db.session() as s:
        row = s.get(Plugin, digest)
        if row is None:
            raise PluginNotFound(f"no plugin library {digest}; {UPLOAD_HINT}")
        return info_of(row, allowed)


def list_plugins(db: Database, allowed: Collection[str] = ()) -> PluginList:
    """Every uploaded library, newest first, with whether the allow-list names it; and the allow-list."""
    with db.session() as s:
        rows = s.scalars(select(Plugin).order_by(Plugin.created_at.desc(), Plugin.digest))
        return PluginList(items=[info_of(r, allowed) for r in rows], allow_list=sorted(allowed))


def info_of(row: Plugin, allowed: Collection[str] = ()) -> PluginInfo:
    return PluginInfo(digest=row.digest, name=row.name, size=row.size, machine=row.machine,
                      uploaded_at=row.created_at, allowed=row.digest in allowed)


# ----------------------------------------------------------------------------------------------- submit


def check_submit(session: Session, digests: Sequence[str], toolchain: str, allowed: Collection[str]) -> None:
    """Refuse a build naming a library that was never uploaded, or that the allow-list lacks (module doc)."""
    if not digests:
        return
    known: dict[str, Any] = {digest: name for digest, name in session.execute(
        select(Plugin.digest, Plugin.name).where(Plugin.digest.in_(list(digests))))}
    for digest in digests:
        if digest not in known:
            raise PluginNotFound(f"plugin library {digest} was never uploaded to this farm; {UPLOAD_HINT}",
                                 details={"plugin": digest})
    if toolchain != "tensorrt":
        raise InvalidSpec(f"plugins are TensorRT plugin libraries; {toolchain} builds load none (drop the plugins, "
                          "or target tensorrt)")
    for digest in digests:
        if digest not in allowed:
            shown = f"{digest} ({known[digest]})" if known[digest] else digest
            raise PluginNotAllowed(
                f"plugin library {shown} is not allowed on this farm: {SETTING} does not name its digest. A plugin "
                f"library is code the workers run; an operator who trusts it adds the digest to {SETTING} on the "
                "API and on the workers that should load it", details={"plugin": digest, "setting": SETTING})
