"""ONNX QDQ int8 from trained quantizers: the fp32 ONNX of the deployable model, with each quantized layer's
weights stored as int8 codes (per-channel DequantizeLinear), its bias as int32 codes, and its input quantizer as
a QuantizeLinear/DequantizeLinear pair - the scales and zero points QAT trained, nothing re-calibrated.

An input quantizer is also repeated above the operators it commutes with (MaxPool, Flatten, Reshape: quantizing is
monotonic and elementwise), up to the producing ReLU or layer, so ONNX Runtime finds its fusable patterns
(``Conv -> Relu -> Q`` becomes a QLinearConv) while computing exactly the same values. Codes narrower than 8
bits are clipped to their own range first: an int8 QuantizeLinear would only saturate at the int8 limits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebench.quantization.fake_quant import QParams
from edgebench.quantization.modules import LayerQuant

#: operators that commute with a per-tensor quantizer, so its Q/DQ pair may sit above them too
_COMMUTING = {"MaxPool", "Flatten", "Reshape"}


def _np(t: object) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)


class _Graph:
    """Edits of one ONNX graph: new initializers and nodes, and rewired node inputs."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.graph = model.graph
        self.new_nodes: list[object] = []
        self.names: set[str] = {i.name for i in self.graph.initializer}

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.names.add(name)
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        from onnx import helper

        self.new_nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def producer(self, tensor: str) -> object | None:
        return next((n for n in self.graph.node if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[object]:
        return [n for n in self.graph.node if tensor in n.input]


def _activation_qdq(g: _Graph, tensor: str, q: QParams, tag: str, clip: bool) -> str:
    """``tensor`` through (Clip,) QuantizeLinear, DequantizeLinear with ``q``; returns the dequantized name."""
    dtype = np.int8 if q.signed else np.uint8
    scale = g.constant(f"{tag}.scale", np.asarray(float(q.scale), dtype=np.float32))
    zero = g.constant(f"{tag}.zero_point", np.asarray(int(q.zero_point), dtype=dtype))
    source = tensor
    if clip:
        lo = (q.qmin - int(q.zero_point)) * float(q.scale)
        hi = (q.qmax - int(q.zero_point)) * float(q.scale)
        source = g.node("Clip", [tensor, g.constant(f"{tag}.lo", np.float32(lo)), g.constant(f"{tag}.hi", np.float32(hi))],
                        f"{tag}.clipped")
    quantized = g.node("QuantizeLinear", [source, scale, zero], f"{tag}.q")
    return g.node("DequantizeLinear", [quantized, scale, zero], f"{tag}.dq")


def _quantize_input(g: _Graph, node: object, q: QParams, tag: str) -> None:
    """Put ``q`` on ``node``'s first input, and above the commuting operators that single-handedly feed it."""
    chain = [(node, 0)]
    while True:
        tensor = chain[-1][0].input[chain[-1][1]]
        producer = g.producer(tensor)
        if producer is None or producer.op_type not in _COMMUTING or len(g.consumers(tensor)) != 1:
            break
        chain.append((producer, 0))
    narrow = q.bits < 8
    for depth, (consumer, index) in enumerate(reversed(chain)):
        top = depth == 0
        consumer.input[index] = _activation_qdq(g, consumer.input[index], q, f"{tag}.in{depth}", clip=narrow and top)


def _weight_dq(g: _Graph, name: str, layer: LayerQuant) -> tuple[str, str]:
    """Int8 weight codes and int32 bias codes of ``layer``, each behind a DequantizeLinear."""
    w = layer.weight
    scale = _np(w.scale).astype(np.float32).reshape(-1)
    codes = np.rint(_np(layer.weight_q) / scale.reshape(-1, *([1] * (layer.weight_q.dim() - 1)))).astype(np.int8)
    per_channel = scale.size > 1
    w_scale = g.constant(f"{name}.w.scale", scale if per_channel else scale.reshape(()))
    w_zero = g.constant(f"{name}.w.zero_point", np.zeros(scale.shape if per_channel else (), dtype=np.int8))
    attrs = {"axis": 0} if per_channel else {}
    weight = g.node("DequantizeLinear", [g.constant(f"{name}.w.codes", codes), w_scale, w_zero], f"{name}.w.dq",
                    **attrs)
    b_scale = np.broadcast_to(_np(layer.bias_scale).astype(np.float32).reshape(-1), (len(codes),)).copy()
    b_codes = np.rint(_np(layer.bias_q) / b_scale).astype(np.int32)
    bias = g.node("DequantizeLinear", [g.constant(f"{name}.b.codes", b_codes), g.constant(f"{name}.b.scale", b_scale),
                                       g.constant(f"{name}.b.zero_point", np.zeros(len(codes), dtype=np.int32))],
                  f"{name}.b.dq", axis=0)
    return weight, bias


def write_qdq(fp32_path: Path, layers: list[LayerQuant], out_path: Path) -> None:
    """Write the QDQ model of ``fp32_path`` (the ONNX of ``qat.deployable``'s model) with ``layers``' quantizers.

    Each layer's Conv/Gemm node is found by its weight initializer ``<layer name>.weight``; ValueError when an
    exporter named it otherwise.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_path))
    g = _Graph(model)
    by_weight = {n.input[1]: n for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 1}
    initial = {i.name: i for i in model.graph.initializer}
    for layer in layers:
        node = by_weight.get(f"{layer.name}.weight")
        if node is None:
            raise ValueError(f"no Conv/Gemm node reads '{layer.name}.weight' in {fp32_path.name}; cannot place "
                             "its trained quantizers")
        exported = initial.get(node.input[1])
        if exported is not None and not np.array_equal(numpy_helper.to_array(exported), layer.weight_q.numpy()):
            raise ValueError(f"the ONNX exporter folded another layer into '{layer.name}.weight' (a BatchNorm after "
                             "it that QAT does not fold: its output is read elsewhere too); placing the quantizers "
                             "there would drop that layer")
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            raise ValueError(f"Gemm of '{layer.name}' does not read its weight as (out, in); cannot quantize it per row")
        tag = layer.name.replace(".", "_") or "layer"
        weight, bias = _weight_dq(g, tag, layer)
        _quantize_input(g, node, layer.input, tag)
        old = {node.input[1], *(node.input[2:3])}
        node.input[1] = weight
        if len(node.input) > 2:
            node.input[2] = bias
        else:
            node.input.append(bias)
        kept = [i for i in model.graph.initializer if i.name not in old or g.consumers(i.name)]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    nodes = list(model.graph.node) + g.new_nodes
    del model.graph.node[:]
    model.graph.node.extend(_topological(nodes, {i.name for i in model.graph.input} | g.names))
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


def _topological(nodes: list[object], available: set[str]) -> list[object]:
    """``nodes`` ordered so that every input is produced before it is read (ONNX requires it)."""
    ready, pending, ordered = set(available), list(nodes), []
    while pending:
        progress = [n for n in pending if all(not i or i in ready for i in n.input)]
        if not progress:
            raise ValueError("the quantized graph has a cycle or an input nobody produces")
        for n in progress:
            ordered.append(n)
            ready.update(n.output)
        pending = [n for n in pending if all(n is not p for p in progress)]
    return ordered
