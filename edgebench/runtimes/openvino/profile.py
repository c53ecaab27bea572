"""OpenVINO per-layer profile: the CPU plugin's performance counters (``PERF_COUNT``).

A separate compiled model with counters on runs the profiling window (counters cost time, so the
timed model never has them). ``get_profiling_info()`` returns the last inference's executed nodes
(``EXECUTED``; nodes fused into another report ``NOT_RUN``) with their real time; node names are
the ONNX node names, or for reorders OpenVINO inserted ``<source>_<layouts>_<consumer>``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

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
    layers = OnnxLayerMap.from_file(artifact)
    ops = [OpTime(name, types[name], ms / runs, layers.layer_of(name)) for name, ms in totals.items()]
    return build_profile("openvino", ops, layers.layers, wall_ns / runs / 1e6, runs)
