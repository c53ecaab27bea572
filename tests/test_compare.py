"""Regression comparison on synthetic runs in a real SQLite store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from store_fixtures import MACHINE, fill_run, sqlite_store, synthetic_result, variant_specs  # noqa: F401

from edgebench.store import Store, StoreError
from edgebench.store.compare import compare_runs, parse_min_effects
from edgebench.store.compare_markdown import to_markdown
from edgebench.store.metrics import DEFAULT_MIN_EFFECT
from edgebench.store.record import MeasurementRecord
from edgebench.store.significance import Estimate, decide, quantile_ratio


def _verdicts(cmp, metric: str) -> dict[str, str]:
    return {r.label: next(c.verdict for c in r.changes if c.metric == metric) for r in cmp.results}


def test_aa_has_no_regression(sqlite_store: Store) -> None:  # noqa: F811
    base = fill_run(sqlite_store, seed=1, tags=("main",))
    cand = fill_run(sqlite_store, seed=2)
    cmp = compare_runs(sqlite_store, "main", cand)
    assert cmp.baseline_run == base and len(cmp.results) == len(variant_specs())
    assert cmp.regressions == [] and cmp.warnings == [] and cmp.unmatched == []
    assert set(_verdicts(cmp, "latency").values()) == {"unchanged"}
    assert set(_verdicts(cmp, "size").values()) == {"unchanged"}


def test_ten_percent_slowdown_is_detected_only_where_injected(sqlite_store: Store) -> None:  # noqa: F811
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"l1-0.5-while_training/int8": 1.10})
    cmp = compare_runs(sqlite_store, base, cand)
    latency = _verdicts(cmp, "latency")
    assert latency.pop("l1-0.5-while_training/int8") == "regression"
    assert set(latency.values()) == {"unchanged"}
    [regressed] = cmp.regressions
    change = next(c for c in regressed.changes if c.metric == "latency")
    assert 5 < change.change < 15 and change.ci_low < change.change < change.ci_high
    assert change.confidence > 0.99 and change.min_effect == DEFAULT_MIN_EFFECT["latency"]
    # raising the minimum effect above the slowdown turns it into "unchanged"
    relaxed = compare_runs(sqlite_store, base, cand, min_effect={"latency": 20})
    assert relaxed.regressions == []


def test_speedup_is_an_improvement(sqlite_store: Store) -> None:  # noqa: F811
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"baseline/fp32": 0.8})
    assert _verdicts(compare_runs(sqlite_store, base, cand), "latency")["baseline/fp32"] == "improvement"


def _store_one(store: Store, samples: np.ndarray, size: int = 1000, accuracy: float = 0.9, threads: int = 1) -> str:
    spec = variant_specs()[0]
    run_id = store.start_run("one", {}, "h1", MACHINE)
    store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
    result = synthetic_result("k", spec, np.random.default_rng(0)).model_copy(
        update={"samples_ns": samples.tolist(), "accuracy": accuracy})
    store.add_measurement(MeasurementRecord(run_id, "k", spec.id, "local-cpu", "onnxruntime", result, {"threads": threads}, size))
    store.finish_run(run_id)
    return run_id


def test_contention_burst_is_not_a_regression(sqlite_store: Store) -> None:  # noqa: F811
    rng = np.random.default_rng(0)
    clean = (100_000 * rng.lognormal(0, 0.02, 4000)).astype(np.int64)
    noisy = (100_000 * rng.lognormal(0, 0.02, 4000)).astype(np.int64)
    noisy[1000:3400] = (noisy[1000:3400] * 1.3).astype(np.int64)  # 60 % of the run slowed by a neighbour
    cmp = compare_runs(sqlite_store, _store_one(sqlite_store, clean), _store_one(sqlite_store, noisy))
    latency = next(c for c in cmp.results[0].changes if c.metric == "latency")
    assert latency.change > 20  # the median moved...
    assert latency.verdict == "unchanged" and "not in the fastest iterations" in latency.note  # ...the floor did not
    assert cmp.regressions == []


def test_size_and_accuracy_thresholds(sqlite_store: Store) -> None:  # noqa: F811
    samples = (100_000 * np.random.default_rng(0).lognormal(0, 0.02, 500)).astype(np.int64)
    base = _store_one(sqlite_store, samples, size=1000, accuracy=0.950)
    bigger = _store_one(sqlite_store, samples, size=1100, accuracy=0.940)
    cmp = compare_runs(sqlite_store, base, bigger)
    by_metric = {c.metric: c for c in cmp.results[0].changes}
    assert by_metric["size"].verdict == "regression" and by_metric["size"].change == pytest.approx(10.0)
    assert by_metric["accuracy"].verdict == "regression" and by_metric["accuracy"].change == pytest.approx(-1.0)
    assert by_metric["latency"].verdict == "unchanged"
    assert by_metric["energy"].verdict == "n/a"  # no energy measured: never compared as 0
    lenient = compare_runs(sqlite_store, base, bigger, min_effect=parse_min_effects(["size=20", "accuracy=2"]))
    assert lenient.regressions == []


def test_context_mismatches_are_flagged(sqlite_store: Store) -> None:  # noqa: F811
    base = fill_run(sqlite_store, seed=1)
    other_machine = {**MACHINE, "cpu_model": "Other CPU", "packages": {"onnxruntime": "1.21.0", "torch": "2.13.0"}}
    cand = fill_run(sqlite_store, seed=2, machine=other_machine, threads=2)
    cmp = compare_runs(sqlite_store, base, cand)
    assert cmp.results == []  # thread counts differ: nothing is silently compared
    assert any("cpu_model" in w and "Other CPU" in w for w in cmp.warnings)
    assert any("onnxruntime" in w and "1.21.0" in w for w in cmp.warnings)
    assert not any("torch" in w for w in cmp.warnings)  # unchanged versions are not flagged
    assert cmp.unmatched and all("threads 1 -> 2" in u for u in cmp.unmatched)
    assert "Context differences" in to_markdown(cmp)


def test_outputs_markdown_and_json(sqlite_store: Store) -> None:  # noqa: F811
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"baseline/int8": 1.25})
    cmp = compare_runs(sqlite_store, base, cand)
    md = to_markdown(cmp)
    assert "🔴 1 regressed" in md and "| 🔴 regression | baseline/int8 |" in md and "<details>" in md
    data = json.loads(json.dumps(cmp.to_json(), allow_nan=False))
    assert data["regression_count"] == 1 and data["baseline_run"] == base
    regressed = next(r for r in data["results"] if r["label"] == "baseline/int8")
    latency = next(c for c in regressed["changes"] if c["metric"] == "latency")
    assert latency["verdict"] == "regression" and latency["change"] > 15


def test_parse_min_effects() -> None:
    assert parse_min_effects(["latency=3", "p50_ms=4%"])["latency"] == 4.0
    with pytest.raises(StoreError, match="METRIC=PERCENT"):
        parse_min_effects(["latency"])
    with pytest.raises(StoreError, match="not a number"):
        parse_min_effects(["size=big"])


def test_decide_needs_test_ci_and_effect() -> None:
    assert decide(Estimate(1.10, 1.08, 1.12, 1e-9), False, 0.05, 0.01) == "regression"
    assert decide(Estimate(1.10, 0.99, 1.20, 1e-9), False, 0.05, 0.01) == "unchanged"  # CI includes no change
    assert decide(Estimate(1.10, 1.08, 1.12, 0.2), False, 0.05, 0.01) == "unchanged"  # not significant
    assert decide(Estimate(1.03, 1.02, 1.04, 1e-9), False, 0.05, 0.01) == "unchanged"  # below the effect floor
    assert decide(Estimate(0.90, 0.88, 0.92, 1e-9), True, 0.05, 0.01) == "regression"  # throughput fell
    assert decide(Estimate(0.90, 0.88, 0.92, 1e-9), False, 0.05, 0.01) == "improvement"


def test_quantile_ratio_ci_covers_truth() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(100):
        a = rng.lognormal(0, 0.1, 400)
        b = rng.lognormal(np.log(1.05), 0.1, 400)
        est = quantile_ratio(a, b, q=0.5, confidence=0.95, seed=i)
        covered += est.ci_low <= 1.05 <= est.ci_high
    assert covered >= 88  # nominal 95 %, binomial slack for 100 trials


def test_floor_quantile_keeps_enough_samples_below_it() -> None:
    from edgebench.store.compare import FLOOR_MIN_SAMPLES, FLOOR_QUANTILE, floor_quantile_for

    assert floor_quantile_for(100_000) == FLOOR_QUANTILE
    assert floor_quantile_for(200) * 200 == pytest.approx(FLOOR_MIN_SAMPLES)
    assert floor_quantile_for(3) == 0.5


def test_repeats_compare_the_least_disturbed_run(sqlite_store: Store) -> None:  # noqa: F811
    rng = np.random.default_rng(0)

    def run(tag: str, factor: float) -> None:
        samples = (100_000 * factor * rng.lognormal(0, 0.02, 2000)).astype(np.int64)
        sqlite_store.tag_run(_store_one(sqlite_store, samples), tag)

    run("base", 1.0)
    run("base", 1.0)
    run("cand", 1.15)  # a repeat slowed down over its whole length by a neighbour
    run("cand", 1.0)
    latest_only = compare_runs(sqlite_store, "base", "cand")
    assert len(latest_only.regressions) == 0  # the latest candidate run happens to be clean
    with_repeats = compare_runs(sqlite_store, "base", "cand", repeats=True)
    assert with_repeats.regressions == [] and with_repeats.candidate_run.count(",") == 1
    assert sqlite_store.resolve_runs("cand") == [r for r in with_repeats.candidate_run.split(", ")]
    run("cand", 1.15)  # the newest repeat alone would be a false alarm...
    assert len(compare_runs(sqlite_store, "base", "cand").regressions) == 1
    assert compare_runs(sqlite_store, "base", "cand", repeats=True).regressions == []  # ...best of three is not
