"""`trtfarm inspect`: what `polygraphy inspect model` shows, for an engine of the farm (its id, or a unique prefix)
-- target, precision, profiles, I/O, and the layer table when the build recorded TensorRT's engine inspector --
or for an ONNX model (a local .onnx file, or a model id `sha256:...`): inputs, outputs, opsets, node counts by op
type. `--json` prints the same as one object. Added to registry.cli's app by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from registry.errors import InvalidInput

WHAT_HELP = "an engine id (or a unique prefix of 8+ characters), a local .onnx file, or a model id (sha256:...)"
NO_LAYERS_ORT = "ONNX Runtime engines have no layer table (the farm records TensorRT's engine inspector only)"


def register(app: typer.Typer) -> None:
    """Add `inspect` to the CLI (registry.cli calls it)."""
    app.command("inspect")(inspect)


def inspect(what: str = typer.Argument(..., help=WHAT_HELP), as_json: bool = typer.Option(False, "--json")) -> None:
    """Show an engine (target, precision, profiles, I/O, layers) or an ONNX model, as `polygraphy inspect model`."""
    from registry.cli import _farm, _print_json

    path = Path(what)
    if path.is_file():
        view = onnx_view(path)
    elif what.lower().endswith(".onnx"):
        raise InvalidInput(f"{what}: no such file")
    elif what.startswith("sha256:"):
        view = model_view(_farm().model(what))
    else:
        view = engine_view(_farm().engine(what))
    if as_json:
        _print_json(view)
    elif view["kind"] == "engine":
        print_engine(view)
    else:
        print_model(view)


# ---------------------------------------------------------------------------------------------------------
# an engine
# ---------------------------------------------------------------------------------------------------------
def engine_view(engine: Any) -> dict[str, Any]:
    """What `inspect` shows of an EngineInfo, as plain data (the --json answer)."""
    from registry.cli import spec_columns

    meta = engine.metadata or {}
    _, precision, level = spec_columns(engine.spec, engine.toolchain)
    profiles, profiles_from = engine_profiles(engine)
    return {
        "kind": "engine", "id": engine.id, "model": engine.model, "build": engine.build_id,
        "toolchain": engine.toolchain, "target": f"{engine.toolchain}=={engine.version}@{engine.device}",
        "precision": precision, "level": level, "hardware_compatibility": engine.hardware_compatibility,
        "version_compatible": engine.version_compatible, "refittable": engine.refittable, "size": engine.size,
        "device_memory_bytes": meta.get("device_memory_bytes"),
        "profiling_verbosity": engine.spec.get("profiling_verbosity") if engine.toolchain == "tensorrt" else None,
        "profiles": profiles, "profiles_from": profiles_from,
        "io": [t.model_dump(mode="json") for t in engine.io],
        "layer_count": meta.get("layers"), **engine_layers(engine),
    }


def engine_profiles(engine: Any) -> tuple[list[dict[str, Any]], str]:
    """(one {input: {min, opt, max}} per optimization profile, where from): the engine's own (TensorRT records
    each input's profile shapes), else the spec's."""
    io = (engine.metadata or {}).get("io")
    inputs = [t for t in io if isinstance(t, dict) and t.get("profiles")] if isinstance(io, list) else []
    if inputs:
        count = max(len(t["profiles"]) for t in inputs)
        return [{t["name"]: t["profiles"][k] for t in inputs if k < len(t["profiles"])} for k in range(count)], "engine"
    return list(engine.spec.get("profiles") or []), "spec"


def engine_layers(engine: Any) -> dict[str, Any]:
    """{"layers": rows or None, "layers_from", "layers_note"}: the engine inspector's layer table (detailed
    verbosity: name, type, inputs, outputs, tactic; layer_names_only: names), else the layer-precision report's,
    else why there is none."""
    meta = engine.metadata or {}
    if engine.toolchain != "tensorrt":
        return {"layers": None, "layers_from": None, "layers_note": NO_LAYERS_ORT}
    inspector = meta.get("inspector")
    if isinstance(inspector, dict) and isinstance(inspector.get("Layers"), list):
        return {"layers": [layer_row(layer) for layer in inspector["Layers"]], "layers_from": "inspector",
                "layers_note": None}
    report = meta.get("layer_precisions")
    if isinstance(report, dict) and isinstance(report.get("engine_layers"), list):
        rows = [{"name": r.get("name"), "type": r.get("type"), "outputs": list(r.get("outputs") or []),
                 "constrained_by": list(r.get("constrained_by") or [])} for r in report["engine_layers"]]
        return {"layers": rows, "layers_from": "layer_precisions", "layers_note": None}
    verbosity = engine.spec.get("profiling_verbosity", "layer_names_only")
    if isinstance(inspector, dict) and inspector.get("error"):
        note = f"TensorRT's engine inspector failed: {inspector['error']}"
    elif verbosity != "detailed":
        note = (f"built with profiling_verbosity={verbosity}: the farm records TensorRT's layer table for detailed "
                "only (submit with --trtexec '--profilingVerbosity=detailed' or --spec "
                "'{\"profiling_verbosity\": \"detailed\"}')")
    else:
        note = "the build recorded no layer table"
    return {"layers": None, "layers_from": None, "layers_note": note}


def layer_row(layer: Any) -> dict[str, Any]:
    """One layer of TensorRT's engine inspector JSON: a name (layer_names_only), or a detailed layer."""
    if not isinstance(layer, dict):
        return {"name": str(layer)}
    return {"name": layer.get("Name"), "type": layer.get("LayerType"),
            "inputs": [tensor_text(t) for t in layer.get("Inputs") or []],
            "outputs": [tensor_text(t) for t in layer.get("Outputs") or []],
            "tactic": layer.get("TacticName") or layer.get("Tactic")}


def tensor_text(tensor: Any) -> str:
    """A layer's input or output as the inspector describes it: `name (1x3x224x224, Row major linear FP32)`."""
    if not isinstance(tensor, dict):
        return str(tensor)
    dims = tensor.get("Dimensions")
    shape = "x".join(str(d) for d in dims) if isinstance(dims, list) else str(dims or "")
    details = ", ".join(str(p) for p in (shape, tensor.get("Format/Datatype")) if p)
    return f"{tensor.get('Name', '?')} ({details})" if details else str(tensor.get("Name", "?"))


def print_engine(view: dict[str, Any]) -> None:
    from registry.cli import out
    from registry.clitypes import io_table
    from registry.schemas import EngineTensor

    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    kind = "TensorRT Engine" if view["toolchain"] == "tensorrt" else "ONNX Runtime Engine"
    line(f"==== {kind} ====")
    line(f"    Id: {view['id']} | Target: {view['target']} | Model: {view['model']}")
    compat = ", version compatible" if view["version_compatible"] else ""
    line(f"    Precision: {view['precision']} | {view['level']} | Hardware compatibility: "
         f"{view['hardware_compatibility']}{compat} | Refittable: {view['refittable']} | Size: {view['size']} bytes")
    io = [EngineTensor.model_validate(t) for t in view["io"]]
    inputs = sum(t.mode == "input" for t in io)
    line(f"\n---- {inputs} Engine Input(s), {len(io) - inputs} Engine Output(s) ----")
    out.print(io_table(io))
    if view["device_memory_bytes"] is not None:
        line(f"\n---- Memory ----\n    Device Memory: {view['device_memory_bytes']} bytes")
    line(f"\n---- {len(view['profiles'])} Profile(s) (from the {view['profiles_from']}) ----")
    for k, profile in enumerate(view["profiles"]):
        line(f"    - Profile: {k}")
        for name, r in profile.items():
            shapes = ", ".join(f"{w}={_dims(r.get(w))}" for w in ("min", "opt", "max"))
            line(f"        Tensor: {name} (Input) | Shapes: {shapes}")
    _print_layers(view, line)


def _print_layers(view: dict[str, Any], line: Any) -> None:
    from registry.cli import out

    layers = view["layers"]
    count = len(layers) if layers is not None else view["layer_count"]
    line(f"\n---- {count} Layer(s) ----" if count is not None else "\n---- Layers ----")
    if layers is None:
        line(f"    {view['layers_note']}")
        return
    if all(set(row) == {"name"} for row in layers):  # layer_names_only
        for k, row in enumerate(layers):
            line(f"    Layer {k:<4} | {row['name']}")
        return
    extra = "rule" if view["layers_from"] == "layer_precisions" else "tactic"
    table = Table("#", "layer", "type", "inputs", "outputs", extra)
    for k, row in enumerate(layers):
        last = ", ".join(row.get("constrained_by") or []) if extra == "rule" else str(row.get("tactic") or "")
        table.add_row(str(k), str(row.get("name") or ""), str(row.get("type") or ""),
                      "\n".join(row.get("inputs") or []), "\n".join(row.get("outputs") or []), last)
    out.print(table)


def _dims(shape: Any) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")" if isinstance(shape, list) else str(shape)


# ---------------------------------------------------------------------------------------------------------
# an ONNX model
# ---------------------------------------------------------------------------------------------------------
def onnx_view(path: Path) -> dict[str, Any]:
    """A local .onnx file (registry.onnxinfo; onnx must be installed), external data not loaded."""
    from registry import onnxinfo

    if not onnxinfo.available():
        raise InvalidInput(f"inspecting {path} needs the onnx package: pip install onnx")
    proto = onnxinfo.load(path)
    return {
        "kind": "onnx", "file": str(path), "model": None, "name": proto.graph.name,
        "ir_version": int(proto.ir_version), "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        "inputs": [t.to_api() for t in onnxinfo.graph_io(proto, inputs=True)],
        "outputs": [t.to_api() for t in onnxinfo.graph_io(proto, inputs=False)],
        "initializers": len(proto.graph.initializer), "nodes": len(proto.graph.node),
        "op_types": onnxinfo.op_types(proto),
    }


def model_view(info: Any) -> dict[str, Any]:
    """A model the farm holds (ModelInfo): what its intake recorded."""
    return {
        "kind": "onnx", "file": None, "model": info.id, "name": info.name, "ir_version": info.ir_version,
        "producer": info.producer, "opsets": dict(info.opsets),
        "inputs": [t.model_dump(mode="json") for t in info.inputs],
        "outputs": [t.model_dump(mode="json") for t in info.outputs],
        "initializers": None, "nodes": None, "op_types": info.op_types,
    }


def print_model(view: dict[str, Any]) -> None:
    from registry.cli import out

    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    line("==== ONNX Model ====")
    opsets = ", ".join(f"{domain} {version}" for domain, version in view["opsets"].items())
    where = view["model"] or view["file"]
    line(f"    Name: {view['name']} | {where} | ONNX Opset: {opsets} | IR version: {view['ir_version']}"
         + (f" | Producer: {view['producer']}" if view["producer"] else ""))
    for title, tensors in (("Graph Input(s)", view["inputs"]), ("Graph Output(s)", view["outputs"])):
        line(f"\n---- {len(tensors)} {title} ----")
        table = Table("name", "dtype", "shape")
        for t in tensors:
            table.add_row(t["name"], t["dtype"], _onnx_shape(t["shape"]))
        out.print(table)
    if view["initializers"] is not None:
        line(f"\n---- {view['initializers']} Initializer(s) ----")
    ops = view["op_types"]
    if ops is None:
        line("\n---- Node(s) ----\n    not recorded (the model was registered before the farm counted op types)")
        return
    total = view["nodes"] if view["nodes"] is not None else sum(ops.values())
    line(f"\n---- {total} Node(s) ({sum(ops.values())} with subgraphs and functions) ----")
    table = Table("op type", "count")
    for op, n in sorted(ops.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(op, str(n))
    out.print(table)


def _onnx_shape(shape: list[Any]) -> str:
    """[None, 3, 'N'] -> '? x 3 x N'; [] -> 'scalar or unknown rank'."""
    return " x ".join("?" if d is None else str(d) for d in shape) if shape else "scalar or unknown rank"
