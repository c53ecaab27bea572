"""The latency model's cache term: the cache curve's fraction and the cold excess, on tables written by hand, and the
cold timer on a real runtime."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.prune.allocation.latency.cache import (
    CURVE_MIB,
    CacheCosts,
    CacheCurve,
    cold_layer_timer,
    gemm_shape,
    weights_mib,
)
from edgebench.prune.allocation.latency.predict import predict_p50
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape
from edgebench.runtimes.base import BackendSettings

CALL = LayerShape("Conv", 1, 1)
#: time per MiB of weights of each curve Gemm (ms): cached up to 8 MiB, from memory from 64 MiB
PER_MIB = dict(zip(CURVE_MIB, (0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.06, 0.06), strict=True))
BIG = LayerShape("Gemm", 8192, 4096)  # 128 MiB and 16 KiB of weights and bias: all from memory
SMALL = LayerShape("Gemm", 256, 256)  # 0.25 MiB: stays cached


def hot_entries() -> dict[LayerShape, float]:
    """A table written by hand: a call costs 0.01 ms, a curve Gemm that plus its MiB times ``PER_MIB``."""
    curve = {gemm_shape(mib): 0.01 + per * gemm_shape(mib).weight_bytes / 2**20 for mib, per in PER_MIB.items()}
    return {CALL: 0.01, BIG: 2.01, SMALL: 0.05, **curve}


def test_weight_bytes_count_weights_and_bias_in_fp32() -> None:
    # by hand: 3x3 conv 16 -> 32: 32 x 16 x 9 weights + 32 biases = 4640 floats; depthwise 16 channels: 16 x 9 + 16
    assert LayerShape("Conv", 16, 32, (3, 3)).weight_bytes == 4 * 4640
    assert LayerShape("Conv", 16, 16, (3, 3), groups=16).weight_bytes == 4 * 160
    assert LayerShape("Gemm", 512, 10).weight_bytes == 4 * 5130
    assert weights_mib([BIG]) == pytest.approx(128 + 16 / 1024)
    assert gemm_shape(4).weight_bytes == pytest.approx(4 * 2**20, rel=1e-3)


def test_cache_fraction_is_where_a_gemm_of_that_size_sits_between_cached_and_memory_speed() -> None:
    curve = CacheCurve(LatencyTable(None, "t", "r", "v", hot_entries().__getitem__), call_overhead_ms=0.01)
    assert curve.per_mib_ms() == pytest.approx(list(PER_MIB.values()))
    # by hand: cached speed = median(0.02, 0.02, 0.02) = 0.02 ms/MiB, memory speed = 0.06 (the 128 MiB Gemm);
    # 24 MiB lies halfway between 16 (0.03) and 32 MiB (0.05): 0.04 ms/MiB, so f = (0.04 - 0.02) / 0.04 = 0.5
    assert curve.fraction(24) == pytest.approx(0.5)
    assert curve.fraction(48) == pytest.approx((0.055 - 0.02) / 0.04)
    assert curve.fraction(8) == 0.0 and curve.fraction(0.5) == 0.0  # cached speed, and below the curve
    assert curve.fraction(1000) == 1.0  # beyond the curve: all from memory


def test_the_curve_never_falls_with_size() -> None:
    bump = dict(zip(CURVE_MIB, (0.02, 0.02, 0.02, 0.05, 0.03, 0.03, 0.04, 0.06), strict=True))  # slow at 8 MiB
    entries = {gemm_shape(mib): 0.01 + per * gemm_shape(mib).weight_bytes / 2**20 for mib, per in bump.items()}
    curve = CacheCurve(LatencyTable(None, "t", "r", "v", entries.__getitem__), call_overhead_ms=0.01)
    # by hand: read as never falling, the curve is 0.02, 0.02, 0.02, 0.05, 0.05, 0.05, 0.05, 0.06 ms/MiB: cached
    # 0.02, memory 0.06, so 8 MiB and everything up to 64 MiB sit at (0.05 - 0.02) / 0.04 = 0.75, and 96 MiB,
    # halfway from 64 to 128, at (0.055 - 0.02) / 0.04
    assert curve.fraction(8) == pytest.approx(0.75)
    assert curve.fraction(48) == pytest.approx(0.75)  # the raw curve would say (0.035 - 0.02) / 0.04 = 0.375
    assert curve.fraction(96) == pytest.approx((0.055 - 0.02) / 0.04)


def test_a_runtime_whose_gemms_show_no_cache_effect_adds_nothing() -> None:
    flat = {gemm_shape(mib): 0.01 + 0.02 * gemm_shape(mib).weight_bytes / 2**20 for mib in CURVE_MIB}
    curve = CacheCurve(LatencyTable(None, "t", "r", "v", flat.__getitem__), call_overhead_ms=0.01)
    assert curve.fraction(100) == 0.0


def test_prediction_adds_the_cold_excess_the_weight_size_implies() -> None:
    cold_asked: list[LayerShape] = []

    def cold(shape: LayerShape) -> float:
        cold_asked.append(shape)
        return {CALL: 0.03, BIG: 5.03}[shape]

    table = LatencyTable(None, "t", "r", "v", hot_entries().__getitem__)
    cache = CacheCosts(table, LatencyTable(None, "t", "r cold", "v", cold), CALL)
    prediction = predict_p50([SMALL], [BIG], table, unpruned_p50_ms=10.01, call_overhead_ms=0.01, cache=cache)
    # by hand: eviction costs a call 0.03 - 0.01 = 0.02 ms. The unpruned 128 MiB pays all its cold excess (f = 1):
    # (2.01 - 0.01) + 1 x (5.03 - 2.01 - 0.02) = 2.0 + 3.0 = 5.0 ms; the 0.25 MiB variant none: 0.05 - 0.01 =
    # 0.04 ms. Prediction: 0.01 + (10.01 - 0.01) x 0.04 / 5.0 = 0.09 ms (without the cache term 0.01 + 10 x 0.04 /
    # 2.0 = 0.21 ms)
    assert prediction.unpruned_table_ms == pytest.approx(5.0) and prediction.table_ms == pytest.approx(0.04)
    assert prediction.p50_ms == pytest.approx(0.09)
    assert prediction.cache_fraction == 0.0 and prediction.unpruned_cache_fraction == 1.0
    assert prediction.weights_mib == pytest.approx(weights_mib([SMALL]))
    assert SMALL not in cold_asked  # a variant whose weights stay cached needs no cold entry
    plain = predict_p50([SMALL], [BIG], table, unpruned_p50_ms=10.01, call_overhead_ms=0.01)
    assert plain.p50_ms == pytest.approx(0.21)


def test_cold_timer_times_a_layer_on_a_real_runtime() -> None:
    pytest.importorskip("onnxruntime")
    measure = cold_layer_timer("onnxruntime", BackendSettings(threads=1, device="cpu"))
    ms = measure(LayerShape("Conv", 8, 8, (3, 3), (1, 1), (1, 1), (8, 8)))
    assert np.isfinite(ms) and 0 < ms < 1000
