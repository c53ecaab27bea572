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
from edgebench.profile.table import UNMAPPED_ROW, LayerProfile, OpTime, build_profile, not_available
from edgebench.runtimes.onnxruntime.session import (
    CPU_PROVIDER,
    ORT_DEFAULTS,
    GraphOptions,
    input_feed,
    make_session_options,
    open_session,
)

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
    for e in _node_events(events):
        if e["ts"] >= start:
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


#: a provider as ORT takes it: its name, or (name, options)
Provider = str | tuple[str, dict[str, Any]]


def _profiled_events(artifact: Path, batch: np.ndarray, threads: int, providers: list[Provider], n_runs: int,
                     optimized: Path | None = None, passes: GraphOptions = ORT_DEFAULTS) -> list[dict[str, Any]]:
    """ORT's profile events of ``n_runs`` inferences of ``batch`` in a profiling session of its own (its
    optimised graph saved to ``optimized`` when given)."""
    with tempfile.TemporaryDirectory() as tmp:
        options = make_session_options(threads, passes)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        if optimized is not None:
            options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3  # the saved optimised model carries a hardware-specific warning
        session = open_session(artifact, options, providers, passes)
        feed = input_feed(session, batch)
        for _ in range(n_runs):
            session.run(None, feed)
        return json.loads(Path(session.end_profiling()).read_text())


def _node_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith(KERNEL_SUFFIX)]


def host_timed_reason(events: list[dict[str, Any]]) -> str | None:
    """Why ORT's per-node times are not the device's: nodes ran on a GPU provider, whose kernels ORT only
    launches (its profiler times each node on the host), or None when every node ran on the CPU."""
    devices = sorted({e.get("args", {}).get("provider") or CPU_PROVIDER for e in _node_events(events)} - {CPU_PROVIDER})
    if not devices:
        return None
    return (f"ONNX Runtime's profiler times the nodes on {', '.join(devices)} on the host: it records how long each "
            "node took to launch its kernels, not how long they ran on the device (per-kernel GPU times need an "
            "ORT built with --enable_cuda_profiling, or Nsight Systems)")


def node_placement(artifact: Path, batch: np.ndarray, threads: int, providers: list[Provider],
                   passes: GraphOptions = ORT_DEFAULTS) -> dict[str, dict[str, int]]:
    """Per execution provider, how many nodes of each operator type ORT ran on it in one inference (after one
    warm-up): a node a GPU provider has no kernel for runs on the CPU, with copies to and from the device."""
    events = _profiled_events(artifact, batch, threads, providers, n_runs=2, passes=passes)
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    placement: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in _node_events(events):
        if e["ts"] >= runs[-1]["ts"]:
            args = e.get("args", {})
            placement[args.get("provider") or CPU_PROVIDER][args.get("op_name", "")] += 1
    return {provider: dict(sorted(ops.items())) for provider, ops in sorted(placement.items())}


def profile_onnxruntime(artifact: Path, batch: np.ndarray, threads: int, runs: int = 50, warmup_runs: int = 5,
                        providers: list[Provider] | None = None, passes: GraphOptions = ORT_DEFAULTS) -> LayerProfile:
    """Per-layer profile of ``artifact`` on ORT (CPU provider unless ``providers``), ``runs`` inferences of
    ``batch``; not available when nodes ran on a GPU provider (see ``host_timed_reason``)."""
    import onnx

    layers = OnnxLayerMap.from_file(artifact)
    with tempfile.TemporaryDirectory() as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        events = _profiled_events(artifact, batch, threads, providers or [CPU_PROVIDER], warmup_runs + runs,
                                  optimized_path, passes)
        optimized_graph = onnx.load(str(optimized_path), load_external_data=False).graph
    reason = host_timed_reason(events)
    if reason is not None:
        return not_available("onnxruntime", reason)
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
