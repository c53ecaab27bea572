"""Quantization-aware Conv2d / Linear: input and weight fake quantizers, BatchNorm folded into the weights.

A BatchNorm after a convolution is folded the way it is deployed: ``w * gamma / sigma`` is what gets quantized
(Jacob et al. 2018, section 3.2; torch.ao's ConvBn2d). While training, the convolution of the quantized folded
weights is divided by ``gamma / sigma`` again and batch-normalised with batch statistics, so BN keeps training;
in eval mode the layer is exactly the deployed one: ``conv(q(x), q(w_folded)) + q(b_folded)``, the bias quantized
to 32-bit integers of step ``input_scale * weight_scale`` as int8 runtimes store it. The wrapped modules are
called through ``functional_call``, so hooks on them (MAC counting) still see every forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from edgebench.quantization.fake_quant import ActivationQuantizer, QParams, WeightQuantizer

#: bias integers are 32-bit, as in ONNX QDQ and TFLite int8
BIAS_BITS = 32


@dataclass(frozen=True)
class LayerQuant:
    """What an exporter needs of one quantized layer: its float input/weight quantizers and quantized tensors."""

    name: str
    kind: str  # "conv" or "linear"
    input: QParams
    weight: QParams
    weight_q: torch.Tensor  # dequantized weights (exactly ``codes * scale``)
    bias_q: torch.Tensor  # dequantized bias (exactly ``codes * input_scale * weight_scale``)

    @property
    def bias_scale(self) -> torch.Tensor:
        return self.input.scale * self.weight.scale


class QuantLayer(nn.Module):
    """A Conv2d or Linear (with an optional folded BatchNorm) whose input and weights are fake-quantized."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | None, weight_bits: int,
                 activation_bits: int, power_of_two: bool) -> None:
        super().__init__()
        self.layer = layer
        self.bn = bn
        self.input_quant = ActivationQuantizer(activation_bits, power_of_two)
        self.weight_quant = WeightQuantizer(weight_bits, power_of_two)

    def _shape(self, v: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast over the layer's weight."""
        return v.reshape(-1, *([1] * (self.layer.weight.dim() - 1)))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Float weight and bias with the BatchNorm's running statistics folded in."""
        w = self.layer.weight
        b = self.layer.bias if self.layer.bias is not None else torch.zeros(len(w), device=w.device)
        if self.bn is None:
            return w, b
        bn = self.bn
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return w * self._shape(factor), bn.bias + (b - bn.running_mean) * factor

    def quantized(self) -> tuple[torch.Tensor, torch.Tensor, QParams, QParams]:
        """The deployed (dequantized) weight and bias with their quantizers, from the frozen input range."""
        w, b = self.folded()
        wq = self.weight_quant.qparams(w)
        iq = self.input_quant.qparams()
        bias_scale = (iq.scale * wq.scale).reshape(-1)
        limit = 2 ** (BIAS_BITS - 1)
        bias_codes = torch.clamp(torch.round(b / bias_scale), -limit, limit - 1)
        return self.weight_quant(w), bias_codes * bias_scale, iq, wq

    def export(self, name: str) -> LayerQuant:
        """This layer's quantizers and tensors for an exporter (eval mode)."""
        with torch.no_grad():
            weight, bias, iq, wq = self.quantized()
        kind = "conv" if isinstance(self.layer, nn.Conv2d) else "linear"
        return LayerQuant(name, kind, iq, wq, weight.detach().clone(), bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        if not self.training or self.bn is None:
            if self.training:  # no BatchNorm: quantize the weights, keep the float bias trainable
                w = self.weight_quant(self.layer.weight)
                return functional_call(self.layer, {"weight": w, "bias": self.layer.bias}, (x,))
            weight, bias, _, _ = self.quantized()
            return functional_call(self.layer, {"weight": weight, "bias": bias}, (x,))
        bn = self.bn
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.weight_quant(self.layer.weight * self._shape(factor))
        y = functional_call(self.layer, {"weight": weight, "bias": None}, (x,))
        y = y / factor.reshape(1, -1, *([1] * (y.dim() - 2)))
        if self.layer.bias is not None:
            y = y + self.layer.bias.reshape(1, -1, *([1] * (y.dim() - 2)))
        return bn(y)  # batch statistics; updates the running ones that the folded weights use
