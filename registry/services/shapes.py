"""A spec's optimization profiles as the build key should see them, for one model.

- A dimension is dynamic when the model gives it no positive size: a name, no value, -1 or 0 (exporters
  write all of these for "any"); everything else is fixed.
- A static input named in a profile with its own shape says nothing: it is left out, so that naming it or
  not gives the same key (a profile that gives it any other range is refused later, with the reason).
- A dynamic input with no range gets trtexec's default, 1 for every dynamic dimension (min = opt = max),
  and the build carries a warning saying so. For ONNX Runtime, which takes any shape, a spec without
  profiles stays without: the worker validates at the same default and says so in the log.

An engine's *profile width* (`profile_width`, kept on every engine row and resolve's first tie-break within a
match class, docs/design.md) measures how many input shapes its profiles hold: log2 of the number of distinct
assignments of one shape to each input that some profile holds (a profile holds each shape whose every
dimension lies within min..max; shapes held by several profiles count once), rounded to 9 decimals. One shape
is 0.0; batch 1..16 with the other dimensions fixed is 4.0, batch 1..4 is 2.0. Without profiles: ONNX Runtime
takes any shape, `ANY_SHAPE_WIDTH` (wider than any count); TensorRT only the static model's shapes, 0.0.
Migration 0010 holds a frozen copy of this computation (its backfill).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from registry.db.tables import Model
from registry.spec import BuildSpec, ShapeRange, shape_text


def is_dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim <= 0


def describe(shape: list) -> str:
    return "(" + ", ".join("?" if d is None or (isinstance(d, int) and d <= 0) else str(d) for d in shape) + ")"


def normalized(spec: BuildSpec, model: Model, toolchain: str) -> tuple[BuildSpec, list[dict[str, str]]]:
    """(the spec to key and build, the warnings for the build)."""
    constant = set(spec.sanitize.shape_values) if spec.sanitize else set()  # sanitizing makes them constants
    shapes = {i["name"]: i["shape"] for i in model.inputs if i["name"] not in constant}
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



ANY_SHAPE_WIDTH = 1e6  # log2 of "every shape": an ONNX Runtime engine without profiles
Box = tuple[tuple[int, int], ...]  # (min, max) per dimension of every input, inputs in name order


def profile_width(spec: BuildSpec, toolchain: str) -> float:
    """The engine's profile width (module docstring): log2 of how many input shapes its profiles hold."""
    if not spec.profiles:
        return ANY_SHAPE_WIDTH if toolchain == "onnxruntime" else 0.0
    return width_of([{n: (r.min, r.max) for n, r in p.items()} for p in spec.profiles])


def width_of(profiles: Sequence[Mapping[str, tuple[Sequence[int], Sequence[int]]]]) -> float:
    """log2 of the number of shapes the profiles ({input: (min, max)}) hold together, rounded to 9 decimals.
    Profiles whose inputs have other ranks hold other shapes: they are counted apart."""
    groups: dict[tuple, set[Box]] = {}
    for profile in profiles:
        names = sorted(profile)
        ranks = tuple((n, len(profile[n][0])) for n in names)
        groups.setdefault(ranks, set()).add(tuple((lo, hi) for n in names for lo, hi in zip(*profile[n])))
    count = sum(_union(list(boxes)) for boxes in groups.values())
    return round(math.log2(count), 9) if count > 1 else 0.0


def _union(boxes: list[Box]) -> int:
    """How many integer points the boxes cover together: a sweep over the first dimension's intervals (cut where
    a box starts or ends), each counting the boxes that span it over the other dimensions. Dimensions on which
    the boxes agree cut nothing, so the usual profiles (a few, differing in batch or sequence) cost little."""
    if len(boxes) == 1:
        return math.prod(hi - lo + 1 for lo, hi in boxes[0])
    if not boxes[0]:
        return 1
    cuts = sorted({lo for (lo, _), *_ in boxes} | {hi + 1 for (_, hi), *_ in boxes})
    total = 0
    for start, end in zip(cuts, cuts[1:]):
        spanning = list({box[1:] for box in boxes if box[0][0] <= start and end - 1 <= box[0][1]})
        if spanning:
            total += (end - start) * _union(spanning)
    return total
