"""Q/DQ ONNX in the form TensorRT reads: signed int8 with zero points of zero.

edgebench's int8 ONNX artifact quantizes activations to uint8 with a zero point (what ONNX Runtime runs fastest on
x86). TensorRT's ONNX parser refuses a non-zero zero point ("TensorRT only supports symmetric quantization") and
reads a uint8 one as int8 at the same scale, which clips every activation at half its calibrated range (a digits
CNN: 0.963 -> 0.724 top-1, simulated). So before a build each uint8 activation range [s(0 - z), s(255 - z)] is
widened to the symmetric int8 one TensorRT's own calibrators produce: scale s * max(z, 255 - z) / 127, zero point 0.
Where the uint8 zero point is 0, the artifact's QuantizeLinear also clamps at 0, and ONNX Runtime's quantizer drops the
ReLU (or ReLU6's Clip) before it for that reason; a Clip at the uint8 range [0, 255 s] goes back in before it.
Weights are already signed and symmetric; they keep the artifact's 7-bit range (``reduce_range``). Biases ONNX
Runtime quantizes to int32 are dequantized into float constants: TensorRT's DequantizeLinear takes only activation
types ("only activation types allowed as input to this layer") and folds a float bias into the int8 layer itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import ArtifactError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def symmetric_int8_scale(scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """The int8 scale whose symmetric range covers the uint8 range of ``scale`` and ``zero_point``."""
    z = zero_point.astype(np.float64)
    return (scale.astype(np.float64) * np.maximum(z, 255.0 - z) / 127.0).astype(scale.dtype)


def _fold_int32_dequantize(graph: Any, initializers: dict[str, Any]) -> None:
    """Replace each DequantizeLinear of an int32 constant (a quantized bias) by its float value."""
    from onnx import TensorProto, numpy_helper

    for node in list(graph.node):
        source = initializers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is None or source.data_type != TensorProto.INT32:
            continue
        q = numpy_helper.to_array(source).astype(np.float64)
        scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        zero = (numpy_helper.to_array(initializers[node.input[2]]).astype(np.float64)
                if len(node.input) > 2 and node.input[2] else 0.0)
        if scale.ndim == 1 and q.ndim > 1:  # per-axis: the scale runs along the node's axis
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = np.reshape(zero, shape) if np.ndim(zero) else zero
        value = ((q - zero) * scale).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        graph.node.remove(node)


def _clamp_before(graph: Any, quantize: Any, high: float) -> None:
    """Put a Clip to [0, ``high``] on ``quantize``'s input: the clamp its uint8 type did (and the ReLU it replaced)."""
    from onnx import helper, numpy_helper

    source = quantize.input[0]
    names = (f"{quantize.name or source}_clip_low", f"{quantize.name or source}_clip_high")
    graph.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), names[0]),
                              numpy_helper.from_array(np.array(high, np.float32), names[1])])
    clipped = f"{source}_clipped_for_{quantize.name or 'quantize'}"
    clip = helper.make_node("Clip", [source, *names], [clipped], name=f"{quantize.name or source}_clip")
    graph.node.insert(list(graph.node).index(quantize), clip)
    quantize.input[0] = clipped


def write_tensorrt_qdq(src: Path, dst: Path) -> int:
    """Write ``src`` with every uint8 Q/DQ pair made signed and symmetric to ``dst``; the number of pairs changed.

    Raises ArtifactError for a quantization TensorRT cannot run either way (a signed zero point that is not zero).
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    _fold_int32_dequantize(graph, initializers)
    rewritten: dict[tuple[str, str], tuple[str, str]] = {}
    quantized_outputs: set[str] = set()
    clips: list[tuple[Any, float]] = []  # QuantizeLinear nodes whose uint8 range started at 0, and its top
    for node in graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        zero = initializers.get(zero_name)
        if zero is None or scale_name not in initializers:
            raise ArtifactError(f"{src}: {node.op_type} '{node.name}' takes its scale or zero point from the graph, "
                                "not a constant; TensorRT needs constant Q/DQ parameters")
        values = numpy_helper.to_array(zero)
        if zero.data_type == TensorProto.INT8:
            if np.any(values != 0):
                raise ArtifactError(f"{src}: {node.op_type} '{node.name}' has a non-zero int8 zero point; TensorRT "
                                    "reads only symmetric quantization (zero points 0): quantize with symmetric "
                                    "activations and weights")
            continue
        if zero.data_type != TensorProto.UINT8:
            continue
        key = (scale_name, zero_name)
        if key not in rewritten:
            scale = numpy_helper.to_array(initializers[scale_name])
            names = (f"{scale_name}_tensorrt_s8", f"{zero_name}_tensorrt_s8")
            graph.initializer.extend([
                numpy_helper.from_array(symmetric_int8_scale(scale, values), names[0]),
                numpy_helper.from_array(np.zeros_like(values, dtype=np.int8), names[1]),
            ])
            rewritten[key] = names
        node.input[1], node.input[2] = rewritten[key]
        if node.op_type == "QuantizeLinear":
            quantized_outputs.add(node.output[0])
            if not values.any():
                clips.append((node, float(numpy_helper.to_array(initializers[scale_name]).max()) * 255.0))
    for node, high in clips:
        _clamp_before(graph, node, high)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    # shape inference recorded those outputs as uint8; let the parser infer them again
    kept = [info for info in graph.value_info if info.name not in quantized_outputs]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    onnx.save(model, str(dst))
    return len(rewritten)
