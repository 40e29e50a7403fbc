"""The network: creation flags, the ONNX parser, its inputs, optimization profiles, and dimensions that
share a symbolic name (TensorRT makes them one symbol)."""

from __future__ import annotations

from pathlib import Path

from ..common import RunnerError
from .options import check_options
from .runtime import version_tuple

SHARED_SYMBOL_HINT = ("TensorRT treats every dynamic dimension with the same symbolic name as one symbol: "
                      "dims named '{name}' in {where} must be equal in every profile")
GENERIC_SYMBOL_HINT = ("TensorRT treats every dynamic dimension with the same symbolic name as one symbol: "
                       "dims that share a name in the ONNX model must be equal in every profile")


def network_flags(trt, spec: dict) -> int:
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    explicit = getattr(creation, "EXPLICIT_BATCH", None)
    if explicit is not None and version_tuple(trt.__version__) < (10,):
        flags |= 1 << int(explicit)
    if spec["strongly_typed"]:
        flags |= 1 << int(check_options(trt, spec)["strongly_typed"])
    return flags


def parse_model(trt, network, logger, model_path: str):
    """Parse by path (external data beside the model works). The parser owns weights: keep it alive."""
    if not Path(model_path).is_file():
        raise RunnerError("invalid_input", f"model {model_path} does not exist")
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(model_path)):
        return parser
    errors = [parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)]
    detail = "; ".join(errors) or "; ".join(logger.errors) or "the parser reported no error"
    raise RunnerError("parse_error", f"TensorRT's ONNX parser rejected {Path(model_path).name}: {detail}")


def parser_error_text(error) -> str:
    where = [f"node {error.node()}"]
    for extra in ("node_name", "node_operator"):
        getter = getattr(error, extra, None)
        value = getter() if callable(getter) else None
        if value:
            where.append(f"{extra.replace('_', ' ')} {value}")
    return f"{error.desc()} ({', '.join(where)}, code {error.code()})"


def network_inputs(network) -> dict:
    """name -> {"shape": [...], "shape_tensor": bool, "tensor": ITensor} in network order."""
    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = {"shape": [int(d) for d in tensor.shape],
                               "shape_tensor": bool(getattr(tensor, "is_shape_tensor", False)),
                               "tensor": tensor}
    return inputs


def shape_text(shape) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape)


# ---------------------------------------------------------------------------------------------------------
# Optimization profiles
# ---------------------------------------------------------------------------------------------------------
def validate_profiles(spec: dict, inputs: dict) -> None:
    dynamic = {n: i["shape"] for n, i in inputs.items() if any(d < 0 for d in i["shape"]) or i["shape_tensor"]}
    if dynamic and not spec["profiles"]:
        listed = ", ".join(describe_input(n, inputs[n]) for n in dynamic)
        first = next(iter(dynamic))
        raise RunnerError("invalid_input",
                          f"the model has dynamic inputs ({listed}) and the spec gives no optimization profile",
                          hint=profile_hint(first, inputs[first]))
    for k, profile in enumerate(spec["profiles"]):
        validate_profile(k, profile, inputs, dynamic)


def describe_input(name: str, info: dict) -> str:
    if info["shape_tensor"]:
        return f"{name}: a shape tensor of {shape_text(info['shape'])} values"
    return f"{name} {shape_text(info['shape'])}"


def profile_hint(name: str, info: dict) -> str:
    shape = info["shape"]
    if info["shape_tensor"]:
        count = shape[0] if len(shape) == 1 and shape[0] > 0 else 1
        example = ",".join("x".join([str(v)] * count) for v in (1, 4, 8))
        return (f"{name} is a shape tensor: TensorRT needs the range of its values, not of its shape; give them "
                f"with --shape {name}:MIN,OPT,MAX, each the tensor's {shape_text(shape)} values "
                f"(e.g. --shape {name}:{example})")
    fill = [shape_text(shape).replace("?", str(n)) for n in (1, 4, 8)]
    return (f"give every dynamic input a shape range with --shape NAME:MIN,OPT,MAX, each a full shape with "
            f"every ? filled in (one shape alone means min = opt = max), e.g. for {name} {shape_text(shape)}: "
            f"--shape {name}:{','.join(fill)}")


def validate_profile(k: int, profile: dict, inputs: dict, dynamic: dict) -> None:
    strangers = sorted(set(profile) - set(inputs))
    if strangers:
        real = ", ".join(f"{n} {shape_text(i['shape'])}" for n, i in inputs.items())
        raise RunnerError("invalid_input", f"profile {k} names {', '.join(strangers)}, which the network lacks; "
                                           f"its inputs are: {real}")
    missing = [n for n in dynamic if n not in profile]
    if missing:
        raise RunnerError("invalid_input", f"profile {k} gives no shapes for dynamic input(s) "
                                           + ", ".join(f"{n} {shape_text(dynamic[n])}" for n in missing))
    for name, ranges in profile.items():
        if not inputs[name]["shape_tensor"]:
            check_range_fits(k, name, ranges, inputs[name]["shape"])


def check_range_fits(k: int, name: str, ranges: dict, shape: list) -> None:
    for which in ("min", "opt", "max"):
        given = list(ranges[which])
        if len(given) != len(shape):
            raise RunnerError("invalid_input", f"profile {k}, input {name}: {which} {shape_text(given)} has rank "
                                               f"{len(given)} but the input is {shape_text(shape)} (rank {len(shape)})")
        for axis, (want, got) in enumerate(zip(shape, given)):
            if want >= 0 and want != got:
                raise RunnerError("invalid_input", f"profile {k}, input {name}: dimension {axis} is fixed at {want} "
                                                   f"in the model but {which} gives {got}")


def add_profiles(builder, config, spec: dict, inputs: dict) -> list:
    profiles = []
    for k, ranges in enumerate(spec["profiles"]):
        profile = builder.create_optimization_profile()
        for name, r in ranges.items():
            setter = profile.set_shape_input if inputs[name]["shape_tensor"] else profile.set_shape
            try:
                setter(name, tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
            except (RuntimeError, ValueError, TypeError) as exc:
                raise RunnerError("invalid_input", f"profile {k}, input {name}: TensorRT rejected "
                                                   f"min/opt/max {r['min']}/{r['opt']}/{r['max']}: {exc}") from None
        if config.add_optimization_profile(profile) < 0:
            raise RunnerError("invalid_input", f"TensorRT rejected optimization profile {k}: {ranges}")
        profiles.append(profile)
    return profiles


# ---------------------------------------------------------------------------------------------------------
# Dimensions that share a symbolic name
# ---------------------------------------------------------------------------------------------------------
def shared_symbols(inputs: dict, model_path: str) -> dict:
    """symbol -> [(input, axis), ...] for every dim_param used at least twice; {} when names are unknowable."""
    groups = symbols_from_network(inputs) or symbols_from_onnx(model_path)
    return {name: places for name, places in groups.items() if len(places) > 1}


def symbols_from_network(inputs: dict) -> dict:
    groups: dict = {}
    for name, info in inputs.items():
        getter = getattr(info["tensor"], "get_dimension_name", None)
        for axis, dim in enumerate(info["shape"]):
            symbol = getter(axis) if getter is not None and dim < 0 else None
            if symbol:
                groups.setdefault(symbol, []).append((name, axis))
    return groups


def symbols_from_onnx(model_path: str) -> dict:
    try:
        import onnx  # optional: only where the toolchain has it
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - absent package or unreadable model: names stay unknown
        return {}
    initializers = {t.name for t in model.graph.initializer}
    groups: dict = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                groups.setdefault(dim.dim_param, []).append((value.name, axis))
    return groups


def check_shared_symbols(spec: dict, groups: dict) -> None:
    for k, profile in enumerate(spec["profiles"]):
        for symbol, places in groups.items():
            sizes = {(inp, axis): tuple(profile[inp][w][axis] for w in ("min", "opt", "max"))
                     for inp, axis in places if inp in profile and axis < len(profile[inp]["min"])}
            if len(set(sizes.values())) > 1:
                where = symbol_places(places)
                detail = ", ".join(f"{inp}[{axis}] min/opt/max {'/'.join(map(str, s))}"
                                   for (inp, axis), s in sizes.items())
                raise RunnerError("invalid_input", f"profile {k}: dimensions named '{symbol}' differ ({detail})",
                                  hint=SHARED_SYMBOL_HINT.format(name=symbol, where=where))


def symbol_places(places) -> str:
    return ", ".join(f"{inp}[{axis}]" for inp, axis in places)
