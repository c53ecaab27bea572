"""Map the operators a runtime reports back to the PyTorch layers of an edgebench ONNX artifact.

The exporter names every weight initializer after its module (``stages.0.conv1.weight``; the QDQ
quantizer keeps that name with ``_quantized``), so a Conv/Gemm node's layer is its weight's module
path, even where BatchNorm was folded into it. Every other node (activation, pooling, residual add,
Q/DQ) belongs to the layer that produced its first input, as runtimes fuse them into that layer.
Runtimes rename what they execute (ORT: ``relu_1_nchwc``, ``node_Conv_142_token_4``,
``InsertedPrecisionFreeCast_relu_nchwc``; OpenVINO:
``input_abcd_acdb_node_Conv_139`` for a reorder); :meth:`OnnxLayerMap.layer_of` strips those
decorations and matches original node and tensor names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgebench.profile.table import INPUT_ROW, UNMAPPED_ROW, LayerInfo

_COMPUTE_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "Gemm": 1, "MatMul": 1, "MatMulInteger": 1,
                "QLinearMatMul": 3, "QGemm": 3}  # op -> index of its weight input (QGemm: ONNX Runtime's own)
_PASS_THROUGH = {"DequantizeLinear", "QuantizeLinear", "Transpose", "Reshape", "Identity", "Cast"}
# ORT names a cast it inserts for an fp16 operator without an fp16 kernel "InsertedPrecisionFreeCast_<tensor>", and a
# node fused after it takes that name (fp16 ONNX on the CPU: "InsertedPrecisionFreeCast_relu_nchwc")
_DECORATIONS = (re.compile(r"^InsertedPrecisionFreeCast_"), re.compile(r"_kernel_time$"), re.compile(r"_nchwc$"),
                re.compile(r"_token_\d+$"),
                re.compile(r"_(quantized|DequantizeLinear|QuantizeLinear)(_Output)?$"))
_WEIGHT_SUFFIX = re.compile(r"(\.weight)?(_quantized|_DequantizeLinear_Output)*$")
#: a module path (``stages.0.conv1``), as edgebench's exporter names weights
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*")


class OnnxLayerMap:
    """Layers (module path -> LayerInfo) of an ONNX graph and the layer of each node and tensor."""

    def __init__(self, model: Any) -> None:  # onnx.ModelProto
        import onnx

        graph = onnx.shape_inference.infer_shapes(model).graph
        self._inits = {i.name: i for i in graph.initializer}
        self._shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                        for v in list(graph.value_info) + list(graph.output)}
        self._shapes.update(_unknown_output_shapes(model, graph, self._shapes))
        self._producer = {out: node for node in graph.node for out in node.output}
        self.layers: dict[str, LayerInfo] = {}
        self.node_layer: dict[str, str] = {}
        self.node_ops: dict[str, str] = {node.name: node.op_type for node in graph.node}
        self.tensor_layer: dict[str, str] = {i.name: INPUT_ROW for i in graph.input}
        for node in graph.node:  # topological order: producers are mapped before their consumers
            layer = self._compute_layer(node) if node.op_type in _COMPUTE_OPS else None
            if layer is None:
                sources = [self.tensor_layer[t] for t in node.input if t in self.tensor_layer and t not in self._inits]
                layer = next((s for s in sources if s != INPUT_ROW), sources[0] if sources else INPUT_ROW)
            self.node_layer[node.name] = layer
            for out in node.output:
                self.tensor_layer[out] = layer
        # weight-only nodes (a weight's DequantizeLinear) belong to the layer that consumes them
        consumers = {t: node for node in reversed(graph.node) for t in node.input}
        for node in graph.node:
            if node.input and all(t in self._inits for t in node.input if t) and node.output[0] in consumers:
                layer = self.node_layer[consumers[node.output[0]].name]
                self.node_layer[node.name] = self.tensor_layer[node.output[0]] = layer
        # longest names first, so "node_Conv_14" never claims what belongs to "node_Conv_142"
        self._names = sorted({**self.node_layer, **self.tensor_layer}, key=len, reverse=True)

    @classmethod
    def from_file(cls, path: Path) -> OnnxLayerMap:
        """Read an ONNX file (weights included: their shapes give the MACs)."""
        import onnx

        return cls(onnx.load(str(path)))

    def _weight_name(self, tensor: str) -> str | None:
        """The initializer behind ``tensor``, through Dequantize/Transpose/Reshape chains."""
        for _ in range(8):
            if tensor in self._inits:
                return tensor
            node = self._producer.get(tensor)
            if node is None or node.op_type not in _PASS_THROUGH:
                return None
            tensor = node.input[0]
        return None

    def _compute_layer(self, node: Any) -> str | None:
        index = _COMPUTE_OPS[node.op_type]
        weight = self._weight_name(node.input[index]) if len(node.input) > index else None
        if weight is None:
            return None
        path = _WEIGHT_SUFFIX.sub("", weight)
        if not _MODULE_PATH.fullmatch(path):  # "onnx::Conv_193": a BatchNorm folded in by another tool's export
            path = _scope_path(node.name) or path or node.name
        dims = list(self._inits[weight].dims)
        out_shape = self._shapes.get(node.output[0], [])
        if node.op_type.endswith("Conv") or node.op_type == "Conv":
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            spatial = 1
            for d in out_shape[2:]:
                spatial *= d
            macs = dims[0] * dims[1] * _product(dims[2:]) * spatial
            info = LayerInfo(path, "Conv", macs, dims[1] * groups, dims[0])
        else:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            c_out, c_in = (dims[0], dims[1]) if trans_b else (dims[-1], dims[-2])
            info = LayerInfo(path, "Gemm" if node.op_type.endswith("Gemm") else "MatMul", c_in * c_out, c_in, c_out)
        self.layers.setdefault(path, info)
        return path

    def layer_of(self, runtime_name: str) -> str:
        """The layer a runtime operator belongs to, ``(unmapped)`` when no original name matches."""
        for candidate in _candidates(runtime_name):
            layer = self.node_layer.get(candidate) or self.tensor_layer.get(candidate)
            if layer is not None:
                return layer
        # decorated names: a reorder named "<src>_<layouts>_<consumer>" belongs to the consumer it feeds;
        # only whole "_"-separated node names count, so a short tensor name never claims an operator
        for name in self._names:
            if name in self.node_layer and runtime_name.endswith("_" + name):
                return self.node_layer[name]
        for name in self._names:
            if name in self.node_layer and runtime_name.startswith(name + "_"):
                return self.node_layer[name]
        return UNMAPPED_ROW


def _scope_path(node_name: str) -> str | None:
    """The module path in the torch exporter's node name ``/stages/stages.1/shortcut/shortcut.0/Conv``
    (``stages.1.shortcut.0``): each scope is a module's name, or a container's child where it extends the scope
    before it; None for other names."""
    parts: list[str] = []
    for scope in node_name.split("/")[1:-1] if node_name.startswith("/") else []:
        if parts and scope.startswith(parts[-1] + "."):  # "stages" then "stages.1", "shortcut" then "shortcut.0"
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts) or None


def _unknown_output_shapes(model: Any, graph: Any, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """The output shapes of compute nodes ONNX's shape inference did not reach (past ONNX Runtime's own ops, as a
    QOperator file's QLinearAdd), from one ONNX Runtime run at batch 1 where the image's dims are fixed."""
    from edgebench.models.graph_cost import shapes_from_a_run

    missing = [node.output[0] for node in graph.node if node.op_type in _COMPUTE_OPS
               and len(shapes.get(node.output[0], [])) < 2]
    inits = {i.name for i in graph.initializer}
    feeds = [i for i in model.graph.input if i.name not in inits]
    if not missing or len(feeds) != 1:
        return {}
    probe = type(model)()
    probe.CopyFrom(model)
    feed = next(i for i in probe.graph.input if i.name == feeds[0].name)
    dims = feed.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in list(dims)[1:]):
        return {}
    dims[0].Clear()
    dims[0].dim_value = 1
    return shapes_from_a_run(probe, feed, missing)


def _candidates(name: str) -> list[str]:
    """``name`` and the names left after stripping runtime decorations and fusion/sub-op separators."""
    found = [name]
    for part in re.split(r" \+ |/", name):  # TensorRT "a + b" fusions; OpenVINO "node/WithoutBiases"
        part = part.strip()
        for pattern in _DECORATIONS:
            stripped = pattern.sub("", part)
            if stripped != part:
                found.append(stripped)
                part = stripped
        found.append(part)
    return found


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result
