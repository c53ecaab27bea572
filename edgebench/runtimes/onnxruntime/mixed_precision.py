"""Accuracy-aware mixed precision (``quantization.max_drop``): int8 everywhere except the layers that cost most.

Our reading of NNCF's accuracy-controlled quantization (``max_drop``): quantize every Conv/Gemm/MatMul to int8
(the static QDQ of :mod:`calibration`), and while the accuracy on the validation split is more than ``max_drop``
below the fp32 model's, keep one more layer in fp32. Layers are ranked once, by the accuracy the int8 model
recovers when that layer alone stays in fp32; they are then kept in float in that order, one at a time, each step
measured on the ONNX Runtime artifact itself, until the drop is within ``max_drop`` (or every layer is float).
The decision - each layer's precision, the accuracy that ranked it and the accuracy after each step - is written
into the artifact's ONNX metadata, so every runtime that loads the file (ONNX Runtime, OpenVINO) reports it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.session import CPU_PROVIDER
from edgebench.variants import Calibrator

#: key of the decision in the artifact's ONNX metadata_props
METADATA_KEY = "edgebench.quantization"
_LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class MixedPrecision:
    """What the search decided and measured (accuracies on the validation split, as fractions)."""

    max_drop: float
    fp32_accuracy: float
    int8_accuracy: float
    accuracy: float
    #: layer (PyTorch module name where the exporter kept it, else the ONNX node) -> "int8" | "fp32"
    precisions: dict[str, str] = field(default_factory=dict)
    #: accuracy of the int8 model with only that layer in fp32: the ranking
    recovered: dict[str, float] = field(default_factory=dict)
    #: (layer kept in fp32, accuracy after keeping it), in the order they were kept
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def float_layers(self) -> list[str]:
        return [layer for layer, _ in self.steps]


def layer_nodes(model_path: Path) -> dict[str, str]:
    """ONNX node name -> layer name of each Conv/Gemm/MatMul (the module name when its weight is ``<module>.weight``)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = {}
    for node in graph.node:
        if node.op_type in _LAYER_OPS:
            weight = next((i for i in node.input[1:] if i.endswith(".weight")), None)
            names[node.name] = weight[: -len(".weight")] if weight else node.name
    return names


def onnx_accuracy(model_path: Path, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of an ONNX model on (x, y) with ONNX Runtime on one CPU thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=[CPU_PROVIDER])
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), batch):
        logits = session.run(None, {name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})[0]
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def search_mixed_precision(fp32_path: Path, out_path: Path, calibration: np.ndarray, x_val: np.ndarray,
                           y_val: np.ndarray, max_drop: float, calibrator: Calibrator) -> MixedPrecision:
    """Write to ``out_path`` the QDQ model of ``fp32_path`` with the fewest layers in fp32 (greedy, see the module
    docstring) whose validation accuracy is within ``max_drop`` of fp32's; return the decision."""
    nodes = layer_nodes(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.onnx"

        def accuracy_with_float(kept: list[str], path: Path = trial) -> float:
            if len(kept) < len(nodes):  # excluding (not listing) nodes keeps every other operator int8 as in full int8
                quantize_qdq(fp32_path, path, calibration, calibrator=calibrator, nodes_to_exclude=kept or None)
            else:
                shutil.copyfile(fp32_path, path)
            return onnx_accuracy(path, x_val, y_val)

        fp32 = onnx_accuracy(fp32_path, x_val, y_val)
        int8 = accuracy_with_float([], out_path)
        result = MixedPrecision(max_drop, fp32, int8, int8, precisions=dict.fromkeys(nodes.values(), "int8"))
        if fp32 - int8 <= max_drop:
            return _stamped(result, out_path)
        recovered = {node: accuracy_with_float([node]) for node in nodes}
        result.recovered = {nodes[n]: a for n, a in recovered.items()}
        kept: list[str] = []
        for node in sorted(nodes, key=lambda n: -recovered[n]):  # stable: ties keep graph order
            kept.append(node)
            result.accuracy = accuracy_with_float(kept, out_path)
            result.precisions[nodes[node]] = "fp32"
            result.steps.append((nodes[node], result.accuracy))
            if fp32 - result.accuracy <= max_drop:
                break
    return _stamped(result, out_path)


def stamp(path: Path, record: dict[str, Any], key: str = METADATA_KEY) -> None:
    """Write ``record`` as JSON under ``key`` into ``path``'s ONNX metadata, replacing one there: an exporter's
    quantization record (read back by :func:`read_decision`; ONNX Runtime and OpenVINO sessions report it with every
    measurement), or what the file must be fed (``edgebench.input``)."""
    import onnx

    model = onnx.load(str(path))
    kept = [entry for entry in model.metadata_props if entry.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = key, json.dumps(record)
    onnx.save(model, str(path))


def _stamped(result: MixedPrecision, path: Path) -> MixedPrecision:
    stamp(path, {"mixed_precision": asdict(result)})
    return result


def read_decision(path: Path) -> dict[str, Any] | None:
    """The quantization record an exporter wrote into an ONNX artifact's metadata, or None."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    return json.loads(value) if value else None
