"""Reading ONNX models: the one place that inspects a model's protobuf, for the SDK (which files make up
a model), the API (model intake: checker, inputs and outputs) and the worker (validation inputs).

Public onnx API only; `onnx` is imported inside the functions, so the SDK imports this module with
onnx absent (`available()` says whether it can be used).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from registry.errors import InvalidModel


@dataclass(frozen=True)
class TensorDesc:
    """A graph input or output as declared in the model."""

    name: str
    elem_type: int  # onnx.TensorProto.DataType; 0 when unknown
    dtype: str  # numpy's name ("float32"), else ONNX's in lower case ("bfloat16"), else "unknown"
    is_tensor: bool  # False for sequences, maps and optionals
    dims: tuple[int | None, ...] | None  # None per dynamic dimension; None when the rank is unknown
    dim_names: tuple[str | None, ...] = ()  # the symbolic name of each dynamic dimension, if any

    def api_shape(self) -> list[int | str | None]:
        """int for a fixed dimension, the symbol for a named dynamic one, None otherwise."""
        if self.dims is None:
            return []
        return [d if d is not None else n for d, n in zip(self.dims, self.dim_names)]

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.api_shape()}


def available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def load(path: str | os.PathLike[str], name: str | None = None) -> Any:
    """The ModelProto without its external data; InvalidModel when the file is no ONNX model."""
    import onnx

    name = name or str(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - DecodeError, ValueError, RuntimeError: not a ModelProto
        raise InvalidModel(f"{name} is not an ONNX model ({exc.__class__.__name__}: {exc}); "
                           "upload a .onnx file") from None
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModel(f"{name} parsed as an empty ONNX model (no nodes, no outputs); is it really a .onnx file?")
    return proto


def check(path: str | os.PathLike[str], name: str) -> None:
    """onnx.checker by path (external data beside it); InvalidModel with the checker's first line. Nodes of ops
    that ONNX does not define, in its own domain, are TensorRT plugin ops (`plugin_ops`): the checker, which
    refuses them, is shown them in a domain of their own (`_check_as_plugins`) and checks everything else."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        if "No Op registered for" not in str(exc) or not _check_as_plugins(Path(path), name):
            raise _checker_failure(name, exc) from None


def _checker_failure(name: str, exc: Exception) -> InvalidModel:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return InvalidModel(f"{name} fails the ONNX checker: {first}", details={"checker": str(exc)[:4000]})


# bytes per element of the types whose raw_data size check_referring checks itself (onnx's checker refuses a raw_data
# too small for its tensor's shape and type); a referred tensor of another type has the file checked instead
ELEMENT_BYTES = {"FLOAT": 4, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "INT32": 4, "INT64": 8, "BOOL": 1,
                 "FLOAT16": 2, "DOUBLE": 8, "UINT32": 4, "UINT64": 8, "COMPLEX64": 8, "COMPLEX128": 16,
                 "BFLOAT16": 2, "FLOAT8E4M3FN": 1, "FLOAT8E4M3FNUZ": 1, "FLOAT8E5M2": 1, "FLOAT8E5M2FNUZ": 1}


def check_referring(path: Path, name: str, referring: bytes) -> None:
    """onnx's checker over a large model without reading its weights: shown `referring` (registry.intake.skeleton
    with refer=True: each large raw_data an external-data reference to its bytes in this file) from a copy beside
    the file, the referred sizes then checked here as the checker checks raw_data's; the file itself is checked
    when a referred tensor's type has no fixed element size."""
    import onnx

    try:
        proto = onnx.load_from_string(referring)
    except Exception:  # noqa: BLE001 - the file itself says what is wrong
        return check(path, name)
    sizes = {getattr(onnx.TensorProto, k): v for k, v in ELEMENT_BYTES.items() if hasattr(onnx.TensorProto, k)}
    referred = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                and {e.key: e.value for e in t.external_data}.get("location") == path.name]
    if any(t.data_type not in sizes for t in referred):
        return check(path, name)
    copy = path.with_name(f".check-{os.getpid()}-{path.name}")
    try:
        copy.write_bytes(referring)
    except OSError:  # e.g. a file name at the length limit
        return check(path, name)
    try:
        check(copy, name)
    finally:
        copy.unlink(missing_ok=True)
    for tensor in referred:
        have = int({e.key: e.value for e in tensor.external_data}["length"])
        need = sizes[tensor.data_type] * math.prod(tensor.dims)
        if have < need:
            raise InvalidModel(f"{name} fails the ONNX checker: TensorProto (tensor name: {tensor.name}) raw_data size "
                               f"({have} bytes) is too small for the declared shape and type ({need} bytes required).")
    return None


PLUGIN_DOMAIN = "trtfarm.plugin"  # where the checker is shown the plugin ops: it checks no node of a foreign domain


def _check_as_plugins(path: Path, name: str) -> bool:
    """Whether the model has plugin ops; then the checker runs on a copy beside it (its external data paths
    resolve alike) that moves them to PLUGIN_DOMAIN, and its complaint about the rest is InvalidModel."""
    import onnx

    proto = plugins_apart(load(path, name))
    if proto is None:
        return False
    copy = path.with_name(f".plugin-check-{os.getpid()}-{path.name}")
    try:
        copy.write_bytes(proto.SerializeToString())
        onnx.checker.check_model(str(copy))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise _checker_failure(name, exc) from None
    finally:
        copy.unlink(missing_ok=True)
    return True


def plugins_apart(proto: Any) -> Any | None:
    """The model (changed in place) with its plugin ops moved to PLUGIN_DOMAIN, as the checker is shown them;
    None when it has none."""
    import onnx

    ops = set(plugin_ops(proto))
    if not ops:
        return None
    for node in nodes(proto):
        if node.domain in ("", "ai.onnx") and node.op_type in ops:
            node.domain = PLUGIN_DOMAIN
    proto.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return proto


def nodes(proto: Any) -> Iterator[Any]:
    """Every node of the graph, of its subgraphs and of the model's functions."""

    def walk(found: Any) -> Iterator[Any]:
        for node in found:
            yield node
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from walk(attr.g.node)
                for sub in attr.graphs:
                    yield from walk(sub.node)

    yield from walk(proto.graph.node)
    for function in proto.functions:
        yield from walk(function.node)


def plugin_ops(proto: Any) -> list[str]:
    """The op types of the default domain that ONNX does not define (in any opset) nor the model as a function:
    what TensorRT's ONNX parser builds as the plugin of that name (EfficientNMS_TRT), and what neither the ONNX
    checker nor ONNX Runtime can run."""
    import onnx

    functions = {f.name for f in proto.functions if f.domain in ("", "ai.onnx")}
    return sorted({node.op_type for node in nodes(proto) if node.domain in ("", "ai.onnx")
                   and node.op_type not in functions and not onnx.defs.has(node.op_type)})


def tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse initializers, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from tensors(attr.g)
            for sub in attr.graphs:
                yield from tensors(sub)


def external_files(proto: Any, main: str) -> list[str]:
    """The external-data files the model at upload path `main` refers to, as '/' paths relative to the
    upload's root, in first-use order. InvalidModel for a location outside the model's own folder."""
    from onnx.external_data_helper import uses_external_data

    base = PurePosixPath(main).parent
    found: dict[str, None] = {}
    for tensor in tensors(proto.graph):
        if uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            found[confined(location, base, tensor.name)] = None
    return list(found)


def confined(location: str, base: PurePosixPath, tensor: str) -> str:
    """`base/location` normalised, refused when it could leave the model's folder."""
    loc = PurePosixPath(location.replace("\\", "/"))
    if not location or loc.is_absolute() or ".." in loc.parts or location.startswith("~"):
        raise InvalidModel(
            f"tensor {tensor!r} points at external data {location!r} outside the upload; "
            "external data must be a relative path inside the model's own folder, without '..'"
        )
    return os.path.normpath(str(base / loc)).replace(os.sep, "/")


def graph_io(proto: Any, *, inputs: bool) -> list[TensorDesc]:
    """The graph's inputs (initializers excluded) or outputs."""
    initializers = {i.name for i in proto.graph.initializer}
    values = proto.graph.input if inputs else proto.graph.output
    return [describe(v) for v in values if v.name not in initializers]


def initializer_inputs(proto: Any) -> list[str]:
    """Graph inputs that have an initializer: IR 3 models list every weight there (IR >= 4 allows it for
    weights a caller may override). As inputs they are optional: ONNX Runtime uses the initializer."""
    initializers = {i.name for i in proto.graph.initializer}
    return [v.name for v in proto.graph.input if v.name in initializers]


def without_initializer_inputs(path: Path, dest: Path) -> list[str]:
    """Write the model at `path` to `dest` (beside it: external data stays where it is referenced) without
    the graph inputs that have an initializer, the IR >= 4 form; return their names ([]: nothing written).
    Toolchains that save an optimized model would otherwise make every such weight a required input."""
    import onnx

    proto = load(path)
    names = set(initializer_inputs(proto))
    if not names:
        return []
    kept = [v for v in proto.graph.input if v.name not in names]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    proto.ir_version = max(int(proto.ir_version), 4)
    onnx.save_model(proto, str(dest))
    return sorted(names)


def describe(value_info: Any) -> TensorDesc:
    """A graph input or output. A dimension is dynamic when it has no value, or a value below 1 (exporters
    write -1, or 0, for "any"): the same as a symbolic or unnamed one everywhere in the farm."""
    if not value_info.type.HasField("tensor_type"):
        return TensorDesc(value_info.name, 0, "unknown", False, None)
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return TensorDesc(value_info.name, tensor.elem_type, dtype_name(tensor.elem_type), True, None)
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    names = tuple(d.dim_param if d.HasField("dim_param") and d.dim_param else None for d in tensor.shape.dim)
    return TensorDesc(value_info.name, tensor.elem_type, dtype_name(tensor.elem_type), True, dims, names)


def dtype_name(elem_type: int) -> str:
    from onnx import TensorProto, helper

    if not elem_type:
        return "unknown"
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):  # bfloat16, float8 and friends have no plain numpy dtype
        return TensorProto.DataType.Name(elem_type).lower()


def numpy_dtype(elem_type: int) -> Any:
    """The numpy dtype of an ONNX element type (bfloat16 and float8 through ml_dtypes, as onnx maps them)."""
    import numpy as np
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def summary(path: Path, main: str, outline: bytes | None = None, referring: bytes | None = None) -> dict[str, Any]:
    """What the farm records of an uploaded model (run by registry.intake in a bounded child process):
    its external-data files, inputs, outputs, opsets; InvalidModel when it is no valid ONNX model.
    `outline`: the model's bytes less its initializers' data (registry.intake.skeleton), parsed instead of
    the file when it parses; `referring`: what the checker is shown instead of the file (check_referring)."""
    proto = None
    if outline is not None:
        import onnx

        try:
            proto = onnx.load_from_string(outline)
        except Exception:  # noqa: BLE001 - the file itself says what is wrong
            proto = None
    if proto is None or (not proto.graph.node and not proto.graph.output):
        proto, referring = load(path, main), None
    external = external_files(proto, main)
    root = path.parents[len(PurePosixPath(main).parts) - 1]  # the upload's folder
    missing = [f for f in external if not (root / f).is_file()]
    if missing:  # before the checker, whose message would be about a temp path
        raise InvalidModel(f"{main} references external data not in the upload: {', '.join(missing)}; "
                           "send each as an extra file with its relative path")
    if referring is not None:
        check_referring(path, main, referring)
    else:
        check(path, main)
    return {
        "external_files": external,
        "inputs": [d.to_api() for d in graph_io(proto, inputs=True)],
        "outputs": [d.to_api() for d in graph_io(proto, inputs=False)],
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        "ir_version": int(proto.ir_version),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "op_types": op_types(proto),
    }


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")  # the default domain's: what TensorRT reads as explicit INT8


def op_types(proto: Any) -> dict[str, int]:
    """Node count per op type over the graph, its subgraphs and the model's functions: "Conv" for the default
    domain (ai.onnx), "domain:Op" for others (e.g. "com.microsoft:QuantizeLinear")."""
    counts: dict[str, int] = {}

    def walk(nodes: Any) -> None:
        for node in nodes:
            name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            counts[name] = counts.get(name, 0) + 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g.node)
                for sub in attr.graphs:
                    walk(sub.node)

    walk(proto.graph.node)
    for function in proto.functions:
        walk(function.node)
    return dict(sorted(counts.items()))


def has_qdq(ops: dict[str, int] | None) -> bool | None:
    """Whether an op-type summary holds Q/DQ nodes (explicit quantization); None when it is unknown."""
    if ops is None:
        return None
    return any(ops.get(name) for name in QDQ_OPS)


def local_layout(path: Path) -> list[str]:
    """The external-data files of the .onnx at `path` relative to its folder ([] without onnx)."""
    if not available():
        return []
    return external_files(load(path, repr(str(path))), path.name)
