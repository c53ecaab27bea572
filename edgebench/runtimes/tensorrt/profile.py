"""TensorRT per-layer profile through ``IProfiler`` (needs a CUDA GPU and TensorRT: skipped elsewhere).

An ``IProfiler`` attached to the execution context receives ``report_layer_time(name, ms)`` for
every engine layer after each synchronised inference. Engine layer names are the ONNX node names
joined by TensorRT's fusions (``node_Conv_142 + node_relu_1``) or its own reformatting layers
(``Reformatting CopyNode for Input Tensor 0 to node_Conv_139``); both map through the ONNX artifact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from edgebench.profile.onnx_layers import OnnxLayerMap
from edgebench.profile.table import LayerProfile, OpTime, build_profile


def make_layer_timer(trt: Any) -> Any:
    """An ``IProfiler`` that sums each layer's reported milliseconds."""

    class LayerTimer(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.totals: dict[str, float] = defaultdict(float)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.totals[layer_name] += ms

    return LayerTimer()


def profile_tensorrt(trt: Any, context: Any, run: Callable[[], None], layers: OnnxLayerMap | None, runs: int = 50,
                     warmup_runs: int = 5) -> LayerProfile:
    """Per-layer profile of an execution ``context``; ``run`` enqueues one inference and synchronises.

    ``layers`` comes from the ONNX the engine was built from; without it every engine layer is its own row.
    """
    import time

    for _ in range(warmup_runs):
        run()
    timer = make_layer_timer(trt)
    context.profiler = timer
    try:
        t0 = time.perf_counter_ns()
        for _ in range(runs):
            run()
        wall_ms = (time.perf_counter_ns() - t0) / 1e6 / runs
    finally:
        context.profiler = None
    ops = []
    for name, ms in timer.totals.items():
        layer = layers.layer_of(name) if layers is not None else name
        ops.append(OpTime(name, _trt_op_type(name, layers), ms / runs, layer))
    return build_profile("tensorrt", ops, layers.layers if layers else {}, wall_ms, runs)


def _trt_op_type(name: str, layers: OnnxLayerMap | None) -> str:
    """The op of an engine layer: the first fused ONNX node's kind (a conv/gemm stays compute), else 'Reformat'."""
    if name.startswith("Reformatting"):
        return "Reformat"
    first = name.split(" + ")[0].strip()
    if layers is not None and first in layers.node_ops:
        return layers.node_ops[first]
    return first
