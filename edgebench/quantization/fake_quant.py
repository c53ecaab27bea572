"""Fake quantizers: quantize then dequantize in float, so training sees the deployed arithmetic.

``q = clamp(round(x / scale) + zero_point, qmin, qmax)``, ``x_hat = (q - zero_point) * scale``, rounding half to
even (``torch.fake_quantize_*``, ONNX QuantizeLinear and ``ap_fixed``'s ``AP_RND_CONV`` all round so); the gradient
passes straight through inside the range and is zero outside it (the straight-through estimator, Bengio et al.
2013, as in Jacob et al. 2018).

Weights are symmetric in a narrow range ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with their scale taken from the current
weights at every step; activations (the input of each Conv/Linear) are per tensor, with a range tracked as an
exponential moving average of batch extremes while training and frozen in eval mode. A power-of-two scale
``2^-f`` is the step of a fixed-point type with ``f`` fractional bits, which is what makes the FPGA path exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

#: weight of the newest batch in the activation range's moving average (torch.ao uses 0.01 over many more
#: batches per epoch than the small data sets edgebench trains on)
RANGE_MOMENTUM = 0.1


def weight_qmax(bits: int) -> int:
    """Largest integer of a symmetric narrow-range weight code of ``bits`` bits (127 for 8)."""
    return 2 ** (bits - 1) - 1


def power_of_two_at_least(value: torch.Tensor) -> torch.Tensor:
    """The smallest power of two >= ``value`` (elementwise; 1 where ``value`` is 0)."""
    value = torch.where(value > 0, value, torch.ones_like(value))
    return torch.exp2(torch.ceil(torch.log2(value)))


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int,
                  axis: int | None = None) -> torch.Tensor:
    """Quantize-dequantize ``x`` (per tensor, or per channel along ``axis``) with the straight-through gradient."""
    zero_point = zero_point.to(torch.int32)
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()).float(), zero_point.reshape(()), qmin, qmax)
    return torch.fake_quantize_per_channel_affine(x, scale.float(), zero_point, axis, qmin, qmax)


@dataclass(frozen=True)
class QParams:
    """A quantizer's frozen parameters, as exporters read them."""

    bits: int
    scale: torch.Tensor  # scalar, or one per output channel
    zero_point: torch.Tensor  # int, same shape as scale
    qmin: int
    qmax: int
    axis: int | None = None

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    @property
    def fractional_bits(self) -> int:
        """``f`` of a per-tensor power-of-two scale ``2^-f`` (ValueError for other scales)."""
        f = -math.log2(float(self.scale))
        if self.scale.numel() != 1 or f != round(f) or int(self.zero_point) != 0:
            raise ValueError(f"scale {self.scale.tolist()} (zero point {self.zero_point.tolist()}) is not one power of "
                             "two with zero point 0, so it is no fixed-point type")
        return round(f)


class WeightQuantizer(nn.Module):
    """Symmetric weight quantizer: per output channel (``power_of_two=False``) or one power-of-two scale."""

    def __init__(self, bits: int, power_of_two: bool = False) -> None:
        super().__init__()
        self.bits = bits
        self.power_of_two = power_of_two

    def qparams(self, weight: torch.Tensor) -> QParams:
        """Scale ``max|w| / qmax`` per channel, or the power of two at least ``max|w| / qmax`` over the tensor."""
        qmax = weight_qmax(self.bits)
        w = weight.detach()
        if self.power_of_two:
            scale = power_of_two_at_least(w.abs().max() / qmax)
            return QParams(self.bits, scale, torch.zeros((), dtype=torch.int32), -qmax, qmax)
        max_abs = w.abs().reshape(len(w), -1).amax(dim=1)
        scale = torch.where(max_abs > 0, max_abs / qmax, torch.ones_like(max_abs))
        return QParams(self.bits, scale, torch.zeros(len(w), dtype=torch.int32), -qmax, qmax, axis=0)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        p = self.qparams(weight)
        return fake_quantize(weight, p.scale, p.zero_point, p.qmin, p.qmax, p.axis)


class ActivationQuantizer(nn.Module):
    """Per-tensor activation quantizer over a moving-average range, frozen in eval mode.

    ``power_of_two=False``: affine ``[lo, hi]`` (0 included) onto ``0 .. 2^b - 1`` with a zero point (ONNX
    Runtime's u8 activations). ``power_of_two=True``: zero point 0, unsigned ``0 .. 2^b - 1`` when the range
    is non-negative (after a ReLU), else signed ``-2^(b-1) .. 2^(b-1) - 1``, scale the smallest power of two that
    covers the range: an ``ap_ufixed`` / ``ap_fixed`` type.
    """

    def __init__(self, bits: int, power_of_two: bool = False, momentum: float = RANGE_MOMENTUM) -> None:
        super().__init__()
        self.bits = bits
        self.power_of_two = power_of_two
        self.momentum = momentum
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("observed", torch.zeros((), dtype=torch.bool))

    def observe(self, x: torch.Tensor) -> None:
        """Move the tracked range towards this batch's extremes (the first batch sets it)."""
        lo, hi = x.detach().min(), x.detach().max()
        if not bool(self.observed):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.observed.fill_(True)
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def qparams(self) -> QParams:
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        if self.power_of_two:
            if float(lo) >= 0:
                qmin, qmax = 0, 2**self.bits - 1
                scale = power_of_two_at_least(hi / qmax)
            else:
                qmin, qmax = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
                scale = power_of_two_at_least(torch.maximum(hi / qmax, lo / qmin))
            return QParams(self.bits, scale, torch.zeros((), dtype=torch.int32), qmin, qmax)
        qmax = 2**self.bits - 1
        span = hi - lo
        scale = torch.where(span > 0, span / qmax, torch.ones_like(span))
        zero_point = torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int32)
        return QParams(self.bits, scale, zero_point, 0, qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(x)
        p = self.qparams()
        return fake_quantize(x, p.scale, p.zero_point, p.qmin, p.qmax)
