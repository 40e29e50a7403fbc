"""Edits of the parsed network a spec asks for: per-layer precision rules (layer_precisions: ILayer.precision
and ILayer.set_output_type, enforced by the precision_constraints builder flag that options.configure sets)
and the I/O tensors' types and formats (io_formats: ITensor.dtype and ITensor.allowed_formats).

A rule is an fnmatch pattern (case-sensitive) over TensorRT's layer names -- the ONNX node names, as the
parser names its layers -- and the first rule that matches a layer applies to it. A pattern with a wildcard
skips the layers that do not compute floating-point values, as trtexec's `*` does: a layer whose precision
or whose output is an integer or boolean type, or whose first input is a shape tensor. A rule that applies
to no layer is an error (a misspelt name must not build an engine that ignores it).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..common import RunnerError
from .describe import member_name
from .options import DATA_TYPES, TENSOR_FORMATS

NOT_FLOAT = ("INT32", "INT64", "BOOL", "UINT8")  # DataType members of layers a wildcard leaves alone
SHOWN_NAMES = 12  # layer or tensor names an error lists
RECORDED_NAMES = 100  # matched layer names a rule's record keeps


def data_type(trt, name: str):
    """The DataType member of a spec type name (options.check_options has checked it exists)."""
    return getattr(trt.DataType, DATA_TYPES[name][0])


# ---------------------------------------------------------------------------------------------------------
# Layer rules
# ---------------------------------------------------------------------------------------------------------
def apply_layer_precisions(trt, network, spec: dict) -> list:
    """Apply every rule to the layers it takes; one record per rule: pattern, precision, output_types,
    layers (how many it set), names (up to RECORDED_NAMES of them), skipped (non-float layers it matched)."""
    rules = spec["layer_precisions"]
    if not rules:
        return []
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    taken: list = [[] for _ in rules]
    skipped, shadowed = [0] * len(rules), [0] * len(rules)
    for layer in layers:
        matching = [k for k, rule in enumerate(rules) if fnmatchcase(str(layer.name), rule["pattern"])]
        if not matching:
            continue
        first = matching[0]
        for k in matching[1:]:
            shadowed[k] += 1
        if has_wildcard(rules[first]["pattern"]) and not computes_floats(layer):
            skipped[first] += 1
            continue
        apply_rule(trt, layer, rules[first])
        taken[first].append(str(layer.name))
    check_every_rule_applies(rules, taken, skipped, shadowed, layers)
    return [{"pattern": rule["pattern"], "precision": rule["precision"], "output_types": list(rule["output_types"]),
             "layers": len(names), "names": names[:RECORDED_NAMES], "skipped": skipped[k]}
            for k, (rule, names) in enumerate(zip(rules, taken))]


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def computes_floats(layer) -> bool:
    """Whether a wildcard rule may set this layer (trtexec's heuristics for `*`)."""
    if member_name(getattr(layer, "precision", "")) in NOT_FLOAT:
        return False
    if int(getattr(layer, "num_inputs", 0) or 0) >= 1:
        first = layer.get_input(0)
        if first is not None and bool(getattr(first, "is_shape_tensor", False)):
            return False
    outputs = [layer.get_output(i) for i in range(int(layer.num_outputs))]
    return not any(member_name(getattr(t, "dtype", "")) in NOT_FLOAT for t in outputs if t is not None)


def apply_rule(trt, layer, rule: dict) -> None:
    if rule["precision"]:
        layer.precision = data_type(trt, rule["precision"])
    types = list(rule["output_types"])
    if not types:
        return
    count = int(layer.num_outputs)
    if len(types) not in (1, count):
        raise RunnerError("invalid_input", f"layer rule {rule['pattern']!r}: layer {layer.name!r} has {count} "
                                           f"output(s) but the rule gives {len(types)} output types "
                                           f"({'+'.join(types)}); give one type for every output or one per output")
    for index in range(count):
        layer.set_output_type(index, data_type(trt, types[0] if len(types) == 1 else types[index]))


def check_every_rule_applies(rules: list, taken: list, skipped: list, shadowed: list, layers: list) -> None:
    problems = []
    for k, rule in enumerate(rules):
        if taken[k]:
            continue
        if skipped[k]:
            why = f"matches only layers that do not compute floating-point values ({skipped[k]} skipped)"
        elif shadowed[k]:
            why = f"matches only layers an earlier rule already takes ({shadowed[k]}; the first match wins)"
        else:
            why = "matches no layer"
        problems.append(f"layer rule {rule['pattern']!r} {why}")
    if problems:
        names = [str(layer.name) for layer in layers]
        shown = ", ".join(names[:SHOWN_NAMES]) + (f", ... ({len(names)} layers)" if len(names) > SHOWN_NAMES else "")
        raise RunnerError("invalid_input", "; ".join(problems) + f". The network's layers: {shown or 'none'}",
                          hint="patterns are fnmatch patterns (*, ?, [...]) over TensorRT's layer names, which "
                               "are the ONNX node names (e.g. '/backbone/conv1/Conv' or '*/conv1/*')")


# ---------------------------------------------------------------------------------------------------------
# I/O formats
# ---------------------------------------------------------------------------------------------------------
def network_io(network) -> tuple[list, list]:
    """(inputs, outputs): the network's I/O tensors."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    return inputs, outputs


def apply_io_formats(trt, network, spec: dict) -> None:
    """Set each named I/O tensor's type and allowed formats (a bitmask of 1 << TensorFormat members)."""
    wanted = spec["io_formats"]
    if not wanted:
        return
    inputs, outputs = network_io(network)
    tensors = {str(t.name): t for t in (*inputs, *outputs)}
    unknown = [name for name in wanted if name not in tensors]
    if unknown:
        raise RunnerError("invalid_input", f"io_formats names {', '.join(map(repr, unknown))}, which the network "
                                           f"has no input or output of; its inputs: {listed(inputs)}; its outputs: "
                                           f"{listed(outputs)}")
    for name, io in wanted.items():
        tensor = tensors[name]
        tensor.dtype = data_type(trt, io["dtype"])
        tensor.allowed_formats = format_mask(trt, io["formats"])


def format_mask(trt, names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << int(getattr(trt.TensorFormat, TENSOR_FORMATS[name][0]))
    return mask


def listed(tensors: list) -> str:
    names = [str(t.name) for t in tensors]
    return ", ".join(names[:SHOWN_NAMES]) + (f", ... ({len(names)})" if len(names) > SHOWN_NAMES else "") or "none"
