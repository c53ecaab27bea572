"""Power-of-two quantizers as hls4ml ``ap_fixed`` types, layer by layer, so the firmware is bit-exact.

A quantizer of ``b`` bits with scale ``2^-f`` and zero point 0 is exactly ``ap_fixed<b, b-f>`` (signed) or
``ap_ufixed<b, b-f>`` (unsigned); with ``AP_RND_CONV`` (round half to even, like ``torch.fake_quantize``) and
``AP_SAT`` (clamp) an assignment to that type *is* the quantizer. So for each quantized layer:

- weights ``ap_fixed<bw, bw-fw>`` and bias ``ap_fixed<32, 32-fb>`` (``fb = fx + fw``) hold the trained codes exactly;
- the accumulator and the layer's result have ``fx + fw`` fractional bits and enough integer bits for the largest
  possible sum, so nothing is rounded or wrapped inside the layer;
- the layer's input quantizer becomes the result type of the operators that feed it (ReLU, MaxPool, Flatten,
  or the model input): the ReLU's output assignment rounds and saturates exactly as the fake quantizer does,
  and max-pooling and flattening commute with a monotonic quantizer.
The logits leave the last layer's exact accumulator type. Where float32 holds every intermediate sum exactly
(below 2^24 steps, true of these bit widths on small CNNs), the C simulation equals the fake-quantized PyTorch
model bit for bit, which ``tests/test_quantization_fpga.py`` checks on every test vector.
"""

from __future__ import annotations

import math
from typing import Any

from torch import fx, nn

from edgebench.errors import UnsupportedModelError
from edgebench.quantization.fake_quant import QParams
from edgebench.quantization.modules import BIAS_BITS, LayerQuant

#: module types whose result type may carry the next layer's input quantizer
_CARRIERS = (nn.ReLU, nn.MaxPool2d, nn.Flatten)


def ap_type(bits: int, fractional: int, signed: bool, quantizer: bool = True) -> str:
    """``ap_fixed<bits, bits - fractional>`` (``ap_ufixed`` unsigned), rounding to even and saturating when it
    acts as a quantizer."""
    modes = ",AP_RND_CONV,AP_SAT" if quantizer else ""
    return f"ap_{'' if signed else 'u'}fixed<{bits},{bits - fractional}{modes}>"


def quantizer_type(q: QParams) -> str:
    """The ``ap_fixed`` type that is the power-of-two quantizer ``q``."""
    return ap_type(q.bits, q.fractional_bits, q.signed)


def accumulator_type(layer: LayerQuant, fan_in: int) -> str:
    """An exact accumulator for ``layer``: ``fx + fw`` fractional bits, integer bits for ``fan_in`` products at
    their extremes plus the largest bias."""
    fractional = layer.input.fractional_bits + layer.weight.fractional_bits
    x_max = max(-layer.input.qmin, layer.input.qmax) * 2.0 ** -layer.input.fractional_bits
    w_max = layer.weight.qmax * 2.0 ** -layer.weight.fractional_bits
    bound = fan_in * x_max * w_max + float(layer.bias_q.abs().max())
    integer = max(math.floor(math.log2(bound)) + 2, 1) if bound > 0 else 1  # + sign bit + the floor's bit
    return ap_type(integer + fractional, fractional, signed=True, quantizer=False)


def _node_names(model: nn.Module) -> tuple[dict[str, fx.Node], dict[str, nn.Module]]:
    graph = fx.symbolic_trace(model).graph
    return {n.target: n for n in graph.nodes if n.op == "call_module"}, dict(model.named_modules())


def hls_precisions(model: nn.Module, layers: list[LayerQuant]) -> dict[str, dict[str, str]]:
    """hls4ml ``LayerName -> Precision`` settings of ``model`` (``qat.deployable``'s plain model) that make its
    firmware compute exactly what the fake-quantized model computes.

    Raises UnsupportedModelError when a layer's input does not come from the model input or through ReLU,
    MaxPool2d and Flatten modules from another layer (a residual add, say, has no exact fixed-point carrier here).
    """
    nodes, modules = _node_names(model)
    settings: dict[str, dict[str, str]] = {}
    for layer in layers:
        module = modules[layer.name]
        node = nodes[layer.name]
        fan_in = module.weight[0].numel()
        accum = accumulator_type(layer, fan_in)
        bias_fraction = layer.input.fractional_bits + layer.weight.fractional_bits
        settings[node.name] = {
            "weight": quantizer_type(layer.weight),
            "bias": ap_type(BIAS_BITS, bias_fraction, signed=True),
            "accum": accum,
            "result": accum,
        }
        carried = quantizer_type(layer.input)
        source = node.args[0]
        while True:
            if source.op == "placeholder":  # hls4ml names its input layer after fx's node (forward(x): 'x', an
                settings[source.name] = {"result": carried}  # nn.Sequential's 'input': 'input_1')
                break
            kind = modules.get(source.target) if source.op == "call_module" else None
            if not isinstance(kind, _CARRIERS) or len(source.users) != 1:
                raise UnsupportedModelError(
                    f"layer '{layer.name}' reads '{source.name}', which is not the model input, ReLU, MaxPool2d or "
                    "Flatten fed by one layer: no fixed-point type can carry its quantizer bit-exactly")
            # a pool's window is held in its accum type: the carried type keeps it exact too
            settings[source.name] = {"result": carried, **({"accum": carried} if isinstance(kind, nn.MaxPool2d) else {})}
            if isinstance(kind, nn.ReLU):
                break  # the ReLU's output assignment is the quantizer; above it the values are exact
            source = source.args[0]
    return settings


def apply_precisions(config: dict[str, Any], settings: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Write ``settings`` into an hls4ml ``granularity='name'`` config (ValueError for a name it does not have)."""
    names = config["LayerName"]
    missing = sorted(set(settings) - set(names))
    if missing:
        raise ValueError(f"hls4ml named the layers {sorted(names)}, not {missing}")
    for name, precision in settings.items():
        names[name].setdefault("Precision", {}).update(precision)
    return config
