"""Small ONNX models built with onnx.helper, shared by tests (imports onnx and numpy lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPSET = 17
IR_VERSION = 8  # old enough for TensorRT 8.6's parser and every ONNX Runtime the farm runs


def _finish(graph: Any) -> Any:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="trtfarm-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def convnet_proto(channels: int = 8, layers: int = 2, dynamic_batch: bool = True, size: int = 16,
                  classes: int = 10, seed: int = 0) -> Any:
    """input [N,3,size,size] -> (Conv 3x3 pad 1 + Relu) * layers -> Flatten -> Gemm -> logits [N,classes]."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    batch: int | str = "N" if dynamic_batch else 1
    inits, nodes, prev, cin = [], [], "input", 3
    for i in range(layers):
        w = (rng.standard_normal((channels, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        b = (rng.standard_normal(channels) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.w"), numpy_helper.from_array(b, f"conv{i}.b")]
        nodes += [
            helper.make_node("Conv", [prev, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], pads=[1, 1, 1, 1],
                             kernel_shape=[3, 3], name=f"conv{i}"),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"),
        ]
        prev, cin = f"relu{i}", channels
    features = cin * size * size
    w = (rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
    inits += [numpy_helper.from_array(w, "fc.w"), numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b")]
    nodes += [
        helper.make_node("Flatten", [prev], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    return _finish(graph)


def convnet(path: str | Path, channels: int = 8, layers: int = 2, dynamic_batch: bool = True, size: int = 16,
            classes: int = 10, seed: int = 0) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(convnet_proto(channels, layers, dynamic_batch, size, classes, seed), str(path))
    return path


def ir3_convnet(path: str | Path, channels: int = 4, seed: int = 0) -> Path:
    """The IR 3 form older model zoos use: opset 8, every initializer also a graph input, and a
    BatchNormalization after the convolution (ONNX Runtime folds it into the Conv's weights, dropping its
    four initializers but not their graph inputs, which become required inputs of a saved model)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    arrays = {"conv.w": rng.standard_normal((channels, 3, 3, 3)) / np.sqrt(27),
              "bn.scale": rng.uniform(0.5, 1.5, channels), "bn.b": rng.standard_normal(channels) * 0.1,
              "bn.mean": rng.standard_normal(channels) * 0.1, "bn.var": rng.uniform(0.5, 1.5, channels),
              "fc.w": rng.standard_normal((10, channels * 256)) / 32, "fc.b": np.zeros(10)}
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    nodes = [helper.make_node("Conv", ["input", "conv.w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.b", "bn.mean", "bn.var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1)]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16]),
              *(helper.make_tensor_value_info(i.name, TensorProto.FLOAT, arrays[i.name].shape) for i in inits)]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph(nodes, "zoo", inputs, [logits], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], producer_name="trtfarm-tests")
    model.ir_version = 3
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def fully_convolutional(path: str | Path, batch: int | str = -1, spatial: int | str = "?", channels: int = 4,
                        seed: int = 0) -> Path:
    """input (batch, 3, spatial, spatial) -> Conv 3x3 + Relu -> GlobalAveragePool -> (batch, C, 1, 1).
    An int batch or spatial below 1 is written as that dim_value (exporters' -1 or 0 for "any"); "?" leaves
    the dimension without a name or value; any other string is a symbolic name."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((channels, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["output"])],
        "fcn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, spatial, spatial])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, channels, 1, 1])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = _finish(graph)
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param == "?":
                dim.ClearField("dim_param")  # unnamed and valueless: "any", with no symbol
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def expanding_model(path: str | Path, width: int = 4096) -> Path:
    """x [N, 1] + Expand(1.0, [1, width]) -> y [N, width]: a few hundred bytes of model whose Expand of
    constants is folded into a width-element initializer by ONNX Runtime's optimizer (the engine grows)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1.0], np.float32), "one"),
             numpy_helper.from_array(np.array([1, width], np.int64), "wide")]
    graph = helper.make_graph(
        [helper.make_node("Expand", ["one", "wide"], ["ones"]), helper.make_node("Add", ["x", "ones"], ["y"])],
        "expanding", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])], initializer=inits)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_finish(graph), str(path))
    return path


def unbuildable_model(path: str | Path) -> Path:
    """x -> example.custom::Nope -> y: a valid ONNX file (unknown domains pass the checker) that no
    toolchain can build: a build that fails for certain."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Nope", ["x"], ["y"], domain="example.custom")], "nope",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("example.custom", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="trtfarm-tests")
    model.ir_version = IR_VERSION
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def external_data_model(directory: str | Path, name: str = "model.onnx") -> Path:
    """A convnet whose every initializer lives in `weights.bin` beside `name`."""
    import onnx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    onnx.save_model(convnet_proto(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    return path


def matmul_model(path: str | Path, dynamic_batch: bool = True, k: int = 8, n: int = 4) -> Path:
    """x [N,k] -> MatMul W [k,n] -> Add b -> y [N,n]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    batch: int | str = "N" if dynamic_batch else 2
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n])],
        initializer=[numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "W"),
                     numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")],
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_finish(graph), str(path))
    return path


def protobuf_varint(n: int) -> bytes:
    """A protobuf varint: 7 bits a byte, low bits first."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def protobuf_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return protobuf_varint(number << 3 | 2) + protobuf_varint(len(payload)) + payload


def protobuf_bomb(nodes: int = 4 << 20) -> bytes:
    """A ModelProto (ir_version 8) whose graph (field 7) holds `nodes` empty NodeProtos (field 1): 2 bytes a
    node on disk, hundreds once parsed. The default is the 8 MiB bomb of issue 7."""
    return b"\x08\x08" + protobuf_field(7, protobuf_field(1, b"") * nodes)


def sanitizable_proto() -> Any:
    """a ['?', 4] -> Add(a, k) -> ya; b ['?', 4] -> Mul(b, k) -> yb, with k = Reshape(w * Constant(0.5), [1, 4]):
    two inputs whose first dims are both '?' (one symbol to TensorRT) and three nodes of constants only
    (a Constant, a Mul, a Reshape) that constant folding turns into one initializer."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    half = numpy_helper.from_array(np.full(4, 0.5, np.float32), "half")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=half, name="c"),
         helper.make_node("Mul", ["w", "c"], ["wc"], name="scale"),
         helper.make_node("Reshape", ["wc", "row"], ["k"], name="row_of_k"),
         helper.make_node("Add", ["a", "k"], ["ya"], name="add"),
         helper.make_node("Mul", ["b", "k"], ["yb"], name="mul")],
        "sanitizable",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["?", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["?", 4])],
        [helper.make_tensor_value_info("ya", TensorProto.FLOAT, ["?", 4]),
         helper.make_tensor_value_info("yb", TensorProto.FLOAT, ["?", 4])],
        initializer=[numpy_helper.from_array(np.arange(1, 5, dtype=np.float32), "w"),
                     numpy_helper.from_array(np.array([1, 4], np.int64), "row")],
    )
    return _finish(graph)


def sanitizable_model(path: str | Path) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(sanitizable_proto(), str(path))
    return path


def opset6_broadcast_model(path: str | Path) -> Path:
    """x [2, 3] + b [3] with opset 6's `broadcast=1` attribute: TensorRT's parser refuses pre-opset-7
    broadcasting and ONNX Runtime has no Add(6) kernel; onnx's version converter makes it opset 7."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"], broadcast=1)], "opset6",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(np.array([1.0, -2.0, 0.5], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], producer_name="trtfarm-tests")
    model.ir_version = 4  # initializers that are no graph inputs (IR 3 would list b among them)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def qdq_convnet_proto(channels: int = 8, layers: int = 2, dynamic_batch: bool = True, size: int = 16,
                      classes: int = 10, seed: int = 0) -> Any:
    """convnet_proto's network (same weights) as quantization-aware-training exporters write it (opset 13):
    before each Conv, its activation input through QuantizeLinear -> DequantizeLinear with one scale (per
    tensor, int8, zero point 0: symmetric, as TensorRT takes it) and its float weights through QuantizeLinear ->
    DequantizeLinear with one scale per output channel (axis 0). The scales are max calibration over 64 random
    inputs in [-1, 1) (what the farm validates with), with 10% headroom; the final Gemm stays float."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    base = convnet_proto(channels, layers, dynamic_batch, size, classes, seed)
    weights = {i.name: numpy_helper.to_array(i) for i in base.graph.initializer}
    amax = _activation_amax(base, [n.input[0] for n in base.graph.node if n.op_type == "Conv"], size, seed)
    inits = list(base.graph.initializer) + [numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = []
    for node in base.graph.node:
        if node.op_type != "Conv":
            nodes.append(node)
            continue
        x, w, b = node.input
        inits.append(numpy_helper.from_array(np.array(amax[x] * 1.1 / 127, np.float32), f"{x}.scale"))
        w_scale = np.maximum(np.abs(weights[w]).reshape(len(weights[w]), -1).max(axis=1), 1e-8) / 127
        inits += [numpy_helper.from_array(w_scale.astype(np.float32), f"{w}.scale"),
                  numpy_helper.from_array(np.zeros(len(w_scale), np.int8), f"{w}.zp")]
        node_of = helper.make_node
        nodes += [node_of("QuantizeLinear", [x, f"{x}.scale", "zp"], [f"{x}.q"], name=f"{x}.quant"),
                  node_of("DequantizeLinear", [f"{x}.q", f"{x}.scale", "zp"], [f"{x}.dq"], name=f"{x}.dequant"),
                  node_of("QuantizeLinear", [w, f"{w}.scale", f"{w}.zp"], [f"{w}.q"], axis=0, name=f"{w}.quant"),
                  node_of("DequantizeLinear", [f"{w}.q", f"{w}.scale", f"{w}.zp"], [f"{w}.dq"], axis=0,
                          name=f"{w}.dequant"),
                  node_of("Conv", [f"{x}.dq", f"{w}.dq", b], list(node.output), name=node.name, pads=[1, 1, 1, 1],
                          kernel_shape=[3, 3])]
    batch: int | str = "N" if dynamic_batch else 1
    graph = helper.make_graph(
        nodes, "qdq_convnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="trtfarm-tests-qat")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _activation_amax(model: Any, names: list[str], size: int, seed: int) -> dict[str, float]:
    """max |value| of each named tensor of the float model over 64 random inputs in [-1, 1) (ONNX Runtime)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import helper

    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n != "input")
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed + 1).uniform(-1, 1, (64, 3, size, size)).astype(np.float32)
    batch = 64 if isinstance(session.get_inputs()[0].shape[0], str) else 1
    amax = {"input": float(np.abs(x).max())}
    outputs = [o.name for o in session.get_outputs()]
    for start in range(0, 64, batch):
        for name, value in zip(outputs, session.run(None, {"input": x[start:start + batch]})):
            amax[name] = max(amax.get(name, 0.0), float(np.abs(value).max()))
    return {n: amax[n] for n in names}


def qdq_convnet(path: str | Path, channels: int = 8, layers: int = 2, dynamic_batch: bool = True, size: int = 16,
                classes: int = 10, seed: int = 0) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(qdq_convnet_proto(channels, layers, dynamic_batch, size, classes, seed), str(path))
    return path


def calibration_set(path: str | Path, samples: int = 32, size: int = 16, seed: int = 0, name: str = "input",
                    compressed: bool = False) -> Path:
    """A calibration data set for convnet/qdq_convnet: `samples` images [3, size, size] uniform in [-1, 1)."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).uniform(-1, 1, (samples, 3, size, size)).astype(np.float32)
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **{name: data})
    return path


NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def efficient_nms_proto(batch: int | str = 1, boxes: int = 64, classes: int = 4, max_output_boxes: int = 16,
                        score_threshold: float = 0.25, iou_threshold: float = 0.5) -> Any:
    """One TensorRT EfficientNMS_TRT node (TensorRT's plugin/efficientNMSPlugin/README.md): in the default domain,
    which TensorRT's ONNX parser hands to the plugin registry's creator of that name (version 1), and which the
    ONNX checker and ONNX Runtime do not know. Standard NMS mode: boxes [B, N, 4] as corners (box_coding 0),
    scores [B, N, C] used as given (score_activation 0), no background class, per-class NMS; outputs
    num_detections [B, 1] int32, detection_boxes [B, K, 4], detection_scores [B, K], detection_classes [B, K]
    int32 with K = max_output_boxes (tests/gpu/nms_reference.py computes the same on the CPU)."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "EfficientNMS_TRT", ["boxes", "scores"], list(NMS_OUTPUTS), name="nms", domain="",
        score_threshold=float(score_threshold), iou_threshold=float(iou_threshold),
        max_output_boxes=int(max_output_boxes), background_class=-1, score_activation=0, box_coding=0)
    k = max_output_boxes
    graph = helper.make_graph(
        [node], "efficient_nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, boxes, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, boxes, classes])],
        [helper.make_tensor_value_info("num_detections", TensorProto.INT32, [batch, 1]),
         helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [batch, k, 4]),
         helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [batch, k]),
         helper.make_tensor_value_info("detection_classes", TensorProto.INT32, [batch, k])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="trtfarm-tests")
    model.ir_version = IR_VERSION
    return model  # no onnx.checker here: it refuses an op ONNX does not define (the farm's intake does not)


def efficient_nms_model(path: str | Path, batch: int | str = 1, boxes: int = 64, classes: int = 4,
                        max_output_boxes: int = 16, score_threshold: float = 0.25, iou_threshold: float = 0.5) -> Path:
    """efficient_nms_proto saved at `path` (`batch` a name for a dynamic batch)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(efficient_nms_proto(batch, boxes, classes, max_output_boxes, score_threshold, iou_threshold),
                    str(path))
    return path
