"""Which rows the report puts on a Pareto front, and how it draws what it cannot compare: fronts per target (its
backends compete, as in the terminal summary and ``Results.pareto``), estimated energy never beside measured energy,
non-finite values as missing, and plots hidden where a target has nothing to draw."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bokeh.models import BooleanFilter, ColumnDataSource
from matplotlib.figure import Figure
from store_fixtures import fill_run, synthetic_result, variant_specs

from edgebench.report import pareto_mask, plots, render_report
from edgebench.report.explore import _tradeoff_figure, explorer_html, figure_axes, selector_options, source_data
from edgebench.report.tables import best_under_budget, default_budgets, front_mask, pareto_flags, target_fronts
from edgebench.store import Store
from edgebench.store.metrics import METRICS, Metric
from edgebench.store.record import MeasurementRecord

ACCURACY, LATENCY, ENERGY = METRICS["accuracy"], METRICS["latency"], METRICS["energy"]
LOCAL = "local-cpu · onnxruntime"


def add_measurement(store: Store, run_id: str, label: str, target: str, backend: str, **result: Any) -> None:
    """One more measurement of the fixture variant ``label`` with ``result``'s fields replaced (p50 in ms)."""
    spec = next(s for s in variant_specs() if s.label == label)
    base = synthetic_result(f"{spec.id}:{target}:{backend}", spec, np.random.default_rng(0))
    if "p50" in result:
        p50 = result.pop("p50")
        result |= {"latency_ms": {**base.latency_ms, "p50": p50, "p90": p50, "p99": p50}, "latency_ci_ms": None}
    settings = {"threads": 1, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
    store.add_measurement(MeasurementRecord(run_id, base.job_id, spec.id, target, backend,
                                            base.model_copy(update=result), settings, 10_000))


def energy_frame() -> pd.DataFrame:
    """Three rows of one target: an estimate of 0.5 mJ, a RAPL reading of 1 mJ and an estimate of 2 mJ."""
    return pd.DataFrame({
        "label": ["a", "b", "c"], "target": "t", "backend": "onnxruntime", "accuracy": [0.97, 0.95, 0.95],
        "kind": "structured", "method": ["random", "l1", "l2"], "precision": "fp32",
        "energy_j_per_inference": [5e-4, 1e-3, 2e-3], "energy_source": ["estimated:tdp", "measured:rapl", "estimated:tdp"],
    })  # fmt: skip


# --- non-finite values are missing (D9) ---------------------------------------------------------------------------


def test_an_infinite_value_is_never_on_a_front_and_never_dominates() -> None:
    df = pd.DataFrame({"p50_ms": [np.inf, 1.0, 2.0], "accuracy": [0.99, 0.9, 0.95]})
    assert pareto_mask(df, [("p50_ms", "min"), ("accuracy", "max")]).tolist() == [False, True, True]
    df.loc[0, "p50_ms"] = -np.inf  # a "best" latency of -inf would dominate every row
    assert pareto_mask(df, [("p50_ms", "min"), ("accuracy", "max")]).tolist() == [False, True, True]


def test_budgets_leave_an_infinite_value_out() -> None:
    values = pd.Series([0.5, 1.0, 2.0, np.inf])
    budgets = default_budgets(values)
    assert budgets and all(np.isfinite(budgets)) and max(budgets) == 2.0
    ok = pd.DataFrame({"label": ["fast", "slow", "broken"], "target": "t", "backend": "b", "threads": 1,
                       "scenario": "single_stream", "batch_size": 1, "accuracy": [0.9, 0.95, 0.99],
                       "p50_ms": [0.5, 2.0, np.inf], "energy_source": None})  # fmt: skip
    table = best_under_budget(ok, LATENCY, default_budgets(ok["p50_ms"]))
    assert table.columns.tolist() == ["target", "≤ 0.5", "≤ 0.8", "≤ 1.3", "≤ 2"]  # no '≤ nan' or '≤ inf' column
    assert table.iloc[0].tolist()[1:] == ["fast (acc 0.900, 0.5)"] * 3 + ["slow (acc 0.950, 2)"]


# --- estimated energy (D1) ----------------------------------------------------------------------------------------


def test_an_estimate_never_dominates_a_measured_energy_figure() -> None:
    df = energy_frame()
    assert front_mask(df, ENERGY, ACCURACY).tolist() == [False, True, False]  # the RAPL reading alone
    estimates = df[df["energy_source"] == "estimated:tdp"]
    assert front_mask(estimates, ENERGY, ACCURACY).tolist() == [True, False]  # nothing measured: the estimates' own


def test_static_energy_figure_says_estimated_with_hollow_markers_and_a_measured_front() -> None:
    df = energy_frame()
    fig = Figure()
    ax = fig.subplots()
    plots.tradeoff_axes(ax, df, ENERGY, ACCURACY, "t", plots.palette(sorted(set(df.apply(plots.series_name, axis=1)))))
    assert ax.get_xlabel() == "energy per inference (mJ, measured and estimated)"
    assert "front over measured energy only" in ax.get_title()
    handles, labels = ax.get_legend_handles_labels()
    assert plots.ESTIMATED in labels
    rings = next(h for h, label in zip(handles, labels) if label == "Pareto-optimal")
    assert rings.get_offsets().tolist() == [[1.0, 0.95]]  # the measured 1 mJ, not the estimated 0.5 mJ
    hollow = [h for h, label in zip(handles, labels) if label not in ("Pareto front", "Pareto-optimal")
              and hasattr(h, "get_facecolors") and len(h.get_offsets()) and not h.get_facecolors().any()]
    assert sorted(x for h in hollow for x, _ in h.get_offsets().tolist()) == [0.5, 2.0]  # the two estimates
    fig, ax = Figure(), Figure().subplots()
    only = df[df["energy_source"] == "estimated:tdp"]
    plots.tradeoff_axes(ax, only, ENERGY, ACCURACY, "t", plots.palette(sorted(set(only.apply(plots.series_name, axis=1)))))
    assert ax.get_xlabel() == "energy per inference (mJ, estimated)"


def interactive(ok: pd.DataFrame, x: Metric, y: Metric) -> tuple[Any, list[str], dict[str, Any]]:
    """The interactive figure of (x, y), the selector options it has points for, and its fronts by option."""
    source = ColumnDataSource(source_data(ok, [x, y]))
    (_, _, contexts), = figure_axes(ok, [(x, y)])
    fig, layers, with_points = _tradeoff_figure(source, BooleanFilter(booleans=[True] * len(ok)), ok, x, y, contexts,
                                                selector_options(ok)[0])
    fronts = {o: next(r.data_source for r in renderers if getattr(r.data_source, "name", "") == "eb-front")
              for o, renderers in layers.items()}
    return fig, with_points, fronts


def test_interactive_energy_plot_says_estimated_and_fronts_measured_only(sqlite_store: Store) -> None:
    run_id = fill_run(sqlite_store, fail_one=False)
    ok = sqlite_store.measurements(run_id).query("status == 'ok'").copy()
    ok["energy_j_per_inference"], ok["energy_source"] = 2e-3, "estimated:tdp"
    ok.loc[ok.index[:2], "energy_j_per_inference"] = [5e-4, 1e-3]
    ok.loc[ok.index[1], "energy_source"] = "measured:rapl"
    fig, _, fronts = interactive(ok, ENERGY, ACCURACY)
    assert fig.xaxis[0].axis_label == "energy per inference (mJ, measured and estimated)"
    assert fronts[LOCAL].data == {"x": [1.0], "y": [ok.iloc[1]["accuracy"]]}  # the RAPL reading, not the estimate
    assert fronts[LOCAL].tags[0]["rows"] == [1]  # the page script redraws it from the measured row only
    points = next(r for r in fig.renderers if r.name == "eb-points")
    assert points.glyph.fill_alpha == "energy_fill"  # the source's column
    assert points.nonselection_glyph.fill_alpha == "energy_fill_faint"  # hollow while another point is selected
    assert source_data(ok, [ENERGY])["energy_fill"][:2] == [0.0, 0.75]  # hollow: the estimate
    page = explorer_html(ok, [(ENERGY, ACCURACY)], {})
    assert "hollow: energy estimated, not measured" in page
    assert "hollow: energy" not in explorer_html(ok, [(LATENCY, ACCURACY)], {})  # no energy axis, no note


# --- fronts per target, table flags per view (D2) -----------------------------------------------------------------


@pytest.fixture
def two_backend_run(sqlite_store: Store) -> str:
    """local-cpu with onnxruntime (the fixture's 20 variants) and one torch measurement there, slower and less
    accurate than onnxruntime's baseline/fp32 but alone on its backend; rpi5 4x slower."""
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0, "rpi5": 4.0}, fail_one=False)
    add_measurement(sqlite_store, run_id, "baseline/fp32", "local-cpu", "torch", accuracy=0.97, p50=50.0)
    return run_id


def test_a_targets_backends_compete_in_flags_options_and_the_terminals_fronts(sqlite_store: Store,
                                                                              two_backend_run: str) -> None:
    ok = sqlite_store.measurements(two_backend_run).query("status == 'ok'")
    torch = ok.index[ok["backend"] == "torch"][0]
    flags = pareto_flags(ok, [(LATENCY, ACCURACY)])
    assert flags[torch] == []  # dominated by onnxruntime's baseline/fp32 on the same target
    terminal = {t: set(front.index) for t, _, front in target_fronts(ok, ACCURACY)}
    assert {i for i in ok.index if flags[i] and ok.loc[i, "target"] == "local-cpu"} == terminal["local-cpu"]
    assert selector_options(ok) == ["local-cpu · onnxruntime, torch", "rpi5 · onnxruntime", "all targets"]
    across = pareto_flags(ok, [(LATENCY, ACCURACY)], across=True)
    assert any(flags[i] for i in ok.index[ok["target"] == "rpi5"])
    assert not any(across[i] for i in ok.index[ok["target"] == "rpi5"])  # 4x slower than the same variants


def test_the_table_carries_both_flag_sets_and_the_plots_one_front_per_target(sqlite_store: Store,
                                                                             two_backend_run: str,
                                                                             tmp_path: Path) -> None:
    page = render_report(sqlite_store, two_backend_run, tmp_path / "r", objectives=[("latency", "accuracy")]).read_text()
    torch_row = re.search(r"<tr( class=pareto)? data-i=\d+><td class=l>baseline/fp32</td>(?:(?!</tr>).)*?"
                          r"local-cpu · torch(?:(?!</tr>).)*</tr>", page)
    assert torch_row and torch_row[1] is None and 'data-target="—"' in torch_row[0]
    assert 'data-across="accuracy/latency"' in page and 'data-across="—"' in page
    assert '<option value="local-cpu · onnxruntime, torch">' in page
    assert page.count('"name":"eb-front"') == 3  # local-cpu, rpi5, all targets (not one per backend)


# --- blank plots and single points (D5) ---------------------------------------------------------------------------


def test_a_plot_is_registered_only_for_targets_with_values_and_a_single_point_gets_a_narrow_axis(
    sqlite_store: Store,
) -> None:
    run_id = fill_run(sqlite_store, fail_one=False)
    add_measurement(sqlite_store, run_id, "baseline/fp32", "board", "litert", accuracy=0.95, p50=0.05)
    ok = sqlite_store.measurements(run_id).query("status == 'ok'").copy()
    ok.loc[ok["target"] == "local-cpu", ["energy_j_per_inference", "energy_source"]] = [1e-3, "measured:rapl"]
    _, with_points, _ = interactive(ok, ENERGY, ACCURACY)
    assert with_points == [LOCAL, "all targets"]  # not the board, which has no energy figure
    page = explorer_html(ok, [(ENERGY, ACCURACY), (LATENCY, ACCURACY)], {})
    note = re.search(r'<p class="muted eb-missing" data-option="board · litert"[^>]*>([^<]*)</p>', page)
    assert note and "top-1 accuracy vs energy per inference (mJ)" in note[1] and 'data-option="local-cpu' not in page
    fig, _, _ = interactive(ok[ok["target"] == "board"], LATENCY, ACCURACY)  # one point
    assert fig.x_range.default_span == pytest.approx(0.005) and fig.y_range.default_span == pytest.approx(0.095)
    nothing = explorer_html(ok.assign(peak_rss_mb=None), [(METRICS["memory"], ACCURACY)], {})
    assert "eb-plot" not in nothing and "No values on this target for: top-1 accuracy vs peak RSS (MiB)" in nothing


def test_speedup_panels_stay_per_backend(sqlite_store: Store, two_backend_run: str, tmp_path: Path) -> None:
    """A speedup is against the same backend's unpruned variant, so its figure keeps a panel per backend."""
    add_measurement(sqlite_store, two_backend_run, "l1-0.5-while_training/fp32", "local-cpu", "torch", p50=30.0)
    index = render_report(sqlite_store, two_backend_run, tmp_path / "r", objectives=[("latency", "accuracy")])
    svg = (index.parent / "speedup_vs_macs_reduction.svg").read_text()
    assert "local-cpu · torch" in svg and "local-cpu · onnxruntime" in svg
    assert "local-cpu · onnxruntime, torch" in (index.parent / "accuracy_vs_latency.svg").read_text()
