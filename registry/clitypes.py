"""Data types and layouts on the command line: `trtfarm submit`'s --layer-precision, --layer-output-types,
--precision-constraints and --io-format (spec.layer_precisions, precision_constraints, io_formats), and
`trtfarm engines show ID` (an engine's I/O buffers and what its layer rules did). Kept apart to keep
registry/cli.py short."""

from __future__ import annotations

from typing import Any, Optional, get_args

import typer
from rich.table import Table

from registry.errors import InvalidSpec

SUBMIT_HELP = {
    "layer_precision": "PATTERN:PRECISION: the layers whose name matches PATTERN (fnmatch, the ONNX node names) "
                       "compute in PRECISION (fp32, fp16, bf16, int8, ...); repeatable, the first match wins",
    "layer_output_types": "PATTERN:TYPE[+TYPE...]: those layers' outputs in TYPE (one for all, or one per output)",
    "precision_constraints": "obey, prefer or none: how TensorRT holds the layer rules (default with rules: obey)",
    "io_format": "NAME:DTYPE[:FORMAT[+FORMAT...]]: an input's or output's type and allowed layouts at the engine's "
                 "boundary, e.g. input:fp16:hwc8 (FORMAT default linear); repeatable",
}


def _names(kind: str) -> tuple[str, ...]:
    from registry import spec

    return get_args(getattr(spec, kind))


def _types(text: str, where: str) -> list[str]:
    known = _names("DataType")
    types = [t.strip().lower() for t in text.split("+")]
    wrong = [t for t in types if t not in known]
    if wrong:
        raise InvalidSpec(f"{where}: unknown data type {wrong[0]!r}; known: {', '.join(known)}")
    return types


def _split(item: str, flag: str, example: str) -> tuple[str, str]:
    pattern, sep, value = item.rpartition(":")
    if not sep or not pattern or not value:
        raise InvalidSpec(f"{flag} {item!r}: give {example}")
    return pattern, value


def layer_rules(precisions: list[str], output_types: list[str]) -> list[dict[str, Any]]:
    """Rules from the flags: one per pattern, in the order the patterns first appear (--layer-precision's,
    then --layer-output-types' new ones); --spec gives any other order."""
    rules: dict[str, dict[str, Any]] = {}
    for item in precisions:
        pattern, value = _split(item, "--layer-precision", "PATTERN:PRECISION, e.g. --layer-precision 'conv0:fp32'")
        types = _types(value, f"--layer-precision {item!r}")
        if len(types) != 1:
            raise InvalidSpec(f"--layer-precision {item!r}: one precision per pattern (--layer-output-types takes "
                              "one type per output)")
        rules.setdefault(pattern, {"pattern": pattern})["precision"] = types[0]
    for item in output_types:
        pattern, value = _split(item, "--layer-output-types", "PATTERN:TYPE[+TYPE...], e.g. 'conv0:fp32'")
        types = _types(value, f"--layer-output-types {item!r}")
        rules.setdefault(pattern, {"pattern": pattern})["output_types"] = types
    return list(rules.values())


def io_formats(items: list[str]) -> dict[str, dict[str, Any]]:
    """--io-format NAME:DTYPE[:FORMAT[+FORMAT...]] items (a NAME may hold colons: the last fields are read)."""
    formats, dtypes = _names("TensorFormat"), _names("DataType")
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        parts = item.rsplit(":", 2)
        if len(parts) == 3 and parts[1].lower() in dtypes and parts[0]:
            name, dtype, layout = parts[0], parts[1].lower(), [f.strip().lower() for f in parts[2].split("+")]
        elif len(parts) >= 2 and parts[-1].lower() in dtypes and ":".join(parts[:-1]):
            name, dtype, layout = ":".join(parts[:-1]), parts[-1].lower(), ["linear"]
        else:
            raise InvalidSpec(f"--io-format {item!r}: give NAME:DTYPE[:FORMAT[+FORMAT...]], e.g. input:fp16:hwc8 "
                              f"(types: {', '.join(dtypes)}; formats: {', '.join(formats)})")
        wrong = [f for f in layout if f not in formats]
        if wrong:
            raise InvalidSpec(f"--io-format {item!r}: unknown format {wrong[0]!r}; known: {', '.join(formats)}")
        if name in found:
            raise InvalidSpec(f"--io-format names {name!r} twice; give one DTYPE:FORMAT[+FORMAT...] per tensor")
        found[name] = {"dtype": dtype, "formats": layout}
    return found


def apply_flags(spec: dict[str, Any], *, layer_precision: list[str], layer_output_types: list[str],
                precision_constraints: str | None, io_format: list[str]) -> dict[str, Any]:
    """`spec` (from --spec and the other flags) with these flags applied; flags replace what --spec says. With
    layer rules from the flags, precision_constraints defaults to obey and profiling_verbosity to detailed
    (the engine's layer table then shows what each constrained layer got) unless --spec sets them."""
    rules = layer_rules(layer_precision, layer_output_types)
    if rules:
        spec["layer_precisions"] = rules
        spec.setdefault("precision_constraints", "obey")
        spec.setdefault("profiling_verbosity", "detailed")
    if precision_constraints is not None:
        spec["precision_constraints"] = precision_constraints
    if io_format:
        spec["io_formats"] = io_formats(io_format)
    return spec


# ---------------------------------------------------------------------------------------------------------
# trtfarm engines show
# ---------------------------------------------------------------------------------------------------------
def register(engines_app: typer.Typer) -> None:
    """Add `show` to `trtfarm engines` (registry.cli calls it)."""
    engines_app.command("show")(show_engine)


def show_engine(engine_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """An engine's I/O buffers (name, shape with -1 set at run time, dtype, layout) and its layer rules."""
    from registry.cli import _farm, _print_json, out

    engine = _farm().engine(engine_id)
    if as_json:
        return _print_json(engine.model_dump(mode="json"))
    out.print(f"engine {engine.id}  {engine.toolchain}=={engine.version}@{engine.device}  {engine.size} bytes  "
              f"validation passed: {engine.validation_passed}", markup=False, highlight=False)
    out.print(io_table(engine.io))
    _show_layer_rules(engine.metadata.get("layer_precisions"))
    return None


def io_table(tensors: list[Any]) -> Table:
    """An engine's I/O (EngineTensor): name, mode, dtype, shape ('?' where set at run time), format."""
    table = Table("tensor", "mode", "dtype", "shape", "format")
    for t in tensors:
        table.add_row(t.name, t.mode, t.dtype, "x".join("?" if d < 0 else str(d) for d in t.shape), t.format)
    return table


def _show_layer_rules(report: Optional[dict[str, Any]]) -> None:
    from registry.cli import out

    if not report:
        return
    rules = Table("rule", "precision", "output types", "layers set", "skipped (not float)")
    for r in report.get("rules") or []:
        rules.add_row(r["pattern"], r.get("precision") or "", "+".join(r.get("output_types") or []),
                      str(r.get("layers", "")), str(r.get("skipped", "")))
    out.print(rules)
    layers = [row for row in report.get("engine_layers") or [] if row.get("constrained_by")]
    if layers:
        table = Table("engine layer", "type", "output types (as TensorRT reports them)", "rule")
        for row in layers:
            table.add_row(str(row.get("name")), str(row.get("type") or ""), "\n".join(row.get("outputs") or []),
                          ", ".join(row["constrained_by"]))
        out.print(table)
    if report.get("note"):
        out.print(f"note: {report['note']}", markup=False, highlight=False)
