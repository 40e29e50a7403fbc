"""The SDK's TensorRT plugin libraries (mixed into `registry.client.Farm`): list them, upload one (an admin key;
HEAD first, by its sha256, then streamed from disk), and turn a build request's plugins, digests or library
files, into digests. Standard library, httpx and the schemas only, like the rest of the SDK.

An engine built with plugins needs the same libraries wherever it is deserialized: `EngineInfo.plugins` lists
their digests (Farm.fetch warns with PluginLibrariesNeeded); load each with
`ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)` after `trt.init_libnvinfer_plugins(logger, "")` and before
deserializing (docs/design.md "Security model")."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from registry import rawupload
from registry.digests import is_digest
from registry.errors import InvalidInput
from registry.schemas import EngineInfo, InputDeleted, PluginInfo, PluginList

PluginLike = str | os.PathLike[str]  # a digest, or a library file (uploaded when the farm lacks it)


class PluginLibrariesNeeded(UserWarning):
    """A fetched engine needs TensorRT plugin libraries loaded before it can be deserialized."""


class PluginOps:
    _request: Callable[..., Any]

    def plugins(self) -> PluginList:
        """GET /v1/plugins: every uploaded library (digest, name, size, uploaded_at, whether the farm allows it)."""
        return PluginList.model_validate(self._request("GET", "/v1/plugins").json())

    def plugin(self, digest: str) -> PluginInfo:
        """GET /v1/plugins/{digest}."""
        return PluginInfo.model_validate(self._request("GET", f"/v1/plugins/{digest}").json())

    def has_plugin(self, digest: str) -> bool:
        """HEAD /v1/plugins/{digest}."""
        return rawupload.exists(self._request, f"/v1/plugins/{digest}")

    def delete_plugin(self, digest: str) -> InputDeleted:
        """Remove an uploaded plugin library (admin key; Conflict while a build names it)."""
        return InputDeleted.model_validate(self._request("DELETE", f"/v1/plugins/{digest}").json())

    def upload_plugin(self, path: str | os.PathLike[str]) -> PluginInfo:
        """Upload a TensorRT plugin library (an ELF shared object) unless the farm has it; needs an admin key.
        Returns its info; `.digest` is what a build request's `plugins` names, usable once the farm's
        TRTFARM_ALLOWED_PLUGINS allows it (`.allowed`)."""
        return PluginInfo.model_validate(rawupload.upload(self._request, "/v1/plugins", path, "plugin library"))

    def _plugin_refs(self, plugins: Sequence[PluginLike]) -> list[str]:
        """Digests from digests or library files (a file the farm lacks is uploaded: that needs an admin key)."""
        found = []
        for plugin in plugins:
            if isinstance(plugin, str) and is_digest(plugin):
                found.append(plugin)
            elif Path(plugin).is_file():  # uploaded unless the farm has it (HEAD first)
                found.append(self.upload_plugin(plugin).digest)
            else:
                raise InvalidInput(f"plugin {str(plugin)!r} is neither a digest (sha256:<64 hex>) nor an existing "
                                   "file (a TensorRT plugin library, .so)")
        return found


def warn_plugins(engine: EngineInfo) -> None:
    """Say (PluginLibrariesNeeded) which plugin libraries an engine handed out needs (module docstring)."""
    if engine.plugins:
        warnings.warn(f"engine {engine.id} was built with TensorRT plugin libraries {', '.join(engine.plugins)}: "
                      "load each (ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)) before deserializing it; "
                      "Farm.plugin(digest) names them", PluginLibrariesNeeded, stacklevel=3)
