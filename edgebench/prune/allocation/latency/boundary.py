"""What a one-layer model pays at its edges that the same layer inside a model does not (our measurement and
reading, not a published model; ``scripts/bench_latency_model.py`` says how far it gets).

A table entry times a one-layer model, and a runtime may convert that model's input into its own layout, and the
output back, on every call; inside a model that happens once, at the model's edges. On an Intel guest (1 thread)
a 64->64 3x3 conv at 32x32 took 0.742 ms alone and 0.448 ms per layer inside a chain of three on OpenVINO
(0.438 and 0.421 ms on ONNX Runtime), and the gap fell with the tensor's size (512 channels at 4x4: 0.011 ms).
So each tensor's *boundary cost* is measured apart, with a layer that keeps the tensor's shape: a 1x1 conv C->C at
H x W alone (``T1``, a table entry) and three of them in a chain (``T3``), less the call overhead ``c``:
``b(C, H, W) = max(T1 - max((T3 - T1) / 2, 0) - c, 0)``, one conversion in and one out. A conv layer's entry then loses
half the boundary cost of its input tensor and half that of its output tensor.
"""

from __future__ import annotations

from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape

#: layers in the chain that sets the boundary cost apart from the layer's own time
CHAIN_COPIES = 3


def tensor_probe(channels: int, hw: tuple[int, int]) -> LayerShape:
    """The 1x1 conv that keeps a (channels, *hw) tensor's shape: its entry holds that tensor's boundary cost."""
    return LayerShape("Conv", channels, channels, in_hw=hw)


class BoundaryCosts:
    """Boundary costs of one target's runtime, from its table (``T1``) and a table of chains (``T3``)."""

    def __init__(self, table: LatencyTable, chains: LatencyTable, call_overhead_ms: float) -> None:
        self.table, self.chains, self.call_overhead_ms = table, chains, call_overhead_ms

    def tensor_ms(self, channels: int, hw: tuple[int, int]) -> float:
        """``b``: converting a (channels, *hw) tensor in and out of the runtime's layout, once each."""
        probe = tensor_probe(channels, hw)
        alone, chained = self.table.latency(probe), self.chains.latency(probe)
        per_layer = max((chained - alone) / (CHAIN_COPIES - 1), 0.0)  # a chain timed faster than one layer: noise
        return max(alone - per_layer - self.call_overhead_ms, 0.0)

    def layer_ms(self, shape: LayerShape) -> float:
        """What ``shape``'s one-layer model pays at its edges: half of its input's and of its output's ``b``
        (a linear layer's vectors: none)."""
        if shape.op != "Conv":
            return 0.0
        return (self.tensor_ms(shape.c_in, shape.in_hw) + self.tensor_ms(shape.c_out, shape.out_hw)) / 2
