"""The latency model's cache term on tables written by hand: the cache curve's speeds and what a layer pays for the
model around it."""

from __future__ import annotations

import pytest

from edgebench.prune.allocation.latency.cache import CURVE_MIB, CacheCosts, CacheCurve, gemm_shape, weights_mib
from edgebench.prune.allocation.latency.predict import CalibratedTables
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape

CALL = LayerShape("Conv", 1, 1)
#: time per MiB of weights of each curve Gemm (ms): a fast cache up to 8 MiB, a slow one from 64 MiB
PER_MIB = dict(zip(CURVE_MIB, (0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.06, 0.06), strict=True))
SMALL = LayerShape("Gemm", 256, 256)  # 0.25 MiB
EIGHT = gemm_shape(8)  # 1448 x 1448 and a bias: 8.004 MiB


def hot_entries() -> dict[LayerShape, float]:
    """A table written by hand: a call costs 0.01 ms, a curve Gemm that plus its MiB times ``PER_MIB``."""
    curve = {gemm_shape(mib): 0.01 + per * gemm_shape(mib).weight_bytes / 2**20 for mib, per in PER_MIB.items()}
    return {CALL: 0.01, SMALL: 0.05, **curve}


def test_weight_bytes_count_weights_and_bias_in_fp32() -> None:
    # by hand: 3x3 conv 16 -> 32: 32 x 16 x 9 weights + 32 biases = 4640 floats; depthwise 16 channels: 16 x 9 + 16
    assert LayerShape("Conv", 16, 32, (3, 3)).weight_bytes == 4 * 4640
    assert LayerShape("Conv", 16, 16, (3, 3), groups=16).weight_bytes == 4 * 160
    assert LayerShape("Gemm", 512, 10).weight_bytes == 4 * 5130
    assert weights_mib([LayerShape("Gemm", 8192, 4096)]) == pytest.approx(128 + 16 / 1024)
    assert gemm_shape(4).weight_bytes == pytest.approx(4 * 2**20, rel=1e-3)
    assert EIGHT.weight_bytes == 4 * 1449 * 1448


def test_curve_speed_is_the_gemms_time_per_mib_between_and_beyond_its_points() -> None:
    curve = CacheCurve(LatencyTable(None, "t", "r", "v", hot_entries().__getitem__), call_overhead_ms=0.01)
    assert curve.per_mib_ms() == pytest.approx(list(PER_MIB.values()))
    # by hand: 24 MiB lies halfway between 16 (0.03) and 32 MiB (0.05 ms/MiB); 48 MiB halfway from 32 to 64
    assert curve.speed(24) == pytest.approx(0.04) and curve.speed(48) == pytest.approx(0.055)
    assert curve.speed(0.25) == pytest.approx(0.02) and curve.speed(1000) == pytest.approx(0.06)  # flat beyond


def test_the_curve_never_falls_with_size() -> None:
    bump = dict(zip(CURVE_MIB, (0.02, 0.02, 0.02, 0.05, 0.03, 0.03, 0.04, 0.06), strict=True))  # slow at 8 MiB
    entries = {gemm_shape(mib): 0.01 + per * gemm_shape(mib).weight_bytes / 2**20 for mib, per in bump.items()}
    curve = CacheCurve(LatencyTable(None, "t", "r", "v", entries.__getitem__), call_overhead_ms=0.01)
    # by hand: read as never falling, the curve is 0.02, 0.02, 0.02, 0.05, 0.05, 0.05, 0.05, 0.06 ms/MiB
    assert curve.speed(48) == pytest.approx(0.05)  # the raw curve would say 0.035
    assert curve.speed(96) == pytest.approx(0.055)


def test_a_layer_pays_its_weights_at_the_speed_of_the_model_around_it() -> None:
    asked: list[LayerShape] = []

    def lookup(shape: LayerShape) -> float:
        asked.append(shape)
        return hot_entries()[shape]

    cache = CacheCosts(LatencyTable(None, "t", "r", "v", lookup), call_overhead_ms=0.01)
    small = SMALL.weight_bytes / 2**20
    # by hand: in a 24 MiB model, a 0.25 MiB layer reads its weights at 0.04 instead of 0.02 ms/MiB
    assert cache.layer_ms(SMALL, 24) == pytest.approx(small * 0.02)
    assert cache.layer_ms(EIGHT, EIGHT.weight_bytes / 2**20) == 0.0  # alone, it reads them as its entry did
    asked.clear()
    assert cache.layer_ms(SMALL, 1.0) == 0.0 and cache.excess_ms([SMALL, SMALL]) == 0.0  # models up to 1 MiB
    assert asked == []  # ... need no curve


def test_prediction_adds_what_the_layers_pay_for_the_model_around_them() -> None:
    table = LatencyTable(None, "t", "r", "v", hot_entries().__getitem__)
    cache = CacheCosts(table, call_overhead_ms=0.01)
    w = EIGHT.weight_bytes / 2**20
    # by hand: the unpruned model is four 8 MiB Gemms (32 MiB): each entry less the call is 0.02 w ms, and inside
    # the model each reads its weights at g(32) = 0.05 instead of g(8) = 0.02 ms/MiB: + 0.03 w ms each, so its
    # sum is 4 x 0.05 w. The variant, one of those Gemms alone, pays nothing more: 0.02 w. Prediction:
    # 0.01 + (10.01 - 0.01) x 0.02 / 0.2 = 1.01 ms (without the cache term 0.01 + 10 x 0.02 / 0.08 = 2.51 ms)
    prediction = CalibratedTables([EIGHT] * 4, table, unpruned_p50_ms=10.01, call_overhead_ms=0.01, cache=cache).predict([EIGHT])
    assert prediction.unpruned_table_ms == pytest.approx(4 * 0.05 * w, rel=1e-3)
    assert prediction.unpruned_cache_ms == pytest.approx(4 * 0.03 * w, rel=1e-3) and prediction.cache_ms == 0.0
    assert prediction.table_ms == pytest.approx(0.02 * w, rel=1e-3)
    assert prediction.p50_ms == pytest.approx(1.01, rel=1e-3)
    assert prediction.weights_mib == pytest.approx(w)
    plain = CalibratedTables([EIGHT] * 4, table, unpruned_p50_ms=10.01, call_overhead_ms=0.01).predict([EIGHT])
    assert plain.p50_ms == pytest.approx(2.51, rel=1e-3)
