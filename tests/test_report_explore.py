"""The interactive report's data: lineage in words, hover texts and axis values, selector options, detail payload
(the browser behaviour is in test_report_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from store_fixtures import fill_run

from edgebench.report import render_report
from edgebench.report.explore import ALL_TARGETS, details_payload, selector_options, source_data
from edgebench.report.html import _interval_note
from edgebench.report.lineage import lineage
from edgebench.store import Store
from edgebench.store.metrics import METRICS
from edgebench.variants import LowRankSpec, PruneSpec, QuantSpec, SparseSpec, VariantSpec

BASE = VariantSpec(model="digits_cnn", dataset="digits")


def test_lineage_walks_from_the_variant_to_the_trained_baseline() -> None:
    spec = BASE.model_copy(update={
        "prune": PruneSpec(criterion="l1", ratio=0.5, prune_epochs=(2, 4, 6)),
        "quant": QuantSpec(precision="int8", calibrator="entropy", calibration_samples=128),
    })  # fmt: skip
    chain = lineage(spec.model_dump(mode="json"))
    assert [c["label"] for c in chain] == ["l1-0.5-while_training/int8", "l1-0.5-while_training/fp32", "baseline/fp32"]
    assert [c["id"] for c in chain] == [spec.id, spec.parent_id, BASE.id]
    assert chain[0]["step"] == "quantized: int8 static, per-channel, entropy calibration on 128 training images"
    assert chain[1]["step"] == ("filter pruning: l1, 50% of filters removed, schedule while_training "
                                "(pruned after epochs 2, 4, 6), allocation uniform")
    assert chain[2]["step"] == "trained digits_cnn on digits: 8 epochs, batch 64, lr 0.05, seed 0"
    # the LiteRT measurement of this variant recorded minmax (LiteRT's int8 is made from min/max ranges)
    litert = lineage(spec.model_dump(mode="json"), calibrator="minmax")
    assert litert[0]["step"] == "quantized: int8 static, per-channel, minmax calibration on 128 training images"
    assert [c["id"] for c in litert] == [c["id"] for c in chain] and litert[1:] == chain[1:]


def test_a_baseline_from_given_weights_says_so() -> None:
    """A team's weights measured as given (training.epochs 0) read "trained ...: 0 epochs, batch 64, lr 0.05" in the
    lineage, as if edgebench had trained them; fine-tuned ones did not say they started from the team's weights."""
    from edgebench.variants import ModelSource, TrainSpec

    source = ModelSource(weights="/team/ckpt/best.pt", weights_digest="ab" * 32, weights_format="state_dict")
    given = BASE.model_copy(update={"model": "nets.py:build", "source": source, "train": TrainSpec(epochs=0)})
    assert lineage(given.model_dump(mode="json"))[0]["step"] == ("nets.py:build: the given weights (best.pt), as "
                                                                 "given (not trained here)")
    tuned = given.model_copy(update={"train": TrainSpec(epochs=2)})
    assert lineage(tuned.model_dump(mode="json"))[0]["step"] == ("fine-tuned the given weights of nets.py:build on "
                                                                 "digits: 2 epochs, batch 64, lr 0.05, seed 0")


def test_a_pruned_variant_says_the_share_it_removed_where_whole_filters_made_it_differ() -> None:
    """The report said "80% of filters removed" for digits_cnn at 0.8, which keeps 3 + 6 + 13 of 16 + 32 + 64
    filters: 1 - 22/112 = 80.4 % removed. With unit macs, 1 - 30,000/120,000 = 75 % of MACs against 80 % asked."""
    from edgebench.report.lineage import removed_share

    base = {"filters": {"0": 16, "1": 32, "3": 64}, "macs": 120_000}
    pruned = {"filters": {"0": 3, "1": 6, "3": 13}, "macs": 30_000}
    assert removed_share(pruned, base, "filters") == 1 - 22 / 112
    assert removed_share(pruned, base, "macs") == 0.75
    assert removed_share(pruned, None, "filters") is None and removed_share({}, base, "macs") is None
    spec = BASE.model_copy(update={"prune": PruneSpec(criterion="l1", ratio=0.8)})
    chain = lineage(spec.model_dump(mode="json"), removed=1 - 22 / 112)
    assert chain[0]["step"].startswith("filter pruning: l1, 80.4% of filters removed (80% asked), schedule")
    half = BASE.model_copy(update={"prune": PruneSpec(criterion="l1", ratio=0.5)})
    assert "l1, 50% of filters removed, schedule" in lineage(half.model_dump(mode="json"), removed=0.5)[0]["step"]


def test_lineage_of_sparse_lowrank_fixed_point_and_unreadable_specs() -> None:
    sparse = BASE.model_copy(update={"sparse": SparseSpec(method="magnitude", sparsity=0.8)})
    assert lineage(sparse.model_dump(mode="json"))[0]["step"] == "unstructured sparsity: magnitude, 80% of weights zero"
    low = BASE.model_copy(update={"lowrank": LowRankSpec(rank_ratio=0.25),
                                  "quant": QuantSpec(precision="fixed", fixed_point="ap_fixed<16,6>")})
    steps = [c["step"] for c in lineage(low.model_dump(mode="json"))]
    assert steps[:2] == ["quantized: fixed point ap_fixed<16,6>, reuse factor 1 (hls4ml)", "low rank: lrpet, rank ratio 0.25"]
    odd = lineage({"model": "x", "dataset": "y", "from_the_future": 1}, parent_id="abc")
    assert len(odd) == 1 and odd[0]["step"].startswith("spec not readable by this edgebench") and "parent abc" in odd[0]["step"]


def test_hover_texts_axis_values_and_options(sqlite_store: Store) -> None:
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0, "rpi5": 4.0})
    ok = sqlite_store.measurements(run_id).query("status == 'ok'").copy()
    ok.loc[ok.index[0], ["energy_j_per_inference", "energy_source"]] = [0.0025, "estimated:tdp"]
    ok.loc[ok.index[1], ["energy_j_per_inference", "energy_source"]] = [0.001, "measured:rapl"]
    data = source_data(ok, [METRICS["latency"], METRICS["size"], METRICS["accuracy"]])
    assert data["t_energy"][:3] == ["2.5 mJ (estimated)", "1 mJ (measured:rapl)", "— (not measured)"]
    first = ok.iloc[0]
    assert data["size"][0] == first["size_bytes"] / 1024 and data["latency"][0] == first["p50_ms"]
    assert data["t_latency"][0] == f"{first['p50_ms']:.3g} / {first['p90_ms']:.3g} / {first['p99_ms']:.3g} ms"
    # the p50's interval: the error bar's ends on the latency axis, and the hover's line
    low, high = first["p50_low_ms"], first["p50_high_ms"]
    assert low < first["p50_ms"] < high and (data["latency_low"][0], data["latency_high"][0]) == (low, high)
    side = max(first["p50_ms"] - low, high - first["p50_ms"]) / first["p50_ms"]
    shown = re.fullmatch(rf"\[{low:.4g}, {high:.4g}\] ms \(±([0-9.]+)%, {first['ci_confidence']:.0%} confidence\)",
                         data["t_interval"][0])
    assert shown and float(shown[1]) == pytest.approx(100 * side, rel=0.07)  # two digits at least
    ok.loc[ok.index[0], "ci_confidence"] = 0.5  # the hover says the asked confidence, not always 95 %
    assert source_data(ok, [METRICS["latency"]])["t_interval"][0].endswith(", 50% confidence)")
    assert "size_low" not in data  # only latency percentiles have intervals
    assert data["context"][:2] == ["local-cpu · onnxruntime", "rpi5 · onnxruntime"]
    assert set(data["marker"]) == {"circle", "square"}  # fp32, int8
    structured = ok["kind"] == "structured"
    assert data["how"][list(structured).index(True)].startswith(ok.loc[structured, "criterion"].iloc[0] + " · ")
    assert selector_options(ok) == ["local-cpu · onnxruntime", "rpi5 · onnxruntime", ALL_TARGETS]
    assert selector_options(ok[ok["target"] == "rpi5"]) == ["rpi5 · onnxruntime"]


def test_details_payload_is_safe_json_in_the_page(sqlite_store: Store, tmp_path: Path) -> None:
    run_id = fill_run(sqlite_store)
    ok = sqlite_store.measurements(run_id).query("status == 'ok'")
    payload = details_payload(ok, {})
    assert len(payload) == len(ok) and all("profile" not in item for item in payload)
    assert payload[0]["lineage"][-1]["label"] == "baseline/fp32"
    page = render_report(sqlite_store, run_id, tmp_path / "r").read_text()
    embedded = re.search(r'<script type="application/json" id=eb-details>(.*?)</script>', page, re.S)[1]
    assert "<" not in embedded and json.loads(embedded) == json.loads(json.dumps(payload, default=str))
    rows = re.findall(r"<tr(?: class=pareto)? data-i=(\d+)><td class=l>([^<]+)</td>", page)
    assert sorted(int(i) for i, _ in rows) == list(range(len(ok)))  # every source row has its table row
    assert all(payload[int(i)]["label"] == label for i, label in rows)


def test_a_narrow_interval_never_reads_zero_percent(sqlite_store: Store) -> None:
    """A battery's p50 of 0.018452 ms in [0.018447, 0.018457] read '±0.0%' in the hover and the table's tooltip: its
    half-width 5e-6 / 0.018452 is 0.027 %."""
    ok = sqlite_store.measurements(fill_run(sqlite_store, fail_one=False)).copy()
    ok.loc[ok.index[0], ["p50_ms", "p50_low_ms", "p50_high_ms", "ci_confidence"]] = [0.018452, 0.018447, 0.018457, 0.95]
    ok.loc[ok.index[1], ["p50_ms", "p50_low_ms", "p50_high_ms", "ci_confidence"]] = [0.02, 0.0199, 0.0203, 0.95]
    hover = source_data(ok, [METRICS["latency"]])["t_interval"]
    assert hover[:2] == ["[0.01845, 0.01846] ms (±0.027%, 95% confidence)", "[0.0199, 0.0203] ms (±1.5%, 95% confidence)"]
    assert _interval_note(ok.iloc[0], METRICS["latency"]) == "95% interval [0.01845, 0.01846] ms (±0.027%)"
