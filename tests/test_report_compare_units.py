"""The compare page shows each compared value in the unit the run report uses, with that unit."""

from __future__ import annotations

import numpy as np
import pytest
from bokeh.models import LogScale
from store_fixtures import MACHINE, synthetic_result, variant_specs

from edgebench.report.compare_page import _value, distribution_figure
from edgebench.store import Store
from edgebench.store.compare import MatchedResult
from edgebench.store.record import MeasurementRecord


def test_compare_values_are_in_the_reports_units() -> None:
    assert _value(40000.000001, "size") == "39.1 KiB (40,000 B)"
    assert _value(5.000000000000001e-4, "energy") == "0.5 mJ"
    assert _value(130.0, "memory") == "130 MiB" and _value(0.25, "latency") == "0.25 ms"
    assert _value(0.95, "accuracy") == "0.95" and _value(None, "size") == "—"



def test_a_slow_outlier_leaves_a_fast_results_distribution_readable(sqlite_store: Store) -> None:
    """999 iterations near 0.02 ms and one descheduled at 5 ms: on a linear axis to 5 ms the median sat 0.4 % of the
    way along (0.02 / 5), every curve pressed against the axis. The axis is logarithmic, where a 10 % spread is as
    wide at 0.02 ms as at 5 ms; the curve is drawn from the samples unchanged (all positive, as a log axis needs)."""
    spec = variant_specs()[0]
    run_id = sqlite_store.start_run("one", {}, "h1", MACHINE)
    sqlite_store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
    samples = np.r_[np.linspace(19_000, 21_000, 999), 5_000_000].astype(np.int64)
    result = synthetic_result("k", spec, np.random.default_rng(0)).model_copy(update={"samples_ns": samples.tolist()})
    sqlite_store.add_measurement(MeasurementRecord(run_id, "k", spec.id, "local-cpu", "onnxruntime", result,
                                                   {"threads": 1}, 1000))
    measurement = int(sqlite_store.measurements(run_id)["id"].iloc[0])
    fig = distribution_figure(sqlite_store, MatchedResult(spec.label, spec.id, "local-cpu", [], [],
                                                          ([measurement], [measurement])))
    assert fig is not None and isinstance(fig.x_scale, LogScale)
    xs = np.asarray(fig.renderers[0].data_source.data["x"])
    assert xs.min() > 0 and xs[100] == pytest.approx(0.020, rel=1e-3) and xs.max() == pytest.approx(5.0)
