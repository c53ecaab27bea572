"""Small things that keep the report readable: legend chips of long names, linear tick labels of tiny latencies,
and the history page's link back to a report only where there is one."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from store_fixtures import fill_run

from edgebench.report import plots
from edgebench.report.explore import explorer_html
from edgebench.report.history_page import render_history
from edgebench.report.tables import panels
from edgebench.store import Store
from edgebench.store.metrics import METRICS

ACCURACY, LATENCY = METRICS["accuracy"], METRICS["latency"]


def test_history_page_links_back_only_to_a_report_that_exists(sqlite_store: Store, tmp_path: Path) -> None:
    fill_run(sqlite_store, name="n", tags=("v1",))
    fill_run(sqlite_store, name="n", seed=1, tags=("v2",))
    page = render_history(sqlite_store, tmp_path / "h", "latency", name="n")
    assert page is not None and 'href="index.html"' not in page.read_text()
    (tmp_path / "h" / "index.html").write_text("report")
    assert 'href="index.html"' in render_history(sqlite_store, tmp_path / "h", "latency", name="n").read_text()


def test_legend_chips_cut_long_names_with_the_whole_name_as_tooltip(sqlite_store: Store) -> None:
    run_id = fill_run(sqlite_store, fail_one=False)
    ok = sqlite_store.measurements(run_id).query("status == 'ok'").copy()
    long = "x" * 300
    ok.loc[ok["criterion"] == "random", "criterion"] = long
    ok.loc[ok["criterion"] == long, "method"] = long
    page = explorer_html(ok, [(LATENCY, ACCURACY)], {})
    chip = re.search(rf'<button class=chip data-group="{long}" title="{long}">(.*?)</button>', page)
    assert chip and len(chip[1].split("</i> ", 1)[1]) == plots.LEGEND_CHARS and "…" in chip[1]


def test_linear_tick_labels_of_tens_of_microseconds_stay_apart() -> None:
    """Three panels and a legend of long names, latencies from 6 to 24 µs: matplotlib's default ticks every 2.5 µs
    printed '0.0200' and '0.0225' 2 px apart in the all-targets panel."""
    n = 12
    df = pd.DataFrame({
        "p50_ms": np.linspace(0.006, 0.024, n), "accuracy": np.linspace(0.9, 0.95, n), "target": ["a", "b", "c"] * 4,
        "backend": "onnxruntime", "threads": 1, "scenario": "single_stream", "batch_size": 1, "kind": "structured",
        "method": [f"criterion-with-a-longer-name-{i}" for i in range(n)], "precision": "fp32", "bops": np.nan,
        "energy_source": None,
    })  # fmt: skip
    fig = plots.tradeoff_figure(df, LATENCY, ACCURACY, panels(df))
    fig.set_dpi(110)  # as plots.save writes the PNG
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, (0, 2)), (ax.yaxis, (1, 3))):
            boxes = [t.get_window_extent(renderer).extents for t in axis.get_ticklabels() if t.get_text()]
            spans = sorted((b[lo], b[hi]) for b in boxes)
            gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
            assert len(spans) >= 3 and min(gaps) > 15, (axis.get_ticklabels(), gaps)  # two characters apart at least


def test_fifteen_criteria_get_their_own_colours_and_a_legend_that_fits_the_figure() -> None:
    """A lab's sweep of 14 criteria: tab10's colours repeated from the 11th (bn_scale and taylor_activation the same
    blue), and the one-column legend of 45 entries ran off the 4-inch figure (sosp_h, taylor_* never shown)."""
    criteria = [f"criterion{i:02d}" for i in range(15)]
    rows = [(c, p) for c in criteria for p in ("fp32", "int8", "fp16")]
    n = len(rows)
    df = pd.DataFrame({
        "p50_ms": np.linspace(0.006, 0.024, n), "accuracy": np.linspace(0.9, 0.95, n), "target": "local-cpu",
        "backend": "onnxruntime", "threads": 1, "scenario": "single_stream", "batch_size": 1, "kind": "structured",
        "method": [c for c, _ in rows], "precision": [p for _, p in rows], "bops": np.nan, "energy_source": None,
    })  # fmt: skip
    colors = plots.palette([f"{c}/{p}" for c, p in rows])
    assert len({colors[f"{c}/fp32"] for c in criteria}) == 15
    fig = plots.tradeoff_figure(df, LATENCY, ACCURACY, panels(df))
    fig.set_dpi(110)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    (legend,) = fig.legends
    assert len(legend.get_texts()) >= n and legend._ncols > 1  # and the fronts' own entries
    box, frame = legend.get_window_extent(renderer), fig.bbox
    assert frame.y0 <= box.y0 and box.y1 <= frame.y1 and box.x1 <= frame.x1  # every entry inside the figure


def test_the_static_figures_legend_leaves_the_title_readable() -> None:
    """A battery's energy figure: the legend sat right of the panels with its top at the figure's, over the end of
    the title ('(mJ, estimated)' hidden under it); so on every figure, one panel or three."""
    rows = [(m, p) for m in ("baseline", "l1") for p in ("fp32", "int8")]
    for targets in (["est-cpu"], ["est-cpu", "rpi5", "jetson"]):
        df = pd.DataFrame([{
            "p50_ms": 0.012 + 0.001 * i, "accuracy": 0.97 - 0.02 * i, "energy_j_per_inference": 1e-4 * (1 + i),
            "energy_source": "estimated:tdp", "target": target, "backend": "onnxruntime", "threads": 1,
            "scenario": "single_stream", "batch_size": 1, "kind": "baseline" if m == "baseline" else "structured",
            "method": None if m == "baseline" else m, "method_note": None if m == "baseline" else "reading",
            "precision": p, "bops": np.nan,
        } for target in targets for i, (m, p) in enumerate(rows)])  # fmt: skip
        for x in (METRICS["energy"], LATENCY):
            fig = plots.tradeoff_figure(df, x, ACCURACY, panels(df))
            fig.set_dpi(110)
            renderer = FigureCanvasAgg(fig).get_renderer()
            fig.draw(renderer)
            (legend,) = fig.legends
            box = legend.get_window_extent(renderer)
            (title,) = [t for t in fig.texts if t.get_text().startswith("top-1 accuracy vs ")]
            titles = [title, *(ax.title for ax in fig.axes)]
            assert "(mJ, estimated)" in title.get_text() or x is LATENCY
            for text in titles:
                extent = text.get_window_extent(renderer)
                assert not box.overlaps(extent), (targets, x.name, text.get_text())
                assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1  # the title whole inside the figure
            assert fig.bbox.y0 <= box.y0 and box.x0 >= fig.bbox.x0 and box.x1 <= fig.bbox.x1
