"""What a model whose weights outgrow the CPU's caches pays on every inference, beyond its layers' table entries.

A table entry times one layer called again and again, so its weights stay cached. Inside a model whose weights do
not fit the caches, every layer's weights come from memory on every inference: VGG-16 at CIFAR shape holds 56 MiB
of fp32 weights, and on a 2-vCPU AMD EPYC guest (32 MiB L3) ONNX Runtime's profiler put a 512->512 3x3 conv at 2x2
at 1.17 ms inside the model against 0.30 ms alone, while the layers of its 75 %-pruned copy (3.5 MiB) ran at their
table times. Two more measurements on the target's runtime model this (our reading of that profile, not a
published model; ``scripts/bench_latency_model.py`` says how far it gets):

- a layer's *cold* entry (:func:`cold_layer_timer`): its one-layer model timed with the caches evicted before each
  call (a buffer larger than the caches is read between calls, outside the timed call). What eviction costs a
  call with no weights to fetch (the smallest layer's cold entry less its table entry) is taken off;
- the *cache curve* (:class:`CacheCurve`): one-Gemm models of 1 to 128 MiB of weights, timed like table entries
  (called again and again, as a model's layers are). Their time per MiB rises from the cached speed to the memory
  speed as the weights outgrow the caches, so a model of W MiB is taken to pay the same fraction ``f(W)`` of each
  layer's cold excess: ``f(W) = (t(W)/W - t_cached) / (t_memory - t_cached)`` clipped to [0, 1], with ``t_cached``
  the median time per MiB of the 1, 2 and 4 MiB Gemms and ``t_memory`` that of the 128 MiB one, each point of the
  curve first raised to the largest at or below its size (the curve never falls with size).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from edgebench.prune.allocation.latency.table import LUT_TIMING, LatencyTable, LayerShape, layer_input, layer_onnx
from edgebench.runtimes.base import BackendSettings, get_backend

#: MiB of fp32 weights of the cache curve's Gemms; a model no larger than the first pays nothing
CURVE_MIB = (1, 2, 4, 8, 16, 32, 64, 128)
#: timed calls per cold entry, each after an eviction (the median is kept)
COLD_CALLS = 30
_MIB = 2**20


def gemm_shape(mib: float) -> LayerShape:
    """The square Gemm holding ``mib`` MiB of fp32 weights."""
    n = max(1, round(math.sqrt(mib * _MIB / 4)))
    return LayerShape("Gemm", n, n)


def weights_mib(shapes: Iterable[LayerShape]) -> float:
    """MiB of fp32 weights and biases of the layers ``shapes``."""
    return sum(shape.weight_bytes for shape in shapes) / _MIB


class CacheCurve:
    """The fraction of the cold excess a model pays at its weight size, read from Gemm entries of ``table``."""

    def __init__(self, table: LatencyTable, call_overhead_ms: float) -> None:
        self.table, self.call_overhead_ms = table, call_overhead_ms

    def per_mib_ms(self) -> list[float]:
        """Each curve Gemm's time per MiB of weights, less the call overhead (measured the first time)."""
        return [max(self.table.latency(gemm_shape(mib)) - self.call_overhead_ms, 0.0) * _MIB
                / gemm_shape(mib).weight_bytes for mib in CURVE_MIB]

    def fraction(self, mib: float) -> float:
        """``f(mib)``: 0 while ``mib`` MiB of weights stay cached, 1 once they all come from memory. The curve is
        read as never falling with size (each point the largest per-MiB time at or below its size): more weights
        cannot keep more of themselves cached. OpenVINO's Gemms on an Intel guest ran slower per MiB at 4-8 MiB than
        at 32-128 MiB in two runs, which gave a 3.5 MiB model f = 0.30 and a 56 MiB one f = 0.01."""
        if mib <= CURVE_MIB[0]:
            return 0.0
        per_mib = np.maximum.accumulate(self.per_mib_ms())
        cached, memory = float(np.median(per_mib[:3])), float(per_mib[-1])
        if memory <= cached:  # no cache effect this runtime shows
            return 0.0
        return float(np.clip((np.interp(mib, CURVE_MIB, per_mib) - cached) / (memory - cached), 0.0, 1.0))


def _evict_bytes() -> int:
    """Twice the largest CPU cache sysfs lists, and at least 64 MiB: reading that much evicts a layer's weights."""
    largest = 0
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            largest = max(largest, int(digits) * scale)
    return max(64 * _MIB, 2 * largest)


def cold_layer_timer(backend: str, settings: BackendSettings) -> Callable[[LayerShape], float]:
    """A function measuring one layer's median ms on ``backend`` with its weights evicted before each call."""
    buffer: list[np.ndarray] = []  # allocated at the first measurement: most models never need one

    def measure(shape: LayerShape) -> float:
        if not buffer:
            buffer.append(np.ones(_evict_bytes() // 8))
        evict = buffer[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layer.onnx"
            layer_onnx(shape, path)
            x = layer_input(shape)
            session = get_backend(backend).load(path, settings)
            try:
                for _ in range(LUT_TIMING.warmup_iters):
                    session.run(x)
                times = []
                for _ in range(COLD_CALLS):
                    evict.sum()  # outside the timed call
                    start = time.perf_counter_ns()
                    session.run(x)
                    session.sync()
                    times.append(time.perf_counter_ns() - start)
            finally:
                session.close()
        return float(np.median(times)) / 1e6

    return measure


class CacheCosts:
    """The cold entries of one target's runtime and its cache curve: what a model's layers pay beyond their
    table entries at its weight size."""

    def __init__(self, table: LatencyTable, cold: LatencyTable, call_shape: LayerShape) -> None:
        self.table, self.cold, self.call_shape = table, cold, call_shape
        self.curve = CacheCurve(table, table.latency(call_shape))

    def layer_excess_ms(self, shape: LayerShape) -> float:
        """What ``shape`` pays beyond its table entry with its weights evicted (less eviction's own cost)."""
        eviction = max(self.cold.latency(self.call_shape) - self.table.latency(self.call_shape), 0.0)
        return max(self.cold.latency(shape) - self.table.latency(shape) - eviction, 0.0)

    def excess_ms(self, shapes: list[LayerShape]) -> tuple[float, float]:
        """``(f, ms)``: the fraction ``f`` of the cold excess the layers ``shapes`` pay together at their weight
        size, and ``f`` times their summed excess (cold entries are measured only when ``f`` > 0)."""
        fraction = self.curve.fraction(weights_mib(shapes))
        if fraction == 0.0:
            return 0.0, 0.0
        return fraction, fraction * sum(self.layer_excess_ms(shape) for shape in shapes)
