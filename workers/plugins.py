"""TensorRT plugin libraries around a build (docs/design.md "Security model").

A plugin library is code this worker would run, so the worker decides for itself: it loads a library only
when ITS OWN TRTFARM_ALLOWED_PLUGINS names the digest, whatever the API allowed at submit (a build naming
another fails with plugin_not_allowed, nothing downloaded). An allowed library is downloaded into the
build's folder (the blob store verifies it), hashed again here before any process may load it, and handed to
the runner as `--plugin PATH` on the build, and on the validation runs and the benchmark too: the engine
needs the library to deserialize. A runner command with `--plugin` runs in a fresh process
(workers/warm.py), so no library stays loaded for a later build. The engine's metadata lists the digests
(`plugins`): a runtime loads the same libraries before it deserializes the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.digests import digest_of_file
from registry.errors import BlobError, DigestMismatch, InvalidInput, PluginNotAllowed
from registry.services.attempts import BuildJob
from workers.context import WorkerContext
from workers.launcher import BuildLog

SETTING = "TRTFARM_ALLOWED_PLUGINS"


@dataclass(frozen=True)
class PluginInputs:
    digests: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()

    @property
    def args(self) -> list[str]:
        """`--plugin PATH` per library, for every runner command of the build (build, run, bench)."""
        return [arg for path in self.paths for arg in ("--plugin", str(path))]


def before_build(ctx: WorkerContext, job: BuildJob, tmp: Path, log: BuildLog) -> PluginInputs:
    """Check the build's plugin libraries against this worker's allow-list, then download and verify them."""
    if not job.plugins:
        return PluginInputs()
    if job.toolchain != "tensorrt":
        raise InvalidInput(f"plugins are TensorRT plugin libraries; {job.toolchain} builds load none")
    check_allowed(job.plugins, ctx.settings.allowed_plugin_digests(), ctx.name)
    folder = tmp / "plugins"
    folder.mkdir(exist_ok=True)
    paths = tuple(fetch(ctx, digest, folder, log) for digest in job.plugins)
    return PluginInputs(tuple(job.plugins), paths)


def check_allowed(digests: tuple[str, ...] | list[str], allowed: frozenset[str], worker: str) -> None:
    """PluginNotAllowed unless this worker's allow-list names every digest (nothing is downloaded before)."""
    refused = [d for d in digests if d not in allowed]
    if refused:
        raise PluginNotAllowed(
            f"worker {worker} does not load plugin library {', '.join(refused)}: its {SETTING} does not name "
            f"{'that digest' if len(refused) == 1 else 'those digests'} (a worker loads only the libraries its own "
            f"{SETTING} allows, whatever the API allowed). An operator who trusts the library adds the digest to "
            f"{SETTING} on this worker", details={"plugins": refused, "setting": SETTING, "worker": worker})


def fetch(ctx: WorkerContext, digest: str, folder: Path, log: BuildLog) -> Path:
    """The library at folder/lib<hex>.so, its bytes hashed again: the path a runner may load."""
    dest = folder / f"lib{digest.removeprefix('sha256:')[:16]}.so"
    try:
        ctx.blobs.get_to_file(digest, dest)
    except BlobError as exc:
        if isinstance(exc, DigestMismatch):
            raise
        raise InvalidInput(f"plugin library {digest} cannot be read from the blob store ({exc.code}: {exc}); an "
                           "admin uploads it again (trtfarm plugins upload FILE)") from None
    found, size = digest_of_file(dest)
    if found != digest:
        dest.unlink(missing_ok=True)
        raise DigestMismatch(f"plugin library {digest}: the downloaded bytes hash to {found}; not loaded",
                             details={"expected": digest, "got": found})
    log.write(f"plugin library {digest}: {size} bytes, digest verified, allowed by {SETTING}: loaded with --plugin")
    return dest
