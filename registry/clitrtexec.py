"""`trtfarm submit MODEL --trtexec "<flags>"`: trtexec's build flags (registry/trtexec.py) merged into the spec that
--spec and the other submit flags make (a field both set differently is an error naming both), the notes printed
on stderr, `--calib`'s cache uploaded. Kept apart to keep registry/cli.py short."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry.errors import FarmError, InvalidSpec
from registry.trtexec import ModelIO, TrtexecSpec, spec_from_trtexec

HELP = ("trtexec's build flags in one quoted string, e.g. --trtexec '--fp16 --minShapes=input:1x3x224x224 "
        "--optShapes=input:8x3x224x224 --maxShapes=input:32x3x224x224 --memPoolSize=workspace:4G'; mapped onto "
        "the spec (README: 'trtexec flags'), unknown or unsupported flags refused by name")
# the submit flag that writes each spec field (for conflict messages); a field not here comes from --spec
FLAG_OF = {
    "precision": "--precision", "profiles": "--shape", "optimization_level": "--opt-level",
    "hardware_compatibility": "--hardware-compat", "version_compatible": "--version-compatible", "refit": "--refit",
    "workspace_mib": "--workspace-mib", "layer_precisions": "--layer-precision/--layer-output-types",
    "precision_constraints": "--precision-constraints", "io_formats": "--io-format",
    "profiling_verbosity": "--layer-precision (which sets detailed)", "bench.iterations": "--bench-iterations",
    "bench.max_seconds": "--bench-seconds", "bench.enabled": "--no-bench",
}
SETS = ("precision", "tactic_sources")  # lists that are sets in meaning


def apply_trtexec(text: str, spec: dict[str, Any], *, spec_json: str | None, calibration: str | None, model: str,
                  target: str, farm: Any) -> tuple[dict[str, Any], str | None]:
    """(the spec with the trtexec flags merged in, the calibration: --calib's cache uploaded, as a digest)."""
    from registry.cli import _json_spec, err

    found = spec_from_trtexec(text, model_io=model_io(farm, model), version=_tensorrt_version(target))
    merged = merge(spec, found, _json_spec(spec_json) or {})
    for note in found.notes:
        err.print(f"note: --trtexec {note}", markup=False, highlight=False)
    if found.calibration is not None:
        if calibration is not None:
            raise InvalidSpec("--trtexec --calib and --calibration both name an INT8 calibration; give one")
        calibration = farm.upload_calibration(found.calibration, kind="cache").digest
    return merged, calibration


def _tensorrt_version(target: str) -> str | None:
    from registry.targets import parse_target

    try:
        parsed = parse_target(target)
    except FarmError:
        return None  # the submit says what is wrong with the target
    return parsed.version if parsed.kind == "tensorrt" else None


def model_io(farm: Any, model: str) -> ModelIO:
    """The model's input and output names in the model's order (TensorRT's network order), from the local file
    when onnx is installed, else from the farm (a file is uploaded first, as submit would)."""
    def names() -> tuple[list[str], list[str]]:
        from registry import onnxinfo

        path = Path(model)
        if path.is_file() and onnxinfo.available():
            proto = onnxinfo.load(path)
            return ([t.name for t in onnxinfo.graph_io(proto, inputs=True)],
                    [t.name for t in onnxinfo.graph_io(proto, inputs=False)])
        info = farm.upload(path) if path.is_file() else farm.model(model)
        return [t.name for t in info.inputs], [t.name for t in info.outputs]

    return names


def merge(spec: dict[str, Any], found: TrtexecSpec, json_spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` (from --spec and the submit flags) with the trtexec fields added; a field both set to different
    values is an error naming the flags. Then the trtexec defaults where nothing set the field."""
    merged = json.loads(json.dumps(spec))  # a deep copy
    conflicts = []
    for name, value in _fields(found.spec):
        head, _, sub = name.partition(".")
        holder = merged.setdefault(head, {}) if sub else merged
        key = sub or head
        if key not in holder:
            holder[key] = value
        elif not _same(name, holder[key], value):
            conflicts.append(f"--trtexec {found.sources.get(name, '')} sets {name}={_shown(value)} but "
                             f"{_origin(name, holder[key], json_spec)} sets {_shown(holder[key])}")
    if conflicts:
        raise InvalidSpec("; ".join(conflicts) + " (give each setting once)")
    for name, value in found.defaults.items():
        merged.setdefault(name, value)
    if "layer_precisions" in found.spec and merged.get("precision_constraints", "none") == "none":
        raise InvalidSpec(f"--trtexec {found.sources['layer_precisions']}: layer precisions apply only with "
                          "--precisionConstraints=obey or prefer (trtexec ignores them otherwise); add one")
    return merged


def _fields(spec: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in spec.items():
        if key == "bench":
            yield from ((f"bench.{sub}", v) for sub, v in value.items())
        else:
            yield key, value


def _same(name: str, a: Any, b: Any) -> bool:
    if name in SETS and isinstance(a, list) and isinstance(b, list):
        return sorted(set(a)) == sorted(set(b))
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _origin(name: str, value: Any, json_spec: dict[str, Any]) -> str:
    head, _, sub = name.partition(".")
    given = json_spec.get(head) if not sub else (json_spec.get(head) or {}).get(sub)
    if given is not None and _same(name, given, value):
        return "--spec"
    return FLAG_OF.get(name, "--spec")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
