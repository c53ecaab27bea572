"""Parameters and MACs of an artifact another tool made, counted from its graph (ONNX or TFLite).

The counts follow :mod:`edgebench.models.cost`, so an external artifact sits on the same MACs axis as edgebench's
own variants: MACs are the multiply-accumulates of the convolutions (transposed included) and matrix products for
one sample, whatever their precision (an int8 ``QLinearConv`` or a QDQ ``Conv`` counts as its float twin would);
parameters are the elements of the constant weights and biases those layers (and normalisations, ``PRelu``) read,
and of the float constants of more than one element an ``Add`` or ``Mul`` reads (a bias or a per-channel scale on
its own: ConvNeXt's layer scale, a LayerNorm the TFLite converter writes as arithmetic), each tensor once however many
layers read it (a conv applied twice), not quantization scales, zero points or shape constants, nor the all-zero
bias the TFLite converter gives a layer that has none. Shapes come from ONNX's shape inference for one sample of
the experiment's images, else from one ONNX Runtime run on it; a graph sized by neither gives ``None``, never a
partial count.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from edgebench.errors import first_line
from edgebench.input_layout import channels_last

log = logging.getLogger(__name__)

#: ONNX ops whose listed inputs are weights or biases (not quantization parameters)
_ONNX_WEIGHT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1), "ConvInteger": (1,),
    "MatMulInteger": (0, 1), "QLinearConv": (3, 8), "QLinearMatMul": (0, 3), "BatchNormalization": (1, 2),
    "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2), "PRelu": (1,),
    # ONNX Runtime's own ops (com.microsoft), in graphs its quantizer or an offline optimization wrote
    "QGemm": (3, 6), "FusedConv": (1, 2), "FusedGemm": (1, 2), "FusedMatMul": (0, 1),
    "MatMulIntegerToFloat": (0, 1, 6), "DynamicQuantizeMatMul": (1, 4),
}
#: ops that pass a constant through to a weight input unchanged in size (QDQ weights, transposed weights)
_ONNX_PASS_THROUGH = {"DequantizeLinear", "Transpose", "Cast", "Identity", "Reshape"}
#: ONNX convolutions -> the index of their weight input
_ONNX_CONVS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1, "FusedConv": 1}
#: ONNX matrix products -> the index of their second operand
_ONNX_MATMULS = {"Gemm": 1, "FusedGemm": 1, "MatMul": 1, "FusedMatMul": 1, "MatMulInteger": 1,
                 "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1, "QLinearMatMul": 3, "QGemm": 3}
#: words in the name of an op that multiplies-accumulates: one of them outside the list above makes the MACs unknown
_MAC_WORDS = ("conv", "matmul", "gemm", "einsum", "attention", "lstm", "gru", "rnn")
#: ONNX element types of a float initializer (a bias is one; integer constants are shapes and indices)
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
#: TFLite ops whose inputs 1 (weights) and 2 (bias) are parameters
_TFLITE_LAYERS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
#: elementwise ops whose constant operands of more than one element are parameters (a bias, a per-channel scale)
_AFFINE_OPS = ("Add", "Mul")
_TFLITE_AFFINE_OPS = ("ADD", "MUL")


def graph_cost(path: Path, fmt: str, input_shape: tuple[int, ...]) -> dict[str, int | None]:
    """``{"params": ..., "macs": ...}`` of the artifact at ``path`` (``fmt``: onnx, tflite or openvino: an IR's
    ``.xml``) for one sample of ``input_shape`` (C, H, W); a count that cannot be made is ``None``."""
    if fmt == "onnx":
        return _onnx_cost(path, input_shape)
    if fmt == "tflite":
        return _tflite_cost(path)
    if fmt == "openvino":
        from edgebench.models.openvino_cost import openvino_cost

        return openvino_cost(path, input_shape)
    return {"params": None, "macs": None}


def _onnx_cost(path: Path, input_shape: tuple[int, ...]) -> dict[str, int | None]:
    import onnx

    model = onnx.load(path)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    feeds = [i for i in graph.input if i.name not in initializers]
    batch = 1
    for feed in feeds[:1]:  # the experiment's images, so every later shape is concrete; a fixed batch is kept
        dims = feed.type.tensor_type.shape.dim
        batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1
        image_dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims[1:]]
        if channels_last(image_dims, input_shape):  # tf2onnx's ONNX of a Keras model takes NHWC
            input_shape = (*input_shape[1:], input_shape[0])
        for dim, size in zip(dims, (batch, *input_shape)):
            dim.Clear()
            dim.dim_value = size
    try:
        graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception as exc:  # a graph onnx cannot infer still has its parameters
        log.debug("%s: onnx shape inference failed (%s); counting from the shapes the graph declares", path,
                  first_line(exc))
        graph = model.graph
    shapes = {v.name: _dims(v) for v in (*graph.input, *graph.value_info, *graph.output)}
    shapes.update({name: list(init.dims) for name, init in initializers.items()})
    unknown = [name for node in graph.node if node.op_type in _ONNX_CONVS or node.op_type in _ONNX_MATMULS
               for name in (node.input[0], node.output[0]) if shapes.get(name) is None]
    if unknown and len(feeds) == 1:
        shapes.update(shapes_from_a_run(model, feeds[0], unknown))
    producers = {out: node for node in graph.node for out in node.output}

    def constant(name: str) -> str | None:
        """The initializer a weight input comes from, through DequantizeLinear and the like."""
        while name not in initializers:
            node = producers.get(name)
            if node is None or node.op_type not in _ONNX_PASS_THROUGH or not node.input:
                return None
            name = node.input[0]
        return name

    weights = {constant(node.input[i]) for node in graph.node
               for i in _ONNX_WEIGHT_INPUTS.get(node.op_type, ()) if i < len(node.input) and node.input[i]}
    # a bias added or a scale multiplied on its own (ONNX Runtime's dynamic quantizer moves each Gemm's bias into an
    # Add; a layer scale is a Mul); scalars are constants of an op (an epsilon, a factor), not parameters
    weights |= {name for node in graph.node if node.op_type in _AFFINE_OPS for name in map(constant, node.input)
                if name is not None and math.prod(initializers[name].dims) > 1
                and initializers[name].data_type in _FLOAT_TYPES}  # not the dynamo exporter's index arithmetic
    params = sum(math.prod(initializers[name].dims) for name in weights - {None})
    macs: int | None = 0
    for node in graph.node:
        if node.op_type not in _ONNX_CONVS and node.op_type not in _ONNX_MATMULS:
            if any(word in node.op_type.lower() for word in _MAC_WORDS):  # never a partial count
                macs = None
                break
            continue
        node_macs = _onnx_node_macs(node, shapes)
        if node_macs is None:
            macs = None
            break
        macs += node_macs
    return {"params": params, "macs": None if macs is None else macs // batch}


def shapes_from_a_run(model: Any, feed: Any, names: list[str]) -> dict[str, list[int]]:
    """The shapes of ``names`` from one ONNX Runtime run on a zero input, where ONNX's shape inference stops: at
    ONNX Runtime's own ops (a QOperator graph's ``QLinearAdd``), at a float16 converter's casts, at the dynamo
    exporter's index arithmetic. A graph ONNX Runtime cannot run gives no shapes (and so no MACs)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    listed = {output.name for output in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in dict.fromkeys(names) if name not in listed)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keeps every listed tensor
    options.log_severity_level = 3
    tensor = feed.type.tensor_type
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        image = np.zeros([d.dim_value for d in tensor.shape.dim], onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        outputs = [output.name for output in session.get_outputs()]
        values = session.run(outputs, {feed.name: image})
    except Exception as exc:  # the graph's measurement names what is wrong with it; here it has no MACs
        log.debug("ONNX Runtime cannot run the graph to read its tensor shapes (%s)", first_line(exc))
        return {}
    return {name: list(value.shape) for name, value in zip(outputs, values)}


def _onnx_node_macs(node: Any, shapes: dict[str, list[int] | None]) -> int | None:
    """MACs of one conv or matmul node for the whole batch; None where a shape it needs is unknown."""
    out = shapes.get(node.output[0])
    first = shapes.get(node.input[0])
    if node.op_type in _ONNX_CONVS:  # every weight meets every output position (every input one if transposed)
        weight = shapes.get(node.input[_ONNX_CONVS[node.op_type]])
        positions = first if node.op_type == "ConvTranspose" else out
        return None if weight is None or positions is None else math.prod(positions) * math.prod(weight[1:])
    # a matrix product: each output element is a dot product of K terms. ONNX infers no output shape for ONNX
    # Runtime's own ops (QGemm...), so without one the output columns come from the second operand.
    second = shapes.get(node.input[_ONNX_MATMULS[node.op_type]])
    transposed = {a.name: a.i for a in node.attribute}
    if first is None or not first:
        return None
    k = first[-2] if transposed.get("transA") and len(first) > 1 else first[-1]
    if out is not None:
        return math.prod(out) * k
    if second is None or len(second) < 2:
        return None
    return math.prod(first) * (second[-2] if transposed.get("transB") else second[-1])


def _dims(value: Any) -> list[int] | None:
    """A value's dims when every one is known."""
    dims = value.type.tensor_type.shape.dim
    if not value.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def _tflite_cost(path: Path) -> dict[str, int | None]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    every = interpreter._get_ops_details()
    ops = [op for op in every if op["op_name"] in _TFLITE_LAYERS]
    unknown = any(any(w in op["op_name"].lower() for w in (*_MAC_WORDS, "fully")) for op in every
                  if op["op_name"] not in _TFLITE_LAYERS)  # CONV_3D, BATCH_MATMUL...: MACs not counted, not partial
    # fp16 and sparse weights reach their layer through a DEQUANTIZE / DENSIFY op: count the stored constant
    stored = {op["outputs"][0]: op["inputs"][0] for op in every if op["op_name"] in ("DEQUANTIZE", "DENSIFY")}
    computed = {out for op in every if op["op_name"] not in ("DEQUANTIZE", "DENSIFY") for out in op["outputs"]}
    computed |= {d["index"] for d in interpreter.get_input_details()}
    counted: set[int] = set()  # tensor indices: a conv applied twice reads one weight tensor
    macs = 0
    for op in ops:
        inputs = op["inputs"]
        # TRANSPOSE_CONV reads (output shape, weights, input, bias); the others (input, weights, bias)
        weight_at, bias_at = (1, 3) if op["op_name"] == "TRANSPOSE_CONV" else (1, 2)
        counted.add(stored.get(inputs[weight_at], inputs[weight_at]))
        weight = tensors[stored.get(inputs[weight_at], inputs[weight_at])]["shape"]
        if bias_at < len(inputs) and inputs[bias_at] >= 0:
            bias = stored.get(inputs[bias_at], inputs[bias_at])
            if not _all_zero(interpreter, bias):  # the converter gives a bias-free layer an all-zero bias
                counted.add(bias)
        if op["op_name"] == "TRANSPOSE_CONV":  # weights (O, kh, kw, I): each input element meets O x kh x kw
            macs += math.prod(tensors[inputs[2]]["shape"][1:]) * math.prod(weight[:3])
            continue
        out = tensors[op["outputs"][0]]["shape"]  # CONV_2D (O, kh, kw, I), DEPTHWISE (1, kh, kw, C), FC (O, I)
        per_output = math.prod(weight[1:3]) if op["op_name"] == "DEPTHWISE_CONV_2D" else math.prod(weight[1:])
        macs += math.prod(out[1:]) * per_output
    for op in every:  # a per-channel scale or bias of its own (a layer scale, a LayerNorm's weight and bias)
        if op["op_name"] in _TFLITE_AFFINE_OPS:
            for index in (stored.get(i, i) for i in op["inputs"] if i >= 0):
                tensor = tensors[index]
                if index not in computed and math.prod(tensor["shape"]) > 1 and _holds_values(tensor):
                    counted.add(index)
    params = sum(int(math.prod(tensors[index]["shape"])) for index in counted)
    return {"params": params, "macs": None if unknown else int(macs)}


def _holds_values(tensor: dict[str, Any]) -> bool:
    """Whether a TFLite tensor's elements are numbers of the model (float, or quantized with a scale), not integer
    indices or shapes."""
    import numpy as np

    return np.issubdtype(tensor["dtype"], np.floating) or bool(tensor["quantization"][0])


def _all_zero(interpreter: Any, index: int) -> bool:
    """Whether a TFLite constant tensor holds only zeros (False where its values cannot be read)."""
    import numpy as np

    try:
        return not np.any(interpreter.get_tensor(index))
    except ValueError:  # a tensor without data
        return False
