"""Multipliers of an hls4ml firmware, counted from the converted model (not synthesised).

With the latency strategy each weight of a Conv/Dense layer gets its own multiplier at reuse factor 1, and a
weight is a compile-time constant of the firmware, so HLS removes every multiplication by a constant zero:
a layer needs ``ceil(non-zero weights / reuse factor)`` multipliers, against ``ceil(weights / reuse factor)``
dense. A weight counts as zero when it is zero *after* quantisation to the layer's ``ap_fixed`` weight type
(truncation, hls4ml's default, sends ``0 <= w < 2**-fractional_bits`` to zero). These are counts from the
hls4ml model, labelled as such in the report; DSP/LUT figures come only from a synthesis report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: how the figures were obtained, stored with them
METHOD = "counted from the hls4ml model, not synthesised: one multiplier per non-zero quantised weight / reuse factor"


def quantised_nonzero(weights: np.ndarray, precision: Any) -> int:
    """Weights that stay non-zero in ``precision`` (an hls4ml fixed-point type; others: exact zeros only)."""
    width, integer = getattr(precision, "width", None), getattr(precision, "integer", None)
    if width is None or integer is None:
        return int(np.count_nonzero(weights))
    scaled = np.asarray(weights, dtype=np.float64) * 2.0 ** (width - integer)
    rounding = str(getattr(precision, "rounding_mode", "TRN") or "TRN")
    quantised = np.floor(scaled) if rounding.startswith("TRN") else np.round(scaled)
    return int(np.count_nonzero(quantised))


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
