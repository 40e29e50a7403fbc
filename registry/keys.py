"""Canonical JSON and build keys (docs/design.md "Digests and keys").

key = sha256(canonical JSON of {key_version, model, target, spec, plugins, calibration}).
Changing anything here changes every key: bump KEY_VERSION and write a migration note.
"""

from __future__ import annotations

from typing import Any

from registry.digests import canonical_json, sha256_hex
from registry.spec import ADDED_OPTIONS, COMPAT_OPTIONS, MEASUREMENT_OPTIONS, BuildSpec

KEY_VERSION = 1


def spec_canonical(spec: BuildSpec) -> dict[str, Any]:
    """Defaults filled, enum values as names, lists in declared (or canonical set) order."""
    return spec.model_dump(mode="json")


def build_key(
    *, model: str, target: str, spec: BuildSpec, plugins: tuple[str, ...] = (), calibration: str | None = None
) -> str:
    doc = {
        "key_version": KEY_VERSION,
        "model": model,
        "target": target,
        "spec": _recipe(spec),
        "plugins": sorted(plugins),
        "calibration": calibration,
    }
    return sha256_hex(canonical_json(doc))


def spec_family(spec: BuildSpec) -> str:
    """What an engine computes, without the options that only decide who can load it.

    Two engines of one family are interchangeable for a client that asks for that spec.
    """
    doc = {k: v for k, v in _recipe(spec).items() if k not in COMPAT_OPTIONS}
    return sha256_hex(canonical_json(doc))


def _recipe(spec: BuildSpec) -> dict[str, Any]:
    """The canonical spec without the measurement options (they don't change the engine) and without the
    options added after key version 1 while at their default (every earlier spec keeps its key)."""
    defaults = _added_defaults()
    return {k: v for k, v in spec_canonical(spec).items()
            if k not in MEASUREMENT_OPTIONS and not (k in defaults and v == defaults[k])}


def _added_defaults() -> dict[str, Any]:
    canonical = spec_canonical(BuildSpec())
    return {k: canonical[k] for k in ADDED_OPTIONS if k in canonical}
