"""The machine's speed around each timed window (``measure.speed_probe``): stored, and never decided across."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_fixtures import MACHINE, synthetic_result, variant_specs

from edgebench.job import JobResult, SpeedProbe
from edgebench.measure.reference_workload import reference_job
from edgebench.measure.speed_probe import within_window
from edgebench.measure.worker import execute
from edgebench.remeasure import _disturbed
from edgebench.store import Store
from edgebench.store.compare import compare_runs, disturbance
from edgebench.store.history import history_frame
from edgebench.store.record import MeasurementRecord


def test_a_window_changed_speed_only_beyond_the_tolerance() -> None:
    assert SpeedProbe(before_us=10.0, after_us=13.0, tolerance=0.15).changed == pytest.approx(0.3)
    assert SpeedProbe(before_us=10.0, after_us=8.0, tolerance=0.15).changed == pytest.approx(-0.2)
    assert SpeedProbe(before_us=10.0, after_us=11.0, tolerance=0.15).changed is None
    assert SpeedProbe(before_us=10.0, after_us=11.0, tolerance=0.15).level_us == pytest.approx(10.5)


def test_a_change_of_speed_inside_the_window_is_read_from_its_own_samples() -> None:
    # eight segments of 25 samples: the first four at 10 us, the last four at 20 us (later / earlier - 1 = 1)
    assert within_window([10_000] * 100 + [20_000] * 100) == pytest.approx(1.0)
    assert within_window([20_000] * 100 + [10_000] * 100) == pytest.approx(-0.5)  # twice as fast later
    # a burst in one segment: 30 us between 10 us segments; fastest (first) before slowest (fourth)
    assert within_window([10_000] * 75 + [30_000] * 25 + [10_000] * 100) == pytest.approx(2.0)
    steady = np.random.default_rng(0).normal(25_000, 500, 4000)  # 2 % noise: segment medians agree to ~0.2 %
    assert abs(within_window(steady)) < 0.01
    assert within_window([10_000] * 49) is None  # one segment's worth: nothing to compare
    probe = SpeedProbe(before_us=11.0, after_us=11.4, tolerance=0.15, within=0.7)  # probes agree, samples do not
    assert probe.changed == pytest.approx(0.7) and probe.seen_by == "its own samples"
    assert SpeedProbe(before_us=11.0, after_us=11.4, tolerance=0.15, within=0.1).changed is None
    assert "(its own samples +70%)" in disturbance({"speed_probe": probe.model_dump()})


def test_speeds_apart_beyond_the_tolerance_are_flagged_either_way() -> None:
    # 20 % slower early than late is as far apart as 20 % slower late: 1 / 1.2 - 1 = -0.1667
    assert SpeedProbe(before_us=12.0, after_us=10.0, tolerance=0.15).changed == pytest.approx(-1 / 6)
    assert SpeedProbe(before_us=10.0, after_us=12.0, tolerance=0.15).changed == pytest.approx(0.2)
    assert SpeedProbe(before_us=11.0, after_us=10.0, tolerance=0.15).changed is None  # 10 % apart
    assert SpeedProbe(before_us=11.0, after_us=11.0, tolerance=0.15, within=-1 / 6).changed == pytest.approx(-1 / 6)


def test_a_real_measurement_stores_its_probes(tmp_path: Path, sqlite_store: Store) -> None:
    result = execute(reference_job(tmp_path))
    assert result.status == "ok" and result.speed_probe is not None
    assert 0 < result.speed_probe.before_us < 1e4 and 0 < result.speed_probe.after_us < 1e4
    assert result.speed_probe.within == within_window(result.samples_ns)
    run_id = sqlite_store.start_run("p", {}, "h", MACHINE, ("p",))
    sqlite_store.add_measurement(MeasurementRecord(run_id, "ref", "ref", "local-cpu", "onnxruntime", result,
                                                   {"threads": 1}))
    stored = sqlite_store.measurements(run_id)["details"].iloc[0]["speed_probe"]
    assert stored["before_us"] == result.speed_probe.before_us


def _one(store: Store, tag: str, factor: float, probe: tuple[float, float] | None) -> None:
    spec = variant_specs()[0]
    store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
    run_id = store.start_run("s", {}, "h", MACHINE, (tag,))
    result = synthetic_result("k", spec, np.random.default_rng(int(factor * 100)), factor)
    if probe is not None:
        result.speed_probe = SpeedProbe(before_us=probe[0], after_us=probe[1], tolerance=0.15)
    store.add_measurement(MeasurementRecord(run_id, "k", spec.id, "local-cpu", "onnxruntime", result, {"threads": 1},
                                            1000))


def _latency(store: Store) -> object:
    return next(c for c in compare_runs(store, "base", "cand").results[0].changes if c.metric == "latency")


def test_one_side_on_a_slower_machine_is_not_decided(sqlite_store: Store) -> None:
    _one(sqlite_store, "base", 1.0, (11.0, 11.2))
    _one(sqlite_store, "cand", 1.6, (15.8, 16.1))  # 60 % slower p50 while the probe ran 44 % slower
    latency = _latency(sqlite_store)
    assert latency.verdict == "undecided" and latency.change > 50
    assert "candidate" in latency.note and "speed probe" in latency.note


def test_a_side_whose_window_changed_speed_is_named_in_the_note(sqlite_store: Store) -> None:
    _one(sqlite_store, "base", 1.0, (11.0, 16.0))  # the baseline's own window: probes 45 % apart
    _one(sqlite_store, "cand", 1.0, (11.0, 11.1))
    latency = _latency(sqlite_store)
    assert latency.verdict == "undecided"
    assert "the machine's speed changed during the baseline's timed window (speed probe +45%)" in latency.note


def test_both_sides_at_one_speed_are_decided(sqlite_store: Store) -> None:
    _one(sqlite_store, "base", 1.0, (11.0, 11.2))
    _one(sqlite_store, "cand", 1.6, (11.3, 11.1))  # the same machine speed: the 60 % is the artifact's
    assert _latency(sqlite_store).verdict == "regression"


def test_runs_stored_without_a_probe_are_decided_as_before(sqlite_store: Store) -> None:
    _one(sqlite_store, "base", 1.0, None)
    _one(sqlite_store, "cand", 1.6, (15.8, 16.1))
    assert _latency(sqlite_store).verdict == "regression"


def test_a_window_the_machine_changed_speed_in_is_disturbed(sqlite_store: Store) -> None:
    probe = {"before_us": 11.0, "after_us": 16.0, "tolerance": 0.15}
    assert "speed changed during its timed window (speed probe +45%)" in disturbance({"speed_probe": probe})
    assert disturbance({"speed_probe": {**probe, "after_us": 11.5}}) is None
    _one(sqlite_store, "r0", 1.0, (11.0, 11.0))
    _one(sqlite_store, "r1", 1.5, (11.0, 16.0))
    assert history_frame(sqlite_store, "latency")["contended"].tolist() == [False, True]


def test_remeasure_leaves_out_rounds_at_two_speeds() -> None:
    def measured(before: float, after: float) -> JobResult:
        return JobResult(job_id="k", status="ok", speed_probe=SpeedProbe(before_us=before, after_us=after,
                                                                         tolerance=0.15))

    assert not _disturbed(measured(11, 11.5), measured(11.2, 11.0))
    assert _disturbed(measured(11, 11.5), measured(16, 16.2))  # the candidate's window ran on a slower machine
    assert _disturbed(measured(11, 16), measured(11, 11))  # the speed changed within the baseline's window
    assert not _disturbed(JobResult(job_id="k", status="ok"), measured(16, 16))  # one probe: nothing to compare


def test_the_reports_table_shows_a_window_the_machine_changed_speed_in() -> None:
    from edgebench.report.html import _contention_cell

    contention = {"other_cores": 0.01, "flagged": False}
    steady = {"contention": contention, "speed_probe": {"before_us": 11.0, "after_us": 11.4, "tolerance": 0.15}}
    assert _contention_cell(steady) == "0.01"
    changed = {**steady, "speed_probe": {"before_us": 11.0, "after_us": 16.0, "tolerance": 0.15}}
    assert _contention_cell(changed) == "0.01 ⚠ machine speed +45% across the window"
    inside = {**steady, "speed_probe": {**steady["speed_probe"], "within": -0.3}}
    assert _contention_cell(inside) == "0.01 ⚠ machine speed -30% within the window (its own samples)"
