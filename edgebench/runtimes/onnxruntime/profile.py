"""ONNX Runtime per-layer profile: session profiling JSON, mapped to the artifact's PyTorch layers.

A second session with ``enable_profiling`` runs the profiling window (the timed session never
profiles). ORT writes one ``<node>_kernel_time`` event per executed node and run; the nodes are
those of ORT's optimised graph (fused, NCHWc-reordered, QLinear), which is saved next to the
profile so that nodes ORT inserted itself (``Transpose``, ``ReorderInput``) are traced to the
layer whose tensors they move.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.profile.onnx_layers import OnnxLayerMap
from edgebench.profile.table import UNMAPPED_ROW, LayerProfile, OpTime, build_profile
from edgebench.runtimes.onnxruntime.session import make_session_options

KERNEL_SUFFIX = "_kernel_time"


def parse_ort_profile(events: list[dict[str, Any]], warmup_runs: int) -> tuple[dict[str, tuple[str, float]], int, float]:
    """Per node: (op type, mean µs per run) over the runs after ``warmup_runs``; also the run count and
    the mean ``model_run`` wall time in µs."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) <= warmup_runs:
        raise ValueError(f"the ORT profile has {len(runs)} runs; at least {warmup_runs + 1} are needed")
    start = runs[warmup_runs]["ts"]
    counted = runs[warmup_runs:]
    totals: dict[str, float] = defaultdict(float)
    types: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith(KERNEL_SUFFIX) and e["ts"] >= start:
            node = e["name"][: -len(KERNEL_SUFFIX)]
            totals[node] += float(e["dur"])
            types[node] = e.get("args", {}).get("op_name", "")
    n = len(counted)
    return ({node: (types[node], us / n) for node, us in totals.items()}, n,
            float(np.mean([r["dur"] for r in counted])))


def _trace_unmapped(name: str, producers: dict[str, Any], optimized: dict[str, Any], layers: OnnxLayerMap) -> str:
    """Layer of a node ORT inserted (a reorder, a transpose): that of the nearest upstream node or tensor
    with an original name."""
    frontier, seen = [name], set()
    while frontier:
        node = optimized.get(frontier.pop(0))
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        for tensor in node.input:
            if tensor in layers.tensor_layer:
                return layers.tensor_layer[tensor]
            producer = producers.get(tensor)
            if producer is not None:
                layer = layers.layer_of(producer.name)
                if layer != UNMAPPED_ROW:
                    return layer
                frontier.append(producer.name)
    return UNMAPPED_ROW


def profile_onnxruntime(artifact: Path, batch: np.ndarray, threads: int, runs: int = 50, warmup_runs: int = 5,
                        providers: list[str] | None = None) -> LayerProfile:
    """Per-layer profile of ``artifact`` on ORT (CPU provider unless ``providers``), ``runs`` inferences of ``batch``."""
    import onnx
    import onnxruntime as ort

    layers = OnnxLayerMap.from_file(artifact)
    with tempfile.TemporaryDirectory() as tmp:
        options = make_session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # the saved optimised model carries a hardware-specific warning
        session = ort.InferenceSession(str(artifact), options, providers=providers or ["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        for _ in range(warmup_runs + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized_graph = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False).graph
    per_node, n_runs, run_us = parse_ort_profile(events, warmup_runs)
    optimized = {node.name: node for node in optimized_graph.node}
    producers = {out: node for node in optimized_graph.node for out in node.output}
    ops = []
    for name, (op_type, us) in per_node.items():
        layer = layers.layer_of(name)
        if layer == UNMAPPED_ROW:
            layer = _trace_unmapped(name, producers, optimized, layers)
        ops.append(OpTime(name, op_type, us / 1e3, layer))
    return build_profile("onnxruntime", ops, layers.layers, run_us / 1e3, n_runs)
