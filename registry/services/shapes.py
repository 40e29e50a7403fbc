"""A spec's optimization profiles as the build key should see them, for one model.

- A dimension is dynamic when the model gives it no positive size: a name, no value, -1 or 0 (exporters
  write all of these for "any"); everything else is fixed.
- A static input named in a profile with its own shape says nothing: it is left out, so that naming it or
  not gives the same key (a profile that gives it any other range is refused later, with the reason).
- A dynamic input with no range gets trtexec's default, 1 for every dynamic dimension (min = opt = max),
  and the build carries a warning saying so. For ONNX Runtime, which takes any shape, a spec without
  profiles stays without: the worker validates at the same default and says so in the log.
"""

from __future__ import annotations

from typing import Any

from registry.db.tables import Model
from registry.spec import BuildSpec, ShapeRange, shape_text


def is_dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim <= 0


def describe(shape: list) -> str:
    return "(" + ", ".join("?" if d is None or (isinstance(d, int) and d <= 0) else str(d) for d in shape) + ")"


def normalized(spec: BuildSpec, model: Model, toolchain: str) -> tuple[BuildSpec, list[dict[str, str]]]:
    """(the spec to key and build, the warnings for the build)."""
    shapes = {i["name"]: i["shape"] for i in model.inputs}
    static = {n: tuple(s) for n, s in shapes.items() if not any(is_dynamic(d) for d in s)}  # [] is a scalar
    profiles = [{n: r for n, r in p.items() if not (n in static and r.min == r.opt == r.max == static[n])}
                for p in spec.profiles]
    if profiles and not any(profiles):
        profiles = []
    dynamic = {n: s for n, s in shapes.items() if n not in static}
    missing = sorted(set(dynamic) - set(profiles[0] if profiles else {}))
    if not missing:
        return spec.model_copy(update={"profiles": tuple(profiles)}), []
    defaults = {n: _ones(dynamic[n]) for n in missing}
    if profiles or toolchain == "tensorrt":  # TensorRT needs a range for each; given profiles name every input
        profiles = [{**p, **defaults} for p in (profiles or [{}])]
        return spec.model_copy(update={"profiles": tuple(profiles)}), [_warning(missing, dynamic, defaults,
                                                                                "built for")]
    return spec.model_copy(update={"profiles": ()}), [_warning(missing, dynamic, defaults, "validated at")]


def _ones(shape: list) -> ShapeRange:
    dims = tuple(1 if is_dynamic(d) else int(d) for d in shape)
    return ShapeRange(min=dims, opt=dims, max=dims)


def _warning(missing: list[str], dynamic: dict[str, list], defaults: dict[str, ShapeRange],
             verb: str) -> dict[str, str]:
    shown = "; ".join(f"{n} {describe(dynamic[n])} {verb} {shape_text(defaults[n].min)}" for n in missing)
    return {"code": "default_shape",
            "message": f"no range for dynamic input(s): {shown} (trtexec's default: 1 for every dynamic "
                       f"dimension); give --shape {missing[0]}:MIN,OPT,MAX for the shapes you will run"}

