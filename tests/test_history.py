"""History over tagged runs and change-point detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from store_fixtures import PNG_MAGIC, fill_run

from edgebench.job import JobResult
from edgebench.report import render_report
from edgebench.store import Store
from edgebench.store.history import detect_change_points, history_frame, series_change_points
from edgebench.store.record import MeasurementRecord


def test_step_change_is_found_once() -> None:
    values = [1.0, 1.01, 0.99, 1.0, 1.12, 1.11, 1.13]
    [cp] = detect_change_points(values, min_effect_pct=5)
    assert cp.index == 4 and cp.verdict == "regression" and 10 < cp.change_pct < 13


def test_single_outlier_and_small_drift_are_not_changes() -> None:
    assert detect_change_points([1.0, 1.0, 1.4, 1.0, 1.01, 0.99], min_effect_pct=5) == []
    assert detect_change_points([1.0, 1.01, 1.02, 1.03, 1.04], min_effect_pct=5) == []


def test_two_steps_and_direction() -> None:
    values = [100, 101, 99, 100.5, 99.5, 120, 121, 119, 120.5, 119.5, 100, 99, 101, 100.5, 99.5]
    got = detect_change_points(values, min_effect_pct=5)
    assert [(c.index, c.verdict) for c in got] == [(5, "regression"), (10, "improvement")]
    higher = detect_change_points([100, 100, 80, 80], min_effect_pct=5, higher_is_better=True)
    assert [(c.index, c.verdict) for c in higher] == [(2, "regression")]


def _latency_runs(store: Store, factors: list[float], seed: int = 0) -> None:
    """One tagged run per factor, each with one result whose samples are scaled by it."""
    rng = np.random.default_rng(seed)
    for i, factor in enumerate(factors):
        samples = (100_000 * factor * rng.lognormal(0, 0.02, 500)).astype(np.int64)
        run_id = store.start_run("exp", {}, "h", {}, tags=(f"r{i}",))
        result = JobResult(job_id="k", status="ok", samples_ns=samples.tolist(),
                           latency_ms={"p50": float(np.median(samples)) / 1e6})
        store.add_measurement(MeasurementRecord(run_id, "k", "v", "local-cpu", "onnxruntime", result, {"threads": 1}))


def test_history_of_identical_artifacts_has_no_change_points(sqlite_store: Store) -> None:
    # four back-to-back runs of the same artifact on a shared machine: its p50 moves by several percent per run
    _latency_runs(sqlite_store, [1.0, 1.09, 0.97, 1.12])
    hist = history_frame(sqlite_store, "latency")
    assert detect_change_points(hist["value"].to_list(), 5)  # the bare minimum-effect rule would call a change
    assert series_change_points(sqlite_store, hist, "latency").empty  # too few runs to know the spread: allowance


def test_history_tests_steps_against_the_series_spread(sqlite_store: Store) -> None:
    rng = np.random.default_rng(1)
    noise = np.exp(rng.normal(0, 0.02, 16))
    _latency_runs(sqlite_store, list(noise * np.r_[np.ones(8), np.full(8, 1.12)]))
    hist = history_frame(sqlite_store, "latency")
    changes = series_change_points(sqlite_store, hist, "latency")
    assert changes[["run_label", "verdict"]].values.tolist() == [["r8", "regression"]]
    # the same 12 % step in a series whose runs move by ~10 % is not distinguishable from its noise
    loud = np.exp(rng.normal(0, 0.10, 16)) * np.r_[np.ones(8), np.full(8, 1.12)]
    assert detect_change_points(list(loud), 5) == []


def test_runs_of_one_tag_are_told_apart_by_their_ids(sqlite_store: Store) -> None:
    """A CI job's repeats (main, main, candidate, candidate) were columns of the same name."""
    ids = [fill_run(sqlite_store, seed=i, tags=(tag,)) for i, tag in enumerate(["main", "main", "candidate", "v1"])]
    labels = history_frame(sqlite_store, "latency").drop_duplicates("run_id")["run_label"].tolist()
    assert labels == [f"main {ids[0][-6:]}", f"main {ids[1][-6:]}", "candidate", "v1"]
    assert len(set(labels)) == 4


def test_history_over_tagged_runs_and_report_page(sqlite_store: Store, tmp_path: Path) -> None:
    for i, factor in enumerate([1.0, 1.0, 1.3, 1.3]):
        fill_run(sqlite_store, seed=i, tags=(f"v0.{i}",), slowdown={"baseline/fp32": factor})
    untagged = fill_run(sqlite_store, seed=9)
    hist = history_frame(sqlite_store, "latency")
    assert sorted(set(hist["run_label"])) == ["v0.0", "v0.1", "v0.2", "v0.3"]  # untagged run left out
    changes = series_change_points(sqlite_store, hist, "latency")
    assert changes[["label", "run_label", "verdict"]].values.tolist() == [["baseline/fp32", "v0.2", "regression"]]
    index = render_report(sqlite_store, untagged, tmp_path / "r")
    page = (index.parent / "history.html").read_text()
    assert 'href="history.html"' in index.read_text()
    # the report's history ends at its own run, untagged and back to normal speed: an improvement there
    assert "<td>v0.2</td>" in page and "<td>regression</td>" in page
    assert f"<td>{untagged}</td>" in page and "<td>improvement</td>" in page
    assert (index.parent / "history_latency.png").read_bytes()[:8] == PNG_MAGIC


def test_a_switch_of_energy_meter_starts_a_series_and_unmeasured_values_are_no_points(sqlite_store: Store) -> None:
    """A RAPL 1 mJ then a TDP estimate of 0.5 mJ read as an improvement; runs without energy printed 'nan'."""
    runs = [fill_run(sqlite_store, seed=i, tags=(f"v{i}",)) for i in range(5)]
    with sqlite_store.engine.begin() as conn:
        for i, run_id in enumerate(runs[1:], start=1):
            source, joules = ("measured:rapl", 1e-3) if i < 3 else ("estimated:tdp-x-cpu-util", 5e-4)
            conn.exec_driver_sql("update measurements set energy_j_per_inference = ?, energy_source = ? where "
                                 "run_id = ? and status = 'ok'", (joules, source, run_id))
    hist = history_frame(sqlite_store, "energy")
    assert set(hist["run_label"]) == {"v1", "v2", "v3", "v4"} and hist["value"].notna().all()  # v0: no energy
    one = hist[hist["label"] == "baseline/fp32"]
    assert sorted(set(one["context"])) == ["local-cpu · onnxruntime · 1 threads [estimated:tdp-x-cpu-util]",
                                           "local-cpu · onnxruntime · 1 threads [measured:rapl]"]
    assert series_change_points(sqlite_store, hist, "energy").empty

    from typer.testing import CliRunner

    from edgebench.cli import app

    shown = CliRunner().invoke(app, ["history", "--metric", "energy", "--store",
                                     str(sqlite_store.engine.url.database)], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output  # rich read "[measured:rapl]" as markup and dropped the meter
    assert "[estimated:tdp-x-cpu-util]" in shown.output and "[measured:rapl]" in shown.output
