"""Whether another tool's artifact is quantized, to check the precision an experiment declares for it.

The declared precision is what the reports group and label the file by (an ``external:<label>/int8`` point on the
fronts); a float file listed as int8 by mistake - the fp32 ONNX beside the int8 one - would stand on the fronts as
int8 figures. A file is quantized when its graph computes with integer codes: ONNX quantization ops (QDQ's
``QuantizeLinear``/``DequantizeLinear``, QOperator's ``QLinear*``, dynamic quantization's ``ConvInteger``/
``MatMulInteger``, ONNX Runtime's ``QGemm`` and ``DynamicQuantize*``), a TFLite tensor of integer codes with a
scale, an OpenVINO ``FakeQuantize`` or integer weight constants (NNCF's compressed weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebench.errors import ConfigError

_INTEGER_PRECISIONS = ("int8", "int8_dynamic")
#: ONNX ops of quantized graphs besides the ``*QuantizeLinear``, ``QLinear*`` and ``*Integer*`` families
_ONNX_QUANTIZED = {"QGemm", "QAttention", "DynamicQuantizeMatMul", "MatMulNBits"}
#: OpenVINO element types of integer weight codes (shape and index constants are i32/i64)
_IR_CODES = {"i8", "u8", "i4", "u4", "nf4"}


def check_declared_precision(path: Path, fmt: str, precision: str) -> None:
    """ConfigError where an artifact declared ``int8``/``int8_dynamic`` has no quantized op, or one declared float
    has (for ONNX naming the int8 kind its graph shows); for ONNX also where it is the other float width or the other
    int8 kind than declared (:func:`_onnx_kind`).
    Unchecked where the file's runtime package is not installed (its targets are then not run)."""
    found = quantized_op(path, fmt)
    if found is None and precision in _INTEGER_PRECISIONS:
        raise ConfigError(f"{path}: declared precision {precision}, but it computes in floating point (no quantized op"
                          " or integer tensor in its graph): list the quantized file, or declare its precision (fp32, "
                          "fp16)")
    kind = _onnx_kind(path) if fmt == "onnx" else None
    if found and precision not in _INTEGER_PRECISIONS:
        # name the one int8 kind where the graph shows it, or the fix is a second refusal away
        fits = kind[0] if kind else "int8 (int8_dynamic for one quantized at run time)"
        raise ConfigError(f"{path}: declared precision {precision}, but its graph is quantized ({found}): declare "
                          f"precision {fits}")
    if kind is not None and kind[0] != precision:
        raise ConfigError(f"{path}: declared precision {precision}, but {kind[1]}: declare precision {kind[0]}")


#: ONNX ops that quantize activations at run time (dynamic quantization); static graphs carry fixed scales instead
_ONNX_DYNAMIC = ("DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger", "ConvInteger")
_ONNX_STATIC = ("QuantizeLinear", "QLinear")


def _onnx_kind(path: Path) -> tuple[str, str] | None:
    """The precision an ONNX file's graph shows unambiguously, and why: ``fp16`` where its float weights are all
    float16, ``fp32`` where all float32, ``int8_dynamic`` where it quantizes activations only at run time,
    ``int8`` where only with fixed scales; None where it mixes them (or has no float weights to tell by)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    ops = {node.op_type for node in _onnx_nodes(graph)}
    dynamic = any(op.startswith(_ONNX_DYNAMIC) for op in ops)
    static = any(op.startswith(_ONNX_STATIC) for op in ops)
    if dynamic and not static:
        return "int8_dynamic", "its graph quantizes activations at run time (DynamicQuantizeLinear, *Integer ops)"
    if static and not dynamic:
        return "int8", "its graph quantizes with scales fixed in the file (QuantizeLinear, QLinear* ops)"
    if dynamic or any(_quantizes(op) for op in ops):  # both kinds, or weights alone quantized: not told apart
        return None
    floats = {init.data_type for init in graph.initializer if len(init.dims) > 1}  # weights, not scalars or shapes
    widths = floats & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    if widths == {onnx.TensorProto.FLOAT16}:
        return "fp16", "its weights are all float16"
    if widths == {onnx.TensorProto.FLOAT}:
        return "fp32", "its weights are all float32"
    return None


def quantized_op(path: Path, fmt: str) -> str | None:
    """The first quantized op or integer tensor of the artifact at ``path`` (a description); None for a float one;
    ``""`` where it cannot be told (the format's runtime package is not installed)."""
    reader = {"onnx": _onnx_quantized, "tflite": _tflite_quantized, "openvino": _ir_quantized}.get(fmt)
    try:
        return reader(path) if reader else ""
    except ImportError:
        return ""


def _onnx_quantized(path: Path) -> str | None:
    import onnx

    for node in _onnx_nodes(onnx.load(path, load_external_data=False).graph):
        if _quantizes(node.op_type):
            return f"an ONNX {node.op_type} node"
    return None


def _quantizes(op: str) -> bool:
    return op.endswith("QuantizeLinear") or op.startswith("QLinear") or "Integer" in op or op in _ONNX_QUANTIZED


def _onnx_nodes(graph: Any) -> Any:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                yield from _onnx_nodes(subgraph)


def _tflite_quantized(path: Path) -> str | None:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    for tensor in Interpreter(model_path=str(path)).get_tensor_details():
        scales = tensor.get("quantization_parameters", {}).get("scales")
        if np.issubdtype(tensor["dtype"], np.integer) and scales is not None and len(scales):
            return f"the {np.dtype(tensor['dtype']).name} tensor '{tensor['name']}' with a scale"
    return None


def _ir_quantized(path: Path) -> str | None:
    from edgebench.runtimes.openvino.ir import read_ir

    model = read_ir(path)
    if model is None:
        raise ImportError("openvino")
    for op in model.get_ops():
        if op.get_type_name() == "FakeQuantize":
            return f"the FakeQuantize '{op.get_friendly_name()}'"
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in _IR_CODES:
            return f"the {op.get_output_element_type(0).get_type_name()} constant '{op.get_friendly_name()}'"
    return None
