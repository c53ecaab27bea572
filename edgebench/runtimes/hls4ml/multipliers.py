"""Multipliers of an hls4ml firmware, counted from the converted model (not synthesised).

With the latency strategy each weight of a Conv/Dense layer gets its own multiplier at reuse factor 1, and a
weight is a compile-time constant of the firmware, so HLS removes every multiplication by a constant zero:
a layer needs ``ceil(non-zero weights / reuse factor)`` multipliers, against ``ceil(weights / reuse factor)``
dense. A weight counts as zero when it is zero *after* quantisation to the layer's ``ap_fixed`` weight type, by
its rounding and overflow modes (truncation, hls4ml's default, sends ``0 <= w < 2**-fractional_bits`` to zero).
These are counts from the hls4ml model, labelled as such in the report; DSP/LUT figures come only from a synthesis
report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: how the figures were obtained, stored with them
METHOD = "counted from the hls4ml model, not synthesised: one multiplier per non-zero quantised weight / reuse factor"


#: AP quantisation modes: the integer a scaled value ``x`` (weight x 2**fractional_bits) becomes
AP_ROUNDING = {
    "TRN": np.floor,  # towards minus infinity (the AP default)
    "TRN_ZERO": np.trunc,
    "RND": lambda x: np.floor(x + 0.5),  # halves towards plus infinity
    "RND_ZERO": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
    "RND_MIN_INF": lambda x: np.ceil(x - 0.5),
    "RND_INF": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "RND_CONV": np.round,  # halves to even
}


def _mode(value: Any, default: str) -> str:
    """An hls4ml rounding/saturation mode (enum or text, with or without ``AP_``) as its bare name."""
    return str(value or default).upper().removeprefix("AP_")


def quantised_nonzero(weights: np.ndarray, precision: Any) -> int:
    """Weights that stay non-zero in ``precision`` (an hls4ml fixed-point type; others: exact zeros only), by the
    AP types' rounding (``AP_ROUNDING``) and overflow: WRAP keeps the low ``width`` bits (a weight of exactly
    2**integer wraps to 0), SAT and SAT_SYM clip (an unsigned type clips negatives to 0), SAT_ZERO sends an
    overflow to 0. WRAP with saturation bits is counted as plain WRAP."""
    width, integer = getattr(precision, "width", None), getattr(precision, "integer", None)
    if width is None or integer is None:
        return int(np.count_nonzero(weights))
    rounding = AP_ROUNDING[_mode(getattr(precision, "rounding_mode", None), "TRN")]
    q = rounding(np.asarray(weights, dtype=np.float64) * 2.0 ** (width - integer))
    signed = bool(getattr(precision, "signed", True))
    low, high = (-(2.0 ** (width - 1)), 2.0 ** (width - 1) - 1) if signed else (0.0, 2.0**width - 1)
    overflow = _mode(getattr(precision, "saturation_mode", None), "WRAP")
    if overflow == "WRAP":
        q = np.mod(q, 2.0**width)  # zero exactly where the wrapped value is
    elif overflow == "SAT_ZERO":
        q = np.where((q < low) | (q > high), 0.0, q)
    else:  # SAT, SAT_SYM: clipped, so zero only where the range's end is (negatives into an unsigned type)
        q = np.clip(q, low, high)
    return int(np.count_nonzero(q))


def weight_bytes(hls_model: Any) -> int:
    """Bytes of every layer's weights, biases and scales at their own fixed-point widths: what the firmware holds
    of the model (a 16-bit weight counts 2 bytes, a 6-bit one 0.75)."""
    bits = 0
    for layer in hls_model.get_layers():
        for variable in (layer.weights.values() if hasattr(layer, "weights") else ()):
            width = getattr(variable.type.precision, "width", None)
            bits += int(np.size(variable.data)) * int(width if width is not None else 32)
    return math.ceil(bits / 8)


def count_multipliers(hls_model: Any) -> dict[str, Any]:
    """Per Conv/Dense layer and in total: weights, non-zero quantised weights, reuse factor, multipliers."""
    layers = {}
    for layer in hls_model.get_layers():
        weight = layer.weights.get("weight") if hasattr(layer, "weights") else None
        if weight is None or np.ndim(weight.data) < 2:
            continue
        reuse = int(layer.get_attr("reuse_factor") or 1)
        nonzero = quantised_nonzero(weight.data, weight.type.precision)
        layers[layer.name] = {
            "weights": int(np.size(weight.data)),
            "nonzero": nonzero,
            "reuse_factor": reuse,
            "multipliers": math.ceil(nonzero / reuse),
            "dense_multipliers": math.ceil(np.size(weight.data) / reuse),
        }
    return {
        "method": METHOD,
        "multipliers": sum(v["multipliers"] for v in layers.values()),
        "dense_multipliers": sum(v["dense_multipliers"] for v in layers.values()),
        "layers": layers,
    }


#: how the bit operations were obtained, stored with them
BOPS_METHOD = ("counted from the hls4ml model, not synthesised: MACs x weight bits x input bits per Conv/Dense "
               "layer (Baskin et al.'s BOPs)")


def _layer_macs(layer: Any) -> int | None:
    """Multiply-accumulates of one Conv/Dense layer of an hls4ml model per sample, from its shape attributes."""
    attr = layer.get_attr
    if attr("n_in") is not None and attr("n_out") is not None and attr("n_filt") is None:
        return int(attr("n_in")) * int(attr("n_out"))
    if attr("n_filt") is None:
        return None
    outputs = int(attr("out_height") or 1) * int(attr("out_width") or 1) * int(attr("n_filt"))
    return outputs * int(attr("n_chan")) * int(attr("filt_height") or 1) * int(attr("filt_width") or 1)


def bit_operations(hls_model: Any) -> dict[str, Any]:
    """Bit operations (BOPs) per Conv/Dense layer and in total, and the multipliers grouped by their operand widths
    (``"4x4"``: a 4-bit weight times a 4-bit input) at reuse factor 1: the FPGA cost proxy that needs no synthesis."""
    layers, by_width = {}, {}
    for layer in hls_model.get_layers():
        weight = layer.weights.get("weight") if hasattr(layer, "weights") else None
        if weight is None or np.ndim(weight.data) < 2:
            continue
        macs = _layer_macs(layer)
        if macs is None:
            continue
        w_bits = int(getattr(weight.type.precision, "width", 0) or 0)
        x_bits = int(getattr(layer.get_input_variable().type.precision, "width", 0) or 0)
        key = f"{w_bits}x{x_bits}"
        multipliers = quantised_nonzero(weight.data, weight.type.precision)
        by_width[key] = by_width.get(key, 0) + multipliers
        layers[layer.name] = {"macs": macs, "weight_bits": w_bits, "input_bits": x_bits, "bops": macs * w_bits * x_bits}
    return {"method": BOPS_METHOD, "bops": sum(v["bops"] for v in layers.values()), "multipliers_by_width": by_width,
            "layers": layers}
