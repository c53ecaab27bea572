"""hls4ml's AP fixed-point type notation, checked before any work: ``ap_fixed<W,I[,Q[,O[,N]]]>``,
``ap_ufixed<...>``, ``ap_int<W>``, ``ap_uint<W>`` (the ``ap_`` optional). A misspelt type passed to hls4ml fails its
conversion after training, with an error about an enum; the experiment's ``quantization.fixed_point`` and a target
file's ``fpga.default_precision`` are checked here alike."""

from __future__ import annotations

import re

#: the widest AP type Vivado/Vitis HLS builds by default (AP_INT_MAX_W)
AP_MAX_WIDTH = 1024
#: the notation's grammar (modes checked by :func:`fixed_point_modes_problem`)
FIXED_POINT = re.compile(r"^(ap_)?u?(fixed<\s*\d+\s*,\s*-?\d+\s*(,\s*\w+\s*){0,3}>|int<\s*\d+\s*>)$")
#: the quantization (rounding) and overflow modes of AP fixed-point types that hls4ml converts (its RoundingMode and
#: SaturationMode: Vitis HLS's AP_WRAP_SM is not among them), ``AP_`` optional
ROUNDING_MODES = ("AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV", "AP_TRN", "AP_TRN_ZERO")
OVERFLOW_MODES = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP")


def ap_type_problem(text: str) -> str | None:
    """Why ``text`` is not an AP type hls4ml builds, or None: the grammar, the
    rounding/overflow modes and the width, so a misspelt type fails before training, not in the conversion after."""
    if not FIXED_POINT.match(text):
        return "not an hls4ml fixed-point type; use e.g. ap_fixed<16,6> (width, integer bits)"
    if problem := fixed_point_modes_problem(text):
        return problem
    width = int(re.search(r"<\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    if not 1 <= width <= AP_MAX_WIDTH:
        return f"a width of {width} bits; Vivado HLS's AP types take 1 to {AP_MAX_WIDTH} (e.g. ap_fixed<16,6>)"
    return None


def fixed_point_modes_problem(text: str) -> str | None:
    """What is wrong with the rounding, overflow and saturation-bit fields of an AP fixed-point type (None: nothing):
    a misspelt mode passed to hls4ml fails its conversion after training, with an error about an enum."""
    fields = [f.strip() for f in text[text.index("<") + 1:-1].split(",")][2:] if "fixed<" in text else []
    for field, what, modes in zip(fields, ("rounding", "overflow"), (ROUNDING_MODES, OVERFLOW_MODES)):
        if f"AP_{field.upper().removeprefix('AP_')}" not in modes:
            return f"{what} mode '{field}' is not one of {', '.join(modes)}"
    if len(fields) == 3 and not fields[2].isdigit():
        return f"saturation bits '{fields[2]}' must be a number"
    return None
