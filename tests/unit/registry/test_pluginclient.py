"""The SDK and engines built with plugin libraries: EngineInfo.plugins comes from the engine's metadata (an
older or cached answer reads the same), and Farm.fetch warns PluginLibrariesNeeded naming them, from the farm's
answer and from the local index alike; an engine without plugins fetches silently."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import pytest

from registry.pluginclient import PluginLibrariesNeeded
from registry.schemas import EngineInfo
from tests.unit.registry.test_client import H100, MODEL, PLAN, artifact_routes, engine_json, make_farm

LIBRARY = "sha256:" + "5a" * 32


def test_engine_info_reads_its_plugins_from_the_metadata():
    assert EngineInfo.model_validate(engine_json(metadata={"plugins": [LIBRARY]})).plugins == [LIBRARY]
    assert EngineInfo.model_validate(engine_json()).plugins == []
    given = EngineInfo.model_validate(engine_json(plugins=[LIBRARY], metadata={}))
    assert EngineInfo.model_validate_json(given.model_dump_json()).plugins == [LIBRARY]


def test_fetch_warns_which_plugin_libraries_the_engine_needs(tmp_path: Path):
    routes = artifact_routes()
    routes[("GET", "/v1/engines/resolve")] = httpx.Response(200, json={
        "engine": engine_json(metadata={"plugins": [LIBRARY]}), "match_class": "exact", "reason": "same"})
    farm, fake = make_farm(tmp_path, routes)
    with pytest.warns(PluginLibrariesNeeded, match=f"built with TensorRT plugin libraries {LIBRARY}"):
        path = farm.fetch(MODEL, H100)
    assert path.read_bytes() == PLAN
    with pytest.warns(PluginLibrariesNeeded, match=LIBRARY):  # answered from the local index: still said
        farm.fetch(MODEL, H100)
    assert len(fake.requests) == 2


def test_an_engine_without_plugins_fetches_silently(tmp_path: Path):
    farm, _ = make_farm(tmp_path, artifact_routes())
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLibrariesNeeded)
        farm.fetch(MODEL, H100)
