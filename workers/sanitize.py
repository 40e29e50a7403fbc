"""Sanitizing a model before a toolchain sees it (`spec.sanitize`, docs/design.md "Sanitizing").

Pure: an onnx.ModelProto in, a ModelProto and notes out (human-readable lines of what was done), with
onnx's own tools only. The steps, in this order:

1. `opset`: a model whose ai.onnx opset is below it is converted up to it (onnx.version_converter);
   TensorRT's parser refuses pre-opset-7 broadcasting and ONNX Runtime lacks kernels of opset < 7. The one
   thing the converter gets wrong on the way to 7, a PRelu's per-channel slope, is reshaped first.
2. `shape_values`: each named input (a shape tensor: Expand's shape, Reshape's shape) becomes an
   initializer holding the given values.
3. `fold_constants`: a node whose inputs are all constants (initializers that are no graph inputs, outputs
   of Constant nodes or of nodes folded before it) is evaluated with onnx.reference.ReferenceEvaluator and
   replaced by initializers. Left alone: nodes of other domains, with subgraphs, random ones, ones that
   give a graph output, ones whose inputs or outputs exceed FOLD_LIMIT_BYTES, ones that fail to evaluate.
   Constant nodes and initializers nothing uses any more are dropped.
4. `symbolic_dims`: every dynamic dimension of an input without a name of its own ('?', no name, -1 or 0)
   is named `<input>_dim<axis>`: TensorRT takes one name for one symbol, so two '?' would be one.
5. onnx's shape inference; onnx.checker (by path in `sanitize_file`, which keeps external data working:
   the sanitized model is written beside the original, and tensors kept external stay where they are).

Importable with onnx and numpy (and this project's registry.errors).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from registry.errors import InvalidModel, InvalidSpec

STANDARD = {"fold_constants": True, "opset": 7, "symbolic_dims": True, "shape_values": {}}
FOLD_LIMIT_BYTES = 16 << 20  # a folded tensor larger than this stays computed (the engine would carry it)
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
              "If", "Loop", "Scan"}
# (op, input index) of the inputs whose values TensorRT needs at build time: a shape tensor
SHAPE_INPUTS = {("Reshape", 1), ("Expand", 1), ("Tile", 1), ("ConstantOfShape", 0), ("Slice", 1), ("Slice", 2),
                ("Slice", 3), ("Slice", 4), ("Range", 0), ("Range", 1), ("Range", 2), ("Resize", 3), ("Pad", 1),
                ("OneHot", 1), ("TopK", 1), ("Squeeze", 1), ("Unsqueeze", 1), ("Split", 1), ("ReduceSum", 1),
                ("ReduceMean", 1), ("ReduceMax", 1), ("ReduceMin", 1), ("ReduceProd", 1), ("CenterCropPad", 1),
                ("NonMaxSuppression", 2)}


def sanitize(model: Any, steps: dict[str, Any] | None = None, base_dir: str | Path = "",
             check: bool = True) -> tuple[Any, list[str]]:
    """(the sanitized copy of `model`, notes of what was done). `steps` as spec.sanitize's canonical form
    (None: STANDARD); `base_dir` is where external data lives; `check` runs onnx.checker on the result
    (sanitize_file checks by path instead). InvalidSpec for shape_values the model cannot take,
    InvalidModel when the result fails the checker."""
    import onnx

    steps = {**STANDARD, **(steps or {})}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    notes: list[str] = []
    if steps["opset"] is not None:
        out = _convert_opset(out, int(steps["opset"]), str(base_dir), notes)
    if steps["shape_values"]:
        _set_shape_values(out, steps["shape_values"], notes)
    if steps["fold_constants"]:
        _fold_constants(out, str(base_dir), notes)
    if steps["symbolic_dims"]:
        _name_dims(out, notes)
    _ir4_if_needed(out, notes)
    out = _infer_shapes(out, notes)
    if check:
        _check(out)
    return out, notes


def sanitize_file(src: str | Path, dest: str | Path, steps: dict[str, Any] | None = None) -> list[str]:
    """Sanitize the model at `src` into `dest` (in the same folder, so that external data resolves); the notes."""
    import onnx

    src, dest = Path(src), Path(dest)
    model = onnx.load(str(src), load_external_data=False)
    sanitized, notes = sanitize(model, steps, base_dir=src.parent, check=False)
    onnx.save_model(sanitized, str(dest))
    _check(str(dest))
    return notes


def _check(model: Any) -> None:
    """onnx.checker over the result (a ModelProto, or a path: external data beside it), TensorRT plugin ops shown
    in a domain of their own as at intake (registry.onnxinfo), since the checker refuses ops ONNX lacks."""
    import onnx

    from registry import onnxinfo

    try:
        if isinstance(model, str | Path):
            onnxinfo.check(model, Path(model).name)
        elif onnxinfo.plugin_ops(model):  # shown apart on a copy: the result keeps them where they were
            apart = onnx.ModelProto()
            apart.CopyFrom(model)
            onnx.checker.check_model(onnxinfo.plugins_apart(apart))
        else:
            onnx.checker.check_model(model)
    except (InvalidModel, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        text = exc.details.get("checker", exc.message) if isinstance(exc, InvalidModel) and exc.details else str(exc)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise InvalidModel(f"the sanitized model fails the ONNX checker: {first}; build without `sanitize` "
                           "or without the step that breaks it", details={"checker": text[:4000]}) from None


def default_opset(model: Any) -> int | None:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


# ------------------------------------------------------------------------------------------------- opset


def _convert_opset(model: Any, target: int, base_dir: str, notes: list[str]) -> Any:
    import onnx
    from onnx import version_converter

    current = default_opset(model)
    if current is None or current >= target:
        return model
    source, fixed = onnx.ModelProto(), []
    source.CopyFrom(model)
    if current < 7 <= target:
        fixed = _channel_slopes(source, base_dir)
    try:
        converted = version_converter.convert_version(source, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError, ValueError and its own kinds
        notes.append(f"opset {current} kept: onnx's version converter cannot take it to {target} "
                     f"({_short(exc)})")
        return model
    notes.append(f"converted opset {current} -> {target} (onnx.version_converter)")
    notes.extend(fixed)
    return converted


def _channel_slopes(model: Any, base_dir: str) -> list[str]:
    """Before opset 7, PRelu applies a slope of C values per channel (axis 1); from opset 7 on it broadcasts
    numpy-style (on the last axis), and onnx's version converter leaves the slope as it is. A constant slope
    of C > 1 values on an input of rank r >= 3 gets the shape [C, 1, ...] (r - 1 dims) first. The notes."""
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    inputs = {v.name for v in graph.input}
    slopes = {t.name: t for t in graph.initializer if t.name not in inputs and len(t.dims) == 1 and t.dims[0] > 1}
    nodes = [n for n in graph.node if n.op_type == "PRelu" and n.domain in ("", "ai.onnx") and len(n.input) == 2
             and n.input[1] in slopes]
    if not nodes:
        return []
    inferred = shape_inference.infer_shapes(model).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*inferred.input, *inferred.value_info)
             if v.type.tensor_type.HasField("shape")}
    notes, names = [], {t.name for t in graph.initializer}
    for node in nodes:
        rank, slope = ranks.get(node.input[0], 0), slopes[node.input[1]]
        if rank < 3:
            continue
        name = next(f"{slope.name}_per_channel{k or ''}" for k in range(len(names) + 1)
                    if f"{slope.name}_per_channel{k or ''}" not in names)
        names.add(name)
        array = numpy_helper.to_array(slope, base_dir=base_dir).reshape([-1] + [1] * (rank - 2))
        graph.initializer.append(numpy_helper.from_array(array, name))
        node.input[1] = name
        notes.append(f"PRelu {node.name or node.output[0]}: its {array.shape[0]} per-channel slopes take the "
                     f"shape {list(array.shape)} (opset 6 applies them per channel, opset 7 broadcasts them)")
    return notes


# ------------------------------------------------------------------------------------------ shape values


def _set_shape_values(model: Any, values: dict[str, Any], notes: list[str]) -> None:
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = {v.name: v for v in graph.input if v.name not in initializers}
    for name, given in values.items():
        where = f"spec.sanitize.shape_values.{name}"
        if name not in inputs:
            raise InvalidSpec(f"{where}: the model has no input {name!r}; its inputs: {', '.join(inputs)}")
        tensor = inputs[name].type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)) if tensor.elem_type else None
        if dtype is None or dtype.kind not in "iu":
            raise InvalidSpec(f"{where}: input {name} is not an integer tensor; only shape tensors take values")
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else 1
        array = np.array(list(given), dtype=dtype)
        if rank == 0 and array.size == 1:
            array = array.reshape(())
        elif rank != 1:
            raise InvalidSpec(f"{where}: input {name} has rank {rank}; shape tensors have rank 0 or 1")
        graph.input.remove(inputs[name])
        graph.initializer.append(numpy_helper.from_array(array, name))
        notes.append(f"input {name} replaced by the constant {array.tolist()} (shape_values)")


def shape_tensor_inputs(model: Any) -> list[str]:
    """The integer graph inputs of rank <= 1 that some node reads where TensorRT needs values at build time
    (a shape tensor: Expand's shape, Reshape's shape, Slice's starts...), in graph order."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    integer = {v.name for v in graph.input if v.name not in initializers and _integer_vector(v)}
    used = {name for node in graph.node for k, name in enumerate(node.input)
            if name in integer and node.domain in ("", "ai.onnx") and (node.op_type, k) in SHAPE_INPUTS}
    return [v.name for v in graph.input if v.name in used]


def _integer_vector(value: Any) -> bool:
    from onnx import TensorProto

    tensor = value.type.tensor_type
    ints = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8}
    return tensor.elem_type in ints and (not tensor.HasField("shape") or len(tensor.shape.dim) <= 1)


# ------------------------------------------------------------------------------------- constant folding


def _fold_constants(model: Any, base_dir: str, notes: list[str]) -> None:
    from onnx import numpy_helper

    graph = model.graph
    opsets = {(o.domain or ""): int(o.version) for o in model.opset_import}
    graph_inputs = {v.name for v in graph.input}
    constants = {t.name: t for t in graph.initializer if t.name not in graph_inputs}  # an input may override
    outputs = {o.name for o in graph.output}
    arrays: dict[str, Any] = {}
    kept, folded, skipped = [], Counter(), Counter()
    for node in graph.node:
        reason, values = _evaluate(node, constants, arrays, outputs, opsets, base_dir)
        if node.op_type == "Constant" and values:
            arrays.update(values)  # known from now on; the node itself goes if nothing reads it any more
            kept.append(node)
        elif values:
            for name, array in values.items():
                tensor = numpy_helper.from_array(array, name)
                graph.initializer.append(tensor)
                constants[name], arrays[name] = tensor, array
            folded[node.op_type] += 1
        else:
            kept.append(node)
            if reason:
                skipped[reason] += 1
    del graph.node[:]
    graph.node.extend(kept)
    dropped = _drop_unused(graph)
    if folded:
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(folded.items()))
        notes.append(f"folded {sum(folded.values())} constant node(s) into initializers ({ops})")
    if dropped:
        notes.append(f"dropped {dropped} constant(s) nothing reads any more")
    for reason, count in sorted(skipped.items()):
        notes.append(f"left {count} constant node(s) unfolded: {reason}")


def _evaluate(node: Any, constants: dict, arrays: dict, outputs: set, opsets: dict,
              base_dir: str) -> tuple[str | None, dict[str, Any] | None]:
    """(why a node with constant inputs stays, None) or (None, {output: value}); (None, None): not constant."""
    names = list(node.input)
    if node.op_type in NOT_FOLDED or node.domain not in ("", "ai.onnx") or any(a.HasField("g") or a.graphs
                                                                                for a in node.attribute):
        return None, None
    if (not names and node.op_type != "Constant") or any(not n or (n not in arrays and n not in constants)
                                                         for n in names):
        return None, None
    if node.op_type != "Constant" and any(o in outputs for o in node.output):
        return None, None  # a graph output stays computed (TensorRT wants outputs that are no weights)
    if any(_tensor_bytes(constants[n]) > FOLD_LIMIT_BYTES for n in names if n not in arrays):
        return f"input over {FOLD_LIMIT_BYTES >> 20} MiB", None
    try:
        feeds = {n: arrays[n] if n in arrays else _load(constants[n], base_dir, arrays) for n in names}
        if (_estimated_bytes(node, feeds) or 0) > FOLD_LIMIT_BYTES:
            return f"output over {FOLD_LIMIT_BYTES >> 20} MiB", None
        results = _run(node, feeds, opsets)
    except Exception as exc:  # noqa: BLE001 - an op the reference evaluator cannot run: leave it computed
        return f"{node.op_type} does not evaluate ({_short(exc)[:120]})", None
    if results is None:
        return f"{node.op_type} gives no tensor", None
    if any(getattr(v, "nbytes", 0) > FOLD_LIMIT_BYTES for v in results.values()):
        return f"output over {FOLD_LIMIT_BYTES >> 20} MiB", None
    return None, results


def _run(node: Any, feeds: dict[str, Any], opsets: dict[str, int]) -> dict[str, Any] | None:
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    got = ReferenceEvaluator(node, opsets={"": opsets.get("", opsets.get("ai.onnx", 1))}).run(None, feeds)
    results = {}
    for name, value in zip(node.output, got):
        if not name:
            continue
        if not isinstance(value, (np.ndarray, np.generic)):
            return None  # a sequence, a map, an optional
        numpy_helper.from_array(np.asarray(value), name)  # raises for a dtype ONNX cannot store
        results[name] = np.asarray(value)
    return results


def _load(tensor: Any, base_dir: str, arrays: dict[str, Any]) -> Any:
    from onnx import numpy_helper

    arrays[tensor.name] = numpy_helper.to_array(tensor, base_dir=base_dir)
    return arrays[tensor.name]


def _tensor_bytes(tensor: Any) -> int:
    from onnx import helper

    count = 1
    for d in tensor.dims:
        count *= int(d)
    try:
        return count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return count


def _estimated_bytes(node: Any, feeds: dict[str, Any]) -> int | None:
    """The output's size, before evaluating, for the ops that make a large tensor from a small one."""
    import numpy as np

    values = [feeds[n] for n in node.input]
    try:
        if node.op_type == "ConstantOfShape":
            return int(np.prod(values[0], dtype=np.float64)) * 8
        if node.op_type == "Expand":
            shape = np.broadcast_shapes(values[0].shape, tuple(int(d) for d in values[1]))
            return int(np.prod(shape, dtype=np.float64)) * values[0].itemsize
        if node.op_type == "Tile":
            return int(np.prod(values[1], dtype=np.float64)) * values[0].nbytes
        if node.op_type == "Range":
            start, limit, delta = (float(v) for v in values)
            return max(int((limit - start) / delta) + 1, 0) * values[0].itemsize if delta else None
    except (ValueError, TypeError, IndexError):
        return None
    return None


def _drop_unused(graph: Any) -> int:
    """Remove Constant nodes and initializers (that are no graph inputs) nothing reads; how many went."""
    used = _read_names(graph) | {o.name for o in graph.output}
    nodes = [n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    graph_inputs = {v.name for v in graph.input}
    inits = [t for t in graph.initializer if t.name in used or t.name in graph_inputs]
    dropped = len(graph.node) - len(nodes) + len(graph.initializer) - len(inits)
    if dropped:
        del graph.node[:]
        graph.node.extend(nodes)
        del graph.initializer[:]
        graph.initializer.extend(inits)
    return dropped


def _read_names(graph: Any) -> set[str]:
    """Every name a node of the graph, or of a subgraph (outer-scope references), reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _read_names(sub) | {o.name for o in sub.output}
    return names


# ------------------------------------------------------------------------------------------ dims, shapes


def _name_dims(model: Any, notes: list[str]) -> None:
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    taken = {d.dim_param for v in (*graph.input, *graph.output, *graph.value_info)
             for d in v.type.tensor_type.shape.dim if d.dim_param}
    for value in graph.input:
        if value.name in initializers:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if (dim.HasField("dim_value") and dim.dim_value > 0) or (dim.dim_param and dim.dim_param != "?"):
                continue
            was = repr(dim.dim_param) if dim.dim_param else str(dim.dim_value) if dim.HasField("dim_value") \
                else "unnamed"
            name, k = f"{value.name}_dim{axis}", 1
            while name in taken:
                name, k = f"{value.name}_dim{axis}_{k}", k + 1
            taken.add(name)
            dim.dim_param = name  # dim_value and dim_param are one oneof: this clears a -1
            notes.append(f"named dim: input {value.name} axis {axis} {was} -> {name!r}")


def _ir4_if_needed(model: Any, notes: list[str]) -> None:
    """IR 3 wants every initializer among the graph inputs; folded constants and shape values are not."""
    inputs = {v.name for v in model.graph.input}
    if model.ir_version < 4 and any(t.name not in inputs for t in model.graph.initializer):
        notes.append(f"IR version {model.ir_version} -> 4 (initializers that are no graph inputs)")
        model.ir_version = 4


def _infer_shapes(model: Any, notes: list[str]) -> Any:
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - inference is a help, not a condition
        notes.append(f"shape inference failed ({_short(exc)}); the model is kept without it")
        return model


def _short(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
