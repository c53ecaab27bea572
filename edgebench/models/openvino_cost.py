"""Parameters and MACs of an OpenVINO IR (``model.xml`` + ``model.bin``, as NNCF's post-training quantization or
``ovc`` writes it), counted as :mod:`edgebench.models.graph_cost` counts an ONNX graph.

The IR is read with OpenVINO and reshaped to one image of the experiment's shape, so every shape is static. MACs
are those of its convolutions (grouped and transposed included) and matrix products; parameters are the elements
of the constants those layers' weights come from - through the decompression an IR keeps beside them (a float16
constant's ``Convert``, an int8 constant's ``Convert``/``Subtract``/``Multiply`` by its scale) - and of the float
constants added on their own (biases), not scales, zero points or index arithmetic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgebench.input_layout import channels_last

#: IR op types -> how many leading weight dims are not reduced over per output element (O, or G and O/G), and
#: whether every input (transposed) or every output position meets the weights
_CONVS = {"Convolution": (1, False), "GroupConvolution": (2, False),
          "ConvolutionBackpropData": (1, True), "GroupConvolutionBackpropData": (2, True)}
#: ops between a weight constant and the layer reading it (decompression, layout) -> the inputs the weights may come
#: through (a Reshape's target shape and a FakeQuantize's ranges are not weights; a scale multiplied is, the smaller)
_DECOMPRESSION = {"Convert": (0,), "FakeQuantize": (0,), "Reshape": (0,), "Transpose": (0,), "Unsqueeze": (0,),
                  "Squeeze": (0,), "Subtract": (0, 1), "Multiply": (0, 1)}
#: words in the type of an op that multiplies-accumulates (DeformableConvolution, LSTMSequence...): one of them
#: outside the lists above makes the MACs unknown ("convolution", not "conv": every IR has Convert ops)
_MAC_WORDS = ("convolution", "matmul", "gemm", "einsum", "attention", "lstm", "gru", "rnn")
_FLOAT = ("f32", "f16", "bf16", "f64")


def openvino_cost(xml: Path, input_shape: tuple[int, ...]) -> dict[str, int | None]:
    """``{"params": ..., "macs": ...}`` of the IR at ``xml`` for one image of ``input_shape`` (C, H, W); ``None``
    where a count cannot be made (OpenVINO not installed, a shape that stays dynamic, an op that may multiply and
    is not known here), never a partial count."""
    try:
        import openvino as ov
    except ImportError:
        return {"params": None, "macs": None}
    model = ov.Core().read_model(str(xml))
    if len(model.inputs) != 1:
        return {"params": None, "macs": None}
    dims = model.inputs[0].get_partial_shape()
    batch = dims[0].get_length() if dims.rank.is_static and dims[0].is_static else 1
    image = [d.get_length() if d.is_static else None for d in list(dims)[1:]] if dims.rank.is_static else []
    if channels_last(image, input_shape):  # an IR converted from a Keras model takes NHWC
        input_shape = (*input_shape[1:], input_shape[0])
    model.reshape([batch, *input_shape])
    ops = model.get_ordered_ops()
    weights: dict[str, Any] = {}
    macs: int | None = 0
    for op in ops:
        kind = op.get_type_name()
        if kind in _CONVS or kind == "MatMul":
            for index in (0, 1) if kind == "MatMul" else (1,):
                constant = _weight_constant(op.input_value(index).get_node())
                if constant is not None:
                    weights[constant.get_name()] = constant
            if macs is not None:
                macs = _layer_macs(op, kind, macs)
        elif kind == "Add" and op.get_output_element_type(0).get_type_name() in _FLOAT:
            for index in range(2):
                constant = _weight_constant(op.input_value(index).get_node())
                if constant is not None and _elements(constant) > 1:  # a scalar added is an op's constant
                    weights[constant.get_name()] = constant
        elif any(word in kind.lower() for word in _MAC_WORDS):  # never a partial count
            macs = None
    params = sum(_elements(constant) for constant in weights.values())
    return {"params": params, "macs": None if macs is None else macs // batch}


def _layer_macs(op: Any, kind: str, total: int) -> int | None:
    """``total`` plus the MACs of one conv or matmul for the whole batch; None where a shape is not static."""
    shapes = [op.get_input_partial_shape(0), op.get_input_partial_shape(1), op.get_output_partial_shape(0)]
    if not all(shape.is_static for shape in shapes):
        return None
    first, weight, out = (list(shape.to_shape()) for shape in shapes)
    if kind in _CONVS:
        kept, transposed = _CONVS[kind]
        return total + math.prod(first if transposed else out) * math.prod(weight[kept:])
    transpose_a = bool(op.get_attributes().get("transpose_a"))
    k = first[-2] if transpose_a and len(first) > 1 else first[-1]
    return total + math.prod(out) * k


def _weight_constant(node: Any) -> Any | None:
    """The largest constant a layer's input is decompressed from (the weights, not their scale or zero point); None
    where the input is computed from the image."""
    if node.get_type_name() == "Constant":
        return node
    if node.get_type_name() not in _DECOMPRESSION:
        return None
    found = [_weight_constant(node.input_value(i).get_node()) for i in _DECOMPRESSION[node.get_type_name()]]
    if any(constant is None for constant in found):
        return None  # computed from an activation (a FakeQuantize of one, one times a constant)
    return max(found, key=_elements)


def _elements(constant: Any) -> int:
    return math.prod(constant.get_output_shape(0))
