"""What a model's layers pay to fetch their weights from a slower cache than their table entries did.

A table entry times one layer called again and again, so its weights sit in the fastest cache they fit. Inside a
model, every layer's weights are read once per inference with all the model's other weights in between, so they
come from the level that holds the whole model. On an Intel guest (2 MiB L2 per core, 480 MiB L3; ONNX Runtime's
profiler, 1 thread) the 75 %-pruned VGG-16 at CIFAR shape (3.5 MiB of weights) ran its 128->128 3x3 convs at 2x2
(0.56 MiB each) at 2.2-2.9x their table entries, 0.013-0.020 ms more each, while the unpruned model's 9 MiB layers
(past L2 alone already) ran at their entries. On a 2-vCPU AMD EPYC guest (32 MiB L3) the unpruned model's 512->512
3x3 conv at 2x2 took 1.17 ms inside against 0.30 ms alone: its 56 MiB come from memory.

The *cache curve* (:class:`CacheCurve`) reads those speeds off the target's runtime: one-Gemm models of 1 to
128 MiB of weights, timed like table entries (a Gemm at batch 1 reads each weight once: its time per MiB is the
speed at which weights arrive from the level that holds them), each point raised to the largest at or below its
size (more weights cannot keep more of themselves cached). A layer of ``w`` MiB in a model of ``W`` MiB then pays
``w * (g(W) - g(w))`` beyond its entry, ``g`` the curve's time per MiB (flat below its first point): the extra
time of reading its weights from ``W``'s level rather than ``w``'s (our reading of those profiles, not a published
model; ``scripts/bench_latency_model.py`` says how far it gets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cached_property

import numpy as np

from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape

#: MiB of fp32 weights of the cache curve's Gemms; a model no larger than the first pays nothing
CURVE_MIB = (1, 2, 4, 8, 16, 32, 64, 128)
_MIB = 2**20


def gemm_shape(mib: float) -> LayerShape:
    """The square Gemm holding ``mib`` MiB of fp32 weights."""
    n = max(1, round(math.sqrt(mib * _MIB / 4)))
    return LayerShape("Gemm", n, n)


def weights_mib(shapes: Iterable[LayerShape]) -> float:
    """MiB of fp32 weights and biases of the layers ``shapes``."""
    return sum(shape.weight_bytes for shape in shapes) / _MIB


class CacheCurve:
    """Time per MiB of weights at each working-set size, read from Gemm entries of ``table``."""

    def __init__(self, table: LatencyTable, call_overhead_ms: float) -> None:
        self.table, self.call_overhead_ms = table, call_overhead_ms

    def per_mib_ms(self) -> list[float]:
        """Each curve Gemm's time per MiB of weights, less the call overhead (measured the first time)."""
        return [max(self.table.latency(gemm_shape(mib)) - self.call_overhead_ms, 0.0) * _MIB
                / gemm_shape(mib).weight_bytes for mib in CURVE_MIB]

    @cached_property
    def _rising(self) -> np.ndarray:
        """The curve read as never falling with size (OpenVINO's Gemms on an Intel guest ran slower per MiB at 4-8
        MiB than at 32-128 MiB in two runs); read once: ``speed`` is asked twice per layer per estimate."""
        return np.maximum.accumulate(self.per_mib_ms())

    def speed(self, mib: float) -> float:
        """``g(mib)``: ms per MiB of weights read with ``mib`` MiB in the working set, linear between the curve's
        points and flat beyond its ends."""
        return float(np.interp(mib, CURVE_MIB, self._rising))


class CacheCosts:
    """What layers pay beyond their table entries for the weights of the model around them."""

    def __init__(self, table: LatencyTable, call_overhead_ms: float) -> None:
        self.curve = CacheCurve(table, call_overhead_ms)

    def layer_ms(self, shape: LayerShape, model_mib: float) -> float:
        """``w * (g(W) - g(w))`` for a layer of ``w`` MiB of weights in a model of ``W = model_mib``."""
        if model_mib <= CURVE_MIB[0]:  # the whole model sits where one layer does: no curve needed
            return 0.0
        mib = shape.weight_bytes / _MIB
        return mib * max(self.curve.speed(model_mib) - self.curve.speed(mib), 0.0)

    def excess_ms(self, shapes: list[LayerShape]) -> float:
        """What the layers ``shapes``, together one model, pay beyond their entries (the curve is measured only
        for a model of more than its first point)."""
        model_mib = weights_mib(shapes)
        return sum(self.layer_ms(shape, model_mib) for shape in shapes)
