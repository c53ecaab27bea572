"""Regression comparison on synthetic runs in a real SQLite store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from store_fixtures import MACHINE, fill_run, synthetic_result, variant_specs

import edgebench
from edgebench.store import Store, StoreError
from edgebench.store.compare import MetricChange, compare_runs
from edgebench.store.compare_markdown import to_markdown
from edgebench.store.gate import min_effects, parse_thresholds
from edgebench.store.metrics import DEFAULT_ALLOWANCE
from edgebench.store.record import MeasurementRecord
from edgebench.store.significance import Noise, decide_rounds, decide_runs, p50_log_se, replicate_noise, series_noise


def _verdicts(cmp, metric: str) -> dict[str, str]:
    return {r.label: next(c.verdict for c in r.changes if c.metric == metric) for r in cmp.results}


def test_aa_has_no_regression(sqlite_store: Store) -> None:
    base = fill_run(sqlite_store, seed=1, tags=("main",))
    cand = fill_run(sqlite_store, seed=2)
    cmp = compare_runs(sqlite_store, "main", cand)
    assert cmp.baseline_run == base and len(cmp.results) == len(variant_specs())
    assert cmp.regressions == [] and cmp.warnings == [] and cmp.unmatched == []
    assert set(_verdicts(cmp, "latency").values()) == {"unchanged"}
    assert set(_verdicts(cmp, "size").values()) == {"unchanged"}


def _noisy_runs(store: Store, tag: str, n: int, sigma: float, seed: int, slowdown: float = 1.0,
                machine: dict | None = None, variants: int = 3) -> list[str]:
    """``n`` runs tagged ``tag`` of the first ``variants`` variants, each result moving by its own run-to-run
    factor (sd ``sigma`` in log) as identical artifacts do between runs on a shared machine; ``slowdown`` on top."""
    rng = np.random.default_rng(seed)
    specs = variant_specs()[:variants]
    ids = []
    for _ in range(n):
        run_id = store.start_run("noisy", {}, "h-noisy", machine or MACHINE, (tag,))
        for spec in specs:
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
            factor = slowdown * float(np.exp(rng.normal(0, sigma)))
            result = synthetic_result(spec.id, spec, rng, factor)
            store.add_measurement(MeasurementRecord(run_id, spec.id, spec.id, "local-cpu", "onnxruntime", result,
                                                    {"threads": 1}, 1000))
        store.finish_run(run_id)
        ids.append(run_id)
    return ids


def test_one_run_a_side_decides_only_beyond_the_allowance(sqlite_store: Store) -> None:
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"l1-0.5-while_training/int8": 1.10, "baseline/int8": 1.30})
    cmp = compare_runs(sqlite_store, base, cand)
    by_label = {r.label: next(c for c in r.changes if c.metric == "latency") for r in cmp.results}
    ten, thirty = by_label["l1-0.5-while_training/int8"], by_label["baseline/int8"]
    # 10 % is within the run-to-run noise a single run a side may carry: no verdict, no fake confidence
    assert 8 < ten.change < 12 and ten.verdict == "unchanged"
    assert ten.basis == "allowance" and ten.confidence is None and ten.ci_low is None
    assert f"{DEFAULT_ALLOWANCE:g}%" in ten.note and "cannot be known" in ten.note
    assert thirty.verdict == "regression" and thirty.confidence is None
    assert {r.label for r in cmp.regressions} == {"baseline/int8"}
    md = to_markdown(cmp)
    assert "| unknown |" in md and "100.0%" not in md and "noise allowance" in md
    # the interval's level and what "confidence" is were written nowhere (it is 1 - p, at the default alpha 0.01)
    assert ("Read: *change [CI]* is the candidate against the baseline with its 99% interval (alpha 0.01); "
            "*confidence* is 1 - p of that test") in md
    # a smaller allowance is the user's statement about their machine
    assert len(compare_runs(sqlite_store, base, cand, allowance=5).regressions) == 2


def test_a_comment_longer_than_a_pull_request_holds_is_cut_saying_where_the_whole_is() -> None:
    """A sweep's comparison of 372 results was 1,078,342 characters of Markdown, which the CI example posts as a
    pull-request comment (GitHub holds 65,536): cut at a line, an open <details> closed, the count left out said."""
    from edgebench.store.compare_markdown import fit_comment

    head = "### edgebench deployment-cost gate ❌ fails\n| fail | baseline/int8 | ... |\n<details><summary>All</summary>\n"
    text = head + "".join(f"| row {i} | {'x' * 80} |\n" for i in range(2000))
    assert fit_comment(head) == head
    cut = fit_comment(text, limit=10_000)
    assert len(cut) <= 10_000 and cut.startswith(head) and cut.count("</details>") == 1
    kept_rows = cut.count("| row ")
    assert f"**{2000 - kept_rows} more lines left out** to fit a pull-request comment (10,000 characters)" in cut
    assert "`--format json`" in cut


def test_a_window_too_short_to_bound_its_percentile_is_not_decided_on(sqlite_store: Store) -> None:
    """50 runs a window bound a p50 (6 needed at 95 %) but not a p99 (368): with one run a side and no history, a
    p99 change is the slowest run or two of each window, so it is shown undecided, not called against the allowance."""
    base = fill_run(sqlite_store, seed=1, window_runs=50)
    cand = fill_run(sqlite_store, seed=2, window_runs=50, slowdown={"baseline/int8": 1.30})
    cmp = compare_runs(sqlite_store, base, cand)
    changes = {c.metric: c for r in cmp.results if r.label == "baseline/int8" for c in r.changes}
    assert changes["latency"].verdict == "regression"
    assert changes["p99"].verdict == "undecided" and changes["p99"].basis == "short window"  # was "contended"
    assert "has 50 runs, fewer than the 368 a p99 interval needs at 95%" in changes["p99"].note


def test_repeats_decide_on_the_runs(sqlite_store: Store) -> None:
    base_ids = _noisy_runs(sqlite_store, "base", 3, sigma=0.01, seed=1, variants=6)
    cand_ids = _noisy_runs(sqlite_store, "cand", 3, sigma=0.01, seed=2, slowdown=1.10, variants=6)
    cmp = compare_runs(sqlite_store, "base", "cand", repeats=True, lookback=0)
    assert not [w for w in cmp.warnings if w.startswith("tag ")]
    latency = [next(c for c in r.changes if c.metric == "latency") for r in cmp.results]
    assert all(c.basis == "runs" and c.runs == (3, 3) for c in latency)
    assert all(c.verdict == "regression" for c in latency)
    assert all(c.ci_low is not None and c.ci_low < c.change < c.ci_high for c in latency)
    # the same runs, one side seen as its latest run only: the spread is unknown again
    single = compare_runs(sqlite_store, "base", "cand", lookback=0)
    assert single.regressions == [] and {c.basis for r in single.results for c in r.changes if c.metric == "latency"} == {
        "allowance"}
    # ... and says so, naming the run it took of each tag
    assert (single.baseline_run, single.candidate_run) == (base_ids[-1], cand_ids[-1])
    hint = "pass --repeats to decide on all of them (their spread is the run-to-run noise)"
    assert f"tag 'base' names 3 runs: only its latest, {base_ids[-1]}, is compared; {hint}" in single.warnings
    assert f"tag 'cand' names 3 runs: only its latest, {cand_ids[-1]}, is compared; {hint}" in single.warnings


def test_repeats_with_a_disturbed_run_are_not_a_regression(sqlite_store: Store) -> None:
    _noisy_runs(sqlite_store, "base", 2, sigma=0.01, seed=1)
    _noisy_runs(sqlite_store, "cand", 1, sigma=0.01, seed=2)
    _noisy_runs(sqlite_store, "cand", 1, sigma=0.01, seed=3, slowdown=1.15)  # a neighbour slowed one run down
    cmp = compare_runs(sqlite_store, "base", "cand", repeats=True, lookback=0)
    assert cmp.regressions == []


def test_lookback_gives_the_run_to_run_spread(sqlite_store: Store) -> None:
    _noisy_runs(sqlite_store, "main", 20, sigma=0.01, seed=1)
    _noisy_runs(sqlite_store, "pr", 1, sigma=0.01, seed=2, slowdown=1.10)
    cmp = compare_runs(sqlite_store, "main", "pr")
    latency = [next(c for c in r.changes if c.metric == "latency") for r in cmp.results]
    assert {c.basis for c in latency} == {"lookback"} and all(c.confidence is not None for c in latency)
    assert all(c.verdict == "regression" for c in latency)
    assert all(0.5 < c.noise_pct < 2.5 for c in latency)  # the 1 % spread the history has
    # an A/A candidate against the same history: nothing regressed
    _noisy_runs(sqlite_store, "aa", 1, sigma=0.01, seed=3)
    assert compare_runs(sqlite_store, "main", "aa").regressions == []
    # another machine's history does not count: back to the allowance
    other = {**MACHINE, "hostname": "elsewhere"}
    _noisy_runs(sqlite_store, "pr-elsewhere", 1, sigma=0.01, seed=4, slowdown=1.10, machine=other)
    elsewhere = compare_runs(sqlite_store, "main", "pr-elsewhere")
    assert elsewhere.regressions == []
    assert {c.basis for r in elsewhere.results for c in r.changes if c.metric == "latency"} == {"allowance"}


def test_lookback_of_a_noisy_machine_is_not_fooled(sqlite_store: Store) -> None:
    _noisy_runs(sqlite_store, "main", 12, sigma=0.06, seed=5)  # results move by ~6 % between runs here
    verdicts = []
    for seed in range(6, 16):  # A/A pairs of fresh runs, each with the history before it
        [base] = _noisy_runs(sqlite_store, f"a{seed}", 1, sigma=0.06, seed=seed)
        [cand] = _noisy_runs(sqlite_store, f"a2-{seed}", 1, sigma=0.06, seed=100 + seed)
        cmp = compare_runs(sqlite_store, base, cand)
        verdicts += [c.verdict for r in cmp.results for c in r.changes if c.metric == "latency"]
    assert len(verdicts) == 30 and verdicts.count("regression") <= 1  # nominal 0.5 % at alpha 0.01


def test_speedup_is_an_improvement(sqlite_store: Store) -> None:
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"baseline/fp32": 0.7})
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


def test_size_and_accuracy_thresholds(sqlite_store: Store) -> None:
    samples = (100_000 * np.random.default_rng(0).lognormal(0, 0.02, 500)).astype(np.int64)
    base = _store_one(sqlite_store, samples, size=1000, accuracy=0.950)
    bigger = _store_one(sqlite_store, samples, size=1100, accuracy=0.940)
    cmp = compare_runs(sqlite_store, base, bigger)
    by_metric = {c.metric: c for c in cmp.results[0].changes}
    assert by_metric["size"].verdict == "regression" and by_metric["size"].change == pytest.approx(10.0)
    assert by_metric["accuracy"].verdict == "regression" and by_metric["accuracy"].change == pytest.approx(-1.0)
    assert by_metric["latency"].verdict == "unchanged"
    assert by_metric["energy"].verdict == "n/a"  # no energy measured: never compared as 0
    lenient = compare_runs(sqlite_store, base, bigger, min_effect=_min_effects(["size=20", "accuracy=2"]))
    assert lenient.regressions == []


def test_context_mismatches_are_flagged(sqlite_store: Store) -> None:
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
    # every baseline result went unjudged: each is missing (a warning, so the gate cannot pass on nothing)
    ok = sqlite_store.measurements(base).query("status == 'ok'")
    assert len(cmp.missing) == len(ok) and not any(m.failed for m in cmp.missing)
    assert all(m.reason == "measured with other settings (threads 1 -> 2)" for m in cmp.missing)


def test_a_setting_recorded_since_pairs_with_runs_from_before_it() -> None:
    """int8 runs from before ``calibrator`` was recorded were calibrated by min and max: they pair with runs that
    record minmax, not with entropy ones (every int8 result of an older store went unjudged, and the gate passed)."""
    from edgebench.variants import comparable_settings

    old = {"threads": 1, "precision": "int8"}
    assert comparable_settings({**old, "calibrator": "minmax"}) == old
    assert comparable_settings({**old, "calibrator": "entropy"}) == {**old, "calibrator": "entropy"}
    # LiteRT's int8 is min and max whatever was asked: an older release recorded the asked entropy for it
    litert = {**old, "artifact_format": "tflite"}
    assert comparable_settings({**litert, "calibrator": "entropy"}) == comparable_settings(litert) == litert


def test_the_formats_whose_int8_ignores_the_calibrator_are_those_whose_exporter_has_one() -> None:
    from edgebench.runtimes.base import EXPORTERS
    from edgebench.variants import ONE_CALIBRATOR_FORMATS

    single = {name for name in EXPORTERS.names() if len(EXPORTERS.get(name).calibrators or ()) == 1}
    assert single == ONE_CALIBRATOR_FORMATS


def test_outputs_markdown_and_json(sqlite_store: Store) -> None:
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
    # what the numbers are in (the JSON named no unit: ms? s? bytes or KiB?)
    units = {c["metric"]: (c["unit"], c["change_unit"]) for c in regressed["changes"]}
    assert units["latency"] == ("ms", "%") and units["accuracy"] == ("fraction", "percentage points")
    assert units["size"] == ("bytes", "%") and units.get("memory", ("MiB", "%")) == ("MiB", "%")


def _min_effects(items: list[str]) -> dict[str, float]:
    """``--min-effect`` as ``edgebench compare`` reads it, with no --warn or --fail level."""
    return min_effects(parse_thresholds(None, None), items)


def test_min_effects_option() -> None:
    assert _min_effects(["p50_ms=4%"])["latency"] == 4.0  # a column's name for the metric
    with pytest.raises(StoreError, match="--min-effect latency is given twice"):  # the last one silently won
        _min_effects(["latency=3", "p50_ms=4%"])
    with pytest.raises(StoreError, match="METRIC=PERCENT"):
        _min_effects(["latency"])
    with pytest.raises(StoreError, match="METRIC=PERCENT"):
        _min_effects(["size=big"])
    # an unknown metric, or one compare does not judge, names the option (it was "unknown metric 'foo'", and
    # macs, which get_metric knows, was then refused as another error)
    for item in ("foo=3", "macs=3"):
        with pytest.raises(StoreError, match=rf"^--min-effect '{item}': use METRIC=PERCENT .* with METRIC one of "):
            _min_effects([item])


def test_decide_runs_matches_a_two_sample_t_test_on_logs() -> None:
    base, cand = [1.00, 1.02, 0.98], [1.10, 1.13, 1.08]
    noise = replicate_noise([base, cand])
    assert noise is not None and noise.df == 4
    decision = decide_runs(base, cand, noise, higher_is_better=False, min_effect=0.05, alpha=0.01, allowance=0.2)
    reference = stats.ttest_ind(np.log(cand), np.log(base), equal_var=True)  # the textbook pooled-variance test
    assert decision.confidence == pytest.approx(1 - reference.pvalue)
    assert decision.ratio == pytest.approx(np.exp(np.log(cand).mean() - np.log(base).mean()))
    assert decision.verdict == "regression" and decision.ci_low > 1
    # the same change below the minimum effect is unchanged; past it but not significant, it is left undecided
    # (no regression, and not "unchanged" either: the spread cannot tell a 10 % change from none)
    assert decide_runs(base, cand, noise, higher_is_better=False, min_effect=0.2, alpha=0.01,
                       allowance=0.2).verdict == "unchanged"
    wide = Noise(0.2, 4, "noisy")
    unclear = decide_runs(base, cand, wide, higher_is_better=False, min_effect=0.05, alpha=0.01, allowance=0.2)
    assert unclear.verdict == "undecided" and unclear.note.startswith("not decided: not significant at alpha=0.01")
    # higher is better (throughput): the same fall is a regression
    assert decide_runs(cand, base, noise, higher_is_better=True, min_effect=0.05, alpha=0.01,
                       allowance=0.2).verdict == "regression"


def test_decide_rounds_matches_a_paired_t_test() -> None:
    base = [1.00, 1.05, 0.97, 1.02, 0.99]
    cand = [1.12, 1.16, 1.08, 1.13, 1.10]  # each round ~11 % slower, rounds drifting together
    decision = decide_rounds(base, cand, higher_is_better=False, min_effect=0.05, alpha=0.01)
    reference = stats.ttest_rel(np.log(cand), np.log(base))
    assert decision.confidence == pytest.approx(1 - reference.pvalue) and decision.verdict == "regression"
    same = decide_rounds(base, [1.01, 1.04, 0.98, 1.01, 1.00], higher_is_better=False, min_effect=0.05, alpha=0.01)
    assert same.verdict == "unchanged"


def test_a_large_change_two_rounds_cannot_confirm_is_undecided_not_unchanged() -> None:
    """Two rounds, +50 % and +20 %: d = ln 1.5, ln 1.2; mean 0.29389, sd |ln 1.5 - ln 1.2| / sqrt 2 = 0.15779, se
    0.11157, t = 2.6341 on 1 df, whose two-sided p is 1 - (2/pi) atan(t) = 0.23098 (Student's t on 1 df is Cauchy).
    Not significant at 0.05, but a +34.2 % estimate: undecided, its size kept, never "unchanged"."""
    decision = decide_rounds([1.0, 1.0], [1.5, 1.2], higher_is_better=False, min_effect=0.05, alpha=0.05)
    assert decision.verdict == "undecided" and decision.basis == "rounds"
    assert decision.ratio == pytest.approx(np.exp((np.log(1.5) + np.log(1.2)) / 2))
    assert 1 - decision.confidence == pytest.approx(1 - 2 / np.pi * np.arctan(2.6341), abs=1e-4)
    assert "p=0.23" in decision.note and "2 interleaved rounds" in decision.note
    # the same two rounds 1 % apart: below the minimum effect, unchanged whatever the p-value
    assert decide_rounds([1.0, 1.0], [1.01, 1.0], higher_is_better=False, min_effect=0.05, alpha=0.05).verdict == "unchanged"


def test_series_noise_is_robust_to_a_step() -> None:
    rng = np.random.default_rng(0)
    flat = np.exp(rng.normal(0, 0.02, 40))
    stepped = flat * np.r_[np.ones(20), np.full(20, 1.3)]  # a real 30 % change half way
    a, b = series_noise(flat), series_noise(stepped)
    assert a is not None and b is not None
    assert 0.012 < a.sigma < 0.03 and b.sigma < 1.2 * a.sigma  # the step does not inflate the spread
    assert series_noise([1.0, 1.1]) is None  # two runs: no spread to speak of


def test_run_level_intervals_cover_the_truth() -> None:
    rng = np.random.default_rng(0)
    covered = alarms = 0
    for _ in range(200):
        base = np.exp(rng.normal(0, 0.03, 3))
        cand = 1.05 * np.exp(rng.normal(0, 0.03, 3))
        d = decide_runs(base, cand, replicate_noise([base, cand]), higher_is_better=False, min_effect=0.0,
                        alpha=0.05, allowance=0.2)
        covered += d.ci_low <= 1.05 <= d.ci_high
        aa = np.exp(rng.normal(0, 0.03, 3))
        alarms += decide_runs(base, aa, replicate_noise([base, aa]), higher_is_better=False, min_effect=0.0,
                              alpha=0.05, allowance=0.2).verdict in ("regression", "improvement")
    assert covered >= 180  # nominal 95 %
    assert alarms <= 20  # nominal 5 % of A/A pairs


def test_p50_standard_error_from_order_statistics() -> None:
    rng = np.random.default_rng(0)
    samples = np.exp(rng.normal(0, 0.05, 10_000))
    # the median of n normal draws has a standard error of sqrt(pi / 2) * sigma / sqrt(n)
    assert p50_log_se(samples) == pytest.approx(np.sqrt(np.pi / 2) * 0.05 / 100, rel=0.25)
    assert p50_log_se(samples[:5]) is None


def test_a_run_still_going_is_said(sqlite_store: Store) -> None:
    """Comparing against a run that is still measuring compared its first results as if they were all of it."""
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2)
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("update runs set finished_at = null, status = 'running' where id = ?", (cand,))
    warnings = compare_runs(sqlite_store, base, cand).warnings
    assert f"run {cand} is not finished (running): only the results it has stored so far are compared" in warnings
    assert not any(base in w for w in warnings)


def test_another_edgebench_release_is_said(sqlite_store: Store) -> None:
    """A release that measures differently (e.g. peak RSS) showed its change as the model's, with no word."""
    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2)
    assert not any("edgebench differs" in w for w in compare_runs(sqlite_store, base, cand).warnings)
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("update runs set edgebench_version = '0.0.1' where id = ?", (base,))
    warnings = compare_runs(sqlite_store, base, cand).warnings
    assert any(w.startswith(f"edgebench differs: 0.0.1 vs {edgebench.__version__}") for w in warnings), warnings


def _set_energy(store: Store, run_id: str, joules: float, source: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("update measurements set energy_j_per_inference = ?, energy_source = ? where run_id = ? "
                             "and status = 'ok'", (joules, source, run_id))


def test_energy_of_another_meter_is_shown_and_an_estimate_named(sqlite_store: Store) -> None:
    """A switch from a RAPL counter to a TDP estimate was said only in JSON (the row had no values), and an
    estimated energy's regression read like a counter's."""
    base, cand = fill_run(sqlite_store, seed=1), fill_run(sqlite_store, seed=2)
    _set_energy(sqlite_store, base, 1e-3, "measured:rapl")
    _set_energy(sqlite_store, cand, 5e-4, "estimated:tdp-x-cpu-util")
    cmp = compare_runs(sqlite_store, base, cand)
    energy = next(c for c in cmp.results[0].changes if c.metric == "energy")
    assert energy.verdict == "n/a" and (energy.baseline, energy.candidate) == pytest.approx((1e-3, 5e-4))
    assert any("energy sources differ: measured:rapl vs estimated:tdp-x-cpu-util (its energy is not compared)" in w
               for w in cmp.results[0].warnings)
    assert "| energy |" in to_markdown(cmp)  # a row with both figures, no longer dropped as empty

    _set_energy(sqlite_store, base, 1e-3, "estimated:tdp-x-cpu-util")
    _set_energy(sqlite_store, cand, 2e-3, "estimated:tdp-x-cpu-util")
    energy = next(c for c in compare_runs(sqlite_store, base, cand).results[0].changes if c.metric == "energy")
    assert energy.verdict == "regression" and energy.note.startswith("estimated:tdp-x-cpu-util")
    assert "| energy (estimated) |" in to_markdown(compare_runs(sqlite_store, base, cand))


def test_a_non_finite_figure_is_no_value_to_compare(sqlite_store: Store) -> None:
    """An inf p50 (an imported or hand-edited store) made compare --format json fail with a traceback, exit 1."""
    base, cand = fill_run(sqlite_store, seed=1), fill_run(sqlite_store, seed=2)
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("update measurements set p50_ms = ? where run_id = ?", (float("inf"), cand))
    cmp = compare_runs(sqlite_store, base, cand)
    json.dumps(cmp.to_json(), allow_nan=False)  # raised ValueError: Out of range float values
    latency = next(c for c in cmp.results[0].changes if c.metric == "latency")
    assert latency.candidate is None and latency.verdict in ("lost", "n/a")


def test_results_measured_under_two_executors_say_so(sqlite_store: Store) -> None:
    """Local vs Ray: the same artifacts read +42-57 % peak RSS under Ray (forked from the Ray worker), a memory
    'regression' with no word that the executor differed."""
    base = fill_run(sqlite_store, seed=1, executor="local")
    cand = fill_run(sqlite_store, seed=2, executor="ray")
    again = fill_run(sqlite_store, seed=3, executor="local")
    across = compare_runs(sqlite_store, base, cand)
    assert any(w.startswith("executors differ: local vs ray") for w in across.warnings)
    assert not any("executors differ" in w for w in compare_runs(sqlite_store, base, again).warnings)
    # and the gate does not fail on the memory it has just put down to the executor: shown, not decided
    memory = [c for r in across.results for c in r.changes if c.metric == "memory"]
    assert memory and all(c.verdict == "undecided" and "measured under other executors (local vs ray)" in c.note
                          for c in memory)
    within = [c for r in compare_runs(sqlite_store, base, again).results for c in r.changes if c.metric == "memory"]
    assert within and not any(c.verdict == "undecided" for c in within)


def test_timings_of_two_kinds_of_machine_are_not_decided(sqlite_store: Store) -> None:
    """A baseline stored on another CPU model failed the gate on timing (+252 % p50, exit 1) and said "the machine ran
    at the same speed": timing is undecided across hardware (the gate warns, exit 5), size still decided; a runner of
    the same hardware under another hostname is one machine."""
    from edgebench.store.gate import evaluate

    base = fill_run(sqlite_store, seed=1)
    slower = {"baseline/int8": 1.30}  # past the 20 % allowance one run a side is judged on
    same_kind = fill_run(sqlite_store, seed=2, slowdown=slower, machine={**MACHINE, "hostname": "ci-runner-7"})
    assert _verdicts(compare_runs(sqlite_store, base, same_kind), "latency")["baseline/int8"] == "regression"
    other = {**MACHINE, "cpu_model": "Other CPU"}
    cand = fill_run(sqlite_store, seed=2, slowdown=slower, machine=other)
    with sqlite_store.engine.begin() as conn:  # the candidate's artifact grew 10 %: decided on any machine
        for run_id, size in ((base, 1000), (cand, 1100)):
            conn.exec_driver_sql("update measurements set size_bytes = ? where run_id = ?", (size, run_id))
    cmp = compare_runs(sqlite_store, base, cand)
    changes = {c.metric: c for r in cmp.results if r.label == "baseline/int8" for c in r.changes}
    for metric in ("latency", "p99", "throughput"):
        assert changes[metric].verdict == "undecided" and changes[metric].basis == "other machine", changes[metric]
    assert "different machines (cpu_model 'Synthetic CPU @ 2.0GHz' vs 'Other CPU')" in changes["latency"].note
    assert changes["size"].verdict == "regression" and changes["size"].change == pytest.approx(10.0)
    assert changes["memory"].verdict != "undecided"
    gate = evaluate(cmp, parse_thresholds(None, ["size=20"]))
    assert gate.level == "warn", [(f.change.metric, f.level) for f in gate.findings]
    assert evaluate(cmp, parse_thresholds(None, None)).level == "fail"  # the size regression, on any machine
    cmp.machine_speed = (1000.0, 1000.0)
    assert "same speed" not in cmp.speed_note and "different machines" in cmp.speed_note


def test_timings_of_two_kinds_of_board_driven_from_one_machine_are_not_decided(sqlite_store: Store) -> None:
    """Boards measured over SSH from one driver: the runs' machine (the driver's) is the same, the boards are not.
    Each measurement's device record (its worker's) says which board and power mode it ran on; an Orin against a
    Xavier, or one board in another power mode, is no baseline for the other's timings; size still decided."""
    import json

    base = fill_run(sqlite_store, seed=1)
    cand = fill_run(sqlite_store, seed=2, slowdown={"baseline/int8": 1.30})
    orin = {"hostname": "board-1", "cpu_model": "ARMv8 Processor rev 1 (v8l)", "board": "NVIDIA Jetson AGX Orin",
            "nvpmodel": "MAXN (0)"}

    def on_device(run_id: str, device: dict) -> None:
        with sqlite_store.engine.begin() as conn:
            for mid, details in conn.exec_driver_sql("select id, details from measurements where run_id = ?",
                                                     (run_id,)).all():
                details = {**(json.loads(details) if isinstance(details, str) else details or {}), "device": device}
                conn.exec_driver_sql("update measurements set details = ? where id = ?", (json.dumps(details), mid))

    def latency(**device_change: str) -> MetricChange:
        on_device(base, orin)
        on_device(cand, {**orin, **device_change})
        changes = next(r.changes for r in compare_runs(sqlite_store, base, cand).results if r.label == "baseline/int8")
        return next(c for c in changes if c.metric == "latency")

    assert latency(hostname="board-2").verdict == "regression"  # another board of the same kind and mode: decided
    for key, other in (("board", "NVIDIA Jetson AGX Xavier"), ("nvpmodel", "15W (1)")):
        change = latency(**{key: other})
        assert change.verdict == "undecided" and change.basis == "other machine", change
        assert f"different machines ({key} {orin[key]!r} vs {other!r})" in change.note


def test_unchanged_only_where_the_interval_lies_within_the_minimum_effect(sqlite_store: Store) -> None:
    """2+1 runs called +0.3 % [-91.8, +1126.8] "unchanged": the interval, not the estimate, must lie within the
    minimum effect. By hand: base 1.0, 1.02 and candidate 1.01 (logs 0, 0.0198026 and 0.0099503), log ratio
    0.0000490 (+0.005 %); with the runs' own spread (sd 0.0140026 on 1 df, t(0.995, 1) = 63.657, se = sd * sqrt(1/2 +
    1) = 0.0171497) the 99 % interval is exp(+-1.0917): -66.4 %..+197.9 %, past 5 %: undecided; with a spread of 1 %
    known on 100 df (t = 2.626, se 0.0122474) it is exp(+-0.032162): -3.2 %..+3.3 %, within 5 %: unchanged."""
    base, cand = [1.0, 1.02], [1.01]
    wide = decide_runs(base, cand, replicate_noise([base, cand]), higher_is_better=False, min_effect=0.05, alpha=0.01,
                       allowance=0.2)
    assert (wide.ci_low, wide.ci_high) == pytest.approx((0.336, 2.979), abs=2e-3)
    assert wide.verdict == "undecided" and "too few runs to decide" in wide.note and "--repeats" in wide.note
    known = decide_runs(base, cand, Noise(0.01, 100, "lookback"), higher_is_better=False, min_effect=0.05, alpha=0.01,
                        allowance=0.2)
    assert (known.ci_low, known.ci_high) == pytest.approx((0.9684, 1.0327), abs=2e-4) and known.verdict == "unchanged"
    # through compare on stored runs: 2 baseline runs and 1 candidate run of identical artifacts (sd 1 %) are never
    # called unchanged on a t of 1 df, and the gate, with no change past a threshold, still passes
    from edgebench.store.gate import evaluate

    _noisy_runs(sqlite_store, "dup", 2, sigma=0.01, seed=1)
    _noisy_runs(sqlite_store, "one", 1, sigma=0.01, seed=2)
    cmp = compare_runs(sqlite_store, "dup", "one", repeats=True, lookback=0)
    latency = [next(c for c in r.changes if c.metric == "latency") for r in cmp.results]
    assert len(latency) == 3 and all(c.runs == (2, 1) and c.verdict == "undecided" for c in latency), latency
    assert evaluate(cmp, parse_thresholds(None, None)).level == "ok"


def _store_model(store: Store, tag: str, variant_id: str, p50_ms: float, size: int, accuracy: float,
                 rss_mb: float) -> str:
    """A run tagged ``tag`` of one result labelled as ``variant_specs()[0]`` but stored under ``variant_id`` (the
    label a rebuilt model keeps), every one of its 400 timed runs ``p50_ms`` long."""
    spec = variant_specs()[0]
    run_id = store.start_run("models", {}, "h-models", MACHINE, (tag,))
    store.upsert_variant(variant_id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
    samples = [round(p50_ms * 1e6)] * 400
    result = synthetic_result("k", spec, np.random.default_rng(0)).model_copy(update={
        "samples_ns": samples, "latency_ms": {"p50": p50_ms, "p99": p50_ms}, "latency_ci_ms": None,
        "throughput_ips": 1000 / p50_ms, "accuracy": accuracy, "peak_rss_mb": rss_mb})
    store.add_measurement(MeasurementRecord(run_id, "k", variant_id, "local-cpu", "onnxruntime", result,
                                            {"threads": 1}, size))
    store.finish_run(run_id)
    return run_id


def test_repeats_read_only_the_runs_of_the_newest_runs_variant(sqlite_store: Store) -> None:
    """Two runs tagged main of two models under one label (the model changed on main): --repeats gave the p50 the
    geometric mean of both models' runs (sqrt(0.4 x 0.1) = 0.2 ms, runs [2, 1]) while size and accuracy read the
    latest run alone. Every metric now reads the runs of the variant main's newest run (by start, as a tag orders
    its runs) measured, and the run left out is named. By hand: newest main run 0.1 ms, 1000 bytes, 0.90, 100 MiB;
    candidate 0.13 ms: p50 +30 %, throughput 10000 -> 7692.3/s (-23.1 %), size and accuracy unchanged."""
    old = _store_model(sqlite_store, "main", "old-model", 0.4, 4000, 0.80, 200.0)
    new = _store_model(sqlite_store, "main", "new-model", 0.1, 1000, 0.90, 100.0)
    cand = _store_model(sqlite_store, "cand", "new-model", 0.13, 1000, 0.90, 100.0)
    cmp = compare_runs(sqlite_store, "main", "cand", repeats=True, lookback=0)
    [result] = cmp.results
    changes = {c.metric: c for c in result.changes}
    assert {m: c.runs for m, c in changes.items() if c.verdict != "n/a"} == dict.fromkeys(
        ("latency", "p99", "throughput", "memory", "size", "accuracy"), (1, 1))
    assert (changes["latency"].baseline, changes["latency"].change) == pytest.approx((0.1, 30.0))
    assert (changes["throughput"].baseline, changes["throughput"].change) == pytest.approx((10_000, -300 / 13))
    assert changes["memory"].baseline == pytest.approx(100.0) and changes["size"].baseline == 1000
    assert changes["accuracy"].baseline == pytest.approx(0.90) and changes["accuracy"].change == pytest.approx(0.0)
    assert result.measurement_ids[0] == [int(sqlite_store.measurements(new)["id"].iloc[0])]
    note = (f"baseline run {old} left out of 1 result(s): it measured other variants than the baseline's newest run "
            f"of each (e.g. baseline/fp32 on local-cpu · onnxruntime · 1 threads: old-model, run {new}: new-model); a "
            "result reads only the runs of its newest run's variant")
    assert note in cmp.warnings and note in to_markdown(cmp) and note in cmp.to_json()["warnings"]
    assert not any(cand in w for w in cmp.warnings)  # the candidate's one run is all of its side
    assert "decided on per-run values: 1 baseline and 1 candidate run(s)" in cmp.method  # main's old run read by none

    # the old model's run started last (a cached store imported after the fresh run): main's newest run is the old
    # model's, as `compare main cand` without --repeats reads it, and every metric reads it: 0.13 / 0.4 = -67.5 %
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("update runs set started_at = '2999-01-01T00:00:00Z' where id = ?", (old,))
    moved = compare_runs(sqlite_store, "main", "cand", repeats=True, lookback=0)
    changes = {c.metric: c for c in moved.results[0].changes}
    assert changes["latency"].runs == (1, 1) and changes["latency"].change == pytest.approx(-67.5)
    assert changes["size"].baseline == 4000 and changes["accuracy"].baseline == pytest.approx(0.80)
    assert changes["memory"].baseline == pytest.approx(200.0)
    assert any(w.startswith(f"baseline run {new} left out of 1 result(s)") for w in moved.warnings), moved.warnings


def test_another_experiment_or_model_as_the_baseline_is_said(sqlite_store: Store) -> None:
    """A baseline run of another experiment (resnet56_cifar against digits_cnn) was compared as a normal gate result
    (size +284.5 %, accuracy -2.8 pp) with only each variant's "rebuilt from changed inputs" line: compare names both
    experiments and models, and still compares (a team may compare two models on purpose)."""
    other = fill_run(sqlite_store, "other", seed=1, experiment={"model": {"name": "resnet56_cifar", "file": None}})
    mine = fill_run(sqlite_store, "my", seed=2, experiment={"model": {"name": "digits_cnn", "file": None}})
    own = fill_run(sqlite_store, "my", seed=3, experiment={"model": {"file": "nets.py", "factory": "build_net"}})
    again = fill_run(sqlite_store, "my", seed=4, experiment={"model": {"name": "digits_cnn", "file": None}})
    # a CI job's base worktree holds the model's file at another absolute path: the same model
    base_checkout, pr_checkout = (fill_run(sqlite_store, "my", seed=5 + i, experiment={"model": {
        "file": f"{root}/nets.py", "factory": "build_net"}}) for i, root in enumerate(("/ci/base", "/ci/pr")))
    assert not any("different experiments" in w for w in compare_runs(sqlite_store, base_checkout, pr_checkout).warnings)
    cmp = compare_runs(sqlite_store, other, mine)
    line = ("different experiments: baseline 'other' (model resnet56_cifar) vs candidate 'my' (model digits_cnn); "
            "results are paired by label across them, so a change shows how the two differ, not what the candidate "
            "changed")
    assert line in cmp.warnings and line in to_markdown(cmp) and line in cmp.to_json()["warnings"]
    assert len(cmp.results) == len(variant_specs())  # said, not refused
    # one experiment name, another model (a model built by a function in a file is named by both)
    assert "different experiments: baseline 'my' (model digits_cnn) vs candidate 'my' (model nets.py:build_net)" in (
        compare_runs(sqlite_store, mine, own).warnings[0])
    assert not any("different experiments" in w for w in compare_runs(sqlite_store, mine, again).warnings)
