"""OpenVINO per-layer profile: the CPU plugin's performance counters (``PERF_COUNT``).

A separate compiled model with counters on runs the profiling window (counters cost time, so the
timed model never has them). ``get_profiling_info()`` returns the last inference's executed nodes
(``EXECUTED``; nodes fused into another report ``NOT_RUN``) with their real time; node names are
the ONNX node names, or for reorders OpenVINO inserted ``<source>_<layouts>_<consumer>``.

The same counters give a layer's *own time* (:func:`own_time_ms`), the latency tables' entries on OpenVINO: what its
nodes take, without the call or the layout conversions at a one-layer model's edges.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.profile.onnx_layers import OnnxLayerMap
from edgebench.profile.table import LayerProfile, OpTime, build_profile
from edgebench.runtimes.base import BackendSettings
from edgebench.runtimes.openvino.compile import compile_config, compile_for_batch, infer, read_onnx


def profile_openvino(artifact: Path, batch: np.ndarray, settings: BackendSettings, runs: int = 50,
                     warmup_runs: int = 5) -> LayerProfile:
    """Per-layer profile of an ONNX ``artifact`` on OpenVINO's CPU plugin, ``runs`` inferences of ``batch``."""
    import openvino as ov

    core = ov.Core()
    compiled = compile_for_batch(core, read_onnx(core, artifact), len(batch), compile_config(settings, perf_count=True))
    request = compiled.create_infer_request()
    for _ in range(warmup_runs):
        infer(request, batch)
    totals, types, wall_ns = _node_totals(request, batch, runs)
    layers = OnnxLayerMap.from_file(artifact)
    ops = [OpTime(name, types[name], ms / runs, layers.layer_of(name)) for name, ms in totals.items()]
    return build_profile("openvino", ops, layers.layers, wall_ns / runs / 1e6, runs)


def _node_totals(request: Any, batch: np.ndarray, runs: int) -> tuple[dict[str, float], dict[str, str], int]:
    """Per executed node, its real time summed over ``runs`` inferences (ms) and its type; and the runs' wall ns."""
    totals: dict[str, float] = defaultdict(float)
    types: dict[str, str] = {}
    wall_ns = 0
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        infer(request, batch)
        wall_ns += time.perf_counter_ns() - t0
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                totals[info.node_name] += info.real_time.total_seconds() * 1e3
                types[info.node_name] = info.node_type
    return totals, types, wall_ns


#: node types that are not a layer's own work: the layout conversions OpenVINO puts at a model's edges
EDGE_NODE_TYPES = frozenset({"Reorder"})


def own_time_ms(artifact: Path, batch: np.ndarray, settings: BackendSettings, warmup_runs: int = 100,
                min_runs: int = 50, min_time_s: float = 0.02) -> float:
    """Mean time per inference (ms) of ``artifact``'s executed nodes other than reorders, from the CPU plugin's
    counters: ``min_runs`` inferences at a time until ``min_time_s`` have passed, after ``warmup_runs``.

    The counters report whole microseconds per node, so a mean over many runs is kept, not a median."""
    import openvino as ov

    core = ov.Core()
    compiled = compile_for_batch(core, read_onnx(core, artifact), len(batch), compile_config(settings, perf_count=True))
    request = compiled.create_infer_request()
    for _ in range(warmup_runs):
        infer(request, batch)
    own_ms, runs, start = 0.0, 0, time.perf_counter()
    while True:
        totals, types, _ = _node_totals(request, batch, min_runs)
        own_ms += sum(ms for node, ms in totals.items() if types[node] not in EDGE_NODE_TYPES)
        runs += min_runs
        if time.perf_counter() - start >= min_time_s:
            return own_ms / runs
