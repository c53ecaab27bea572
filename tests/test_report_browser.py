"""The HTML report in a real headless browser (Debian's chromium driven by Playwright): it loads offline
without script errors or network requests, the table sorts, and the interactive trade-off plots work as a
user drives them: hover, legend toggles, the target selector, linked selection with the table, and a click
from a point to its lineage and per-layer profile (a real ONNX Runtime profile)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from store_fixtures import fill_run, synthetic_result, variant_facts, variant_specs
from test_gate import LARGE, _runs
from typer.testing import CliRunner

from edgebench.cli.common import friendly_errors
from edgebench.cli.store import register
from edgebench.models import create_model
from edgebench.prune import create_criterion, prune_model
from edgebench.report import pareto_mask, render_report
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.runtimes.onnxruntime.profile import profile_onnxruntime
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the 'test' extra")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bootstrap.sh --test)")

#: the flags this machine's closed network needs (no background fetches), as root in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LATENCY_PLOT = "eb-plot-accuracy-latency"
#: screen position of source row i in a plot, from BokehJS's own scales (the plot is scrolled into view first)
POINT_JS = """([plot, i]) => {
  const view = Object.values(Bokeh.index).find(v => v.model.name === plot);
  view.el.scrollIntoView({block: 'center'});
  const points = [...view.renderer_views.values()].find(r => r.model.name === 'eb-points').model;
  const data = points.data_source.data;
  const sx = view.frame.x_scale.compute(data[points.glyph.x.field][i]);
  const sy = view.frame.y_scale.compute(data[points.glyph.y.field][i]);
  const box = view.canvas_view.el.getBoundingClientRect();
  return [box.left + sx, box.top + sy];
}"""
TOOLTIP_JS = "() => [...document.querySelectorAll('.bk-Tooltip')].map(t => t.shadowRoot.querySelector('.bk-tooltip-content')?.innerText ?? '').join('').replace(/\t/g, ' ')"
MODEL_JS = "name => Bokeh.documents[0].get_model_by_name(name)"
BOKEH_DOUBLETAP_MS = 300  # UIGestures.doubletap_threshold in BokehJS


class Page:
    """An opened report page that records script errors and every request."""

    def __init__(self, browser: Any, index: Path, plots: int = 3) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: {"error": self.errors, "warning": self.warnings}.get(msg.type, []).append(msg.text))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(index.as_uri())
        self.page.wait_for_load_state("load")
        self.page.wait_for_function(f"window.Bokeh && Bokeh.documents.length > 0 && Object.keys(Bokeh.index).length >= {plots}")

    def column(self, name: str) -> list[Any]:
        return self.page.evaluate(f"() => ({MODEL_JS})('eb-measurements').data[{name!r}]")

    def row_of(self, label: str, context_prefix: str = "local-cpu") -> int:
        return next(i for i, (lab, ctx) in enumerate(zip(self.column("label"), self.column("context")))
                    if lab == label and ctx.startswith(context_prefix))

    def hover(self, i: int, plot: str = LATENCY_PLOT, shown: bool = True) -> str:
        """Tooltip text with the mouse over source row ``i``; ``shown=False`` where no point should be there ('').
        A shown point's tooltip is waited for (a fixed 250 ms read it empty on a loaded machine); an absent one cannot
        be, so that case waits a fixed time, in which a late tooltip can only appear, never vanish."""
        self.page.mouse.move(1, 1)
        x, y = self.page.evaluate(POINT_JS, [plot, i])
        self.page.mouse.move(x, y)
        if shown:
            self.page.wait_for_function(f"() => ({TOOLTIP_JS})() !== ''")
        else:
            self.page.wait_for_timeout(250)
        return self.page.evaluate(TOOLTIP_JS)

    def click_point(self, i: int, plot: str = LATENCY_PLOT) -> None:
        # Bokeh turns two taps less than 300 ms apart into one double tap, which selects nothing: on a fast
        # machine a test's second click came that soon after its first.
        self.page.wait_for_timeout(BOKEH_DOUBLETAP_MS + 50)
        x, y = self.page.evaluate(POINT_JS, [plot, i])
        self.page.mouse.click(x, y)
        self.page.wait_for_function(f"i => ({MODEL_JS})('eb-measurements').selected.indices.includes(i)", arg=i)

    def selected(self) -> list[int]:
        return self.page.evaluate(f"() => ({MODEL_JS})('eb-measurements').selected.indices")

    def close(self) -> None:
        assert self.errors == []
        assert self.requests and all(url.startswith("file://") for url in self.requests)  # nothing from a network
        self.page.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def two_target_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered once for the tests that only click around in it (each opens its own page)."""
    tmp = tmp_path_factory.mktemp("two-targets")
    with Store.open(tmp / "results.db") as store:
        run_id = fill_run(store, targets={"local-cpu": 1.0, "rpi5": 4.0})
        return render_report(store, run_id, tmp / "report")


@pytest.fixture(scope="module")
def one_target_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The synthetic run (with one failed job) rendered once for the two tests that only read it, with its ONNX
    Runtime measurements by label."""
    tmp = tmp_path_factory.mktemp("one-target")
    with Store.open(tmp / "results.db") as store:
        run_id = fill_run(store)
        ok = store.measurements(run_id).query("status == 'ok' and backend == 'onnxruntime'").set_index("label")
        return render_report(store, run_id, tmp / "report"), ok


def test_report_renders_offline_with_working_images_and_sorting(
    browser: Any, one_target_report: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    index, _ = one_target_report
    view = Page(browser, index)
    page = view.page
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert images and all(width > 100 for _, width in images), images
    links = page.eval_on_selector_all("a[href$='.png'], a[href$='.svg']", "as => as.map(a => a.getAttribute('href'))")
    assert {"accuracy_vs_latency.png", "accuracy_vs_latency.svg"} <= set(links)  # static figures for papers
    assert all((index.parent / link).is_file() for link in links)
    assert "Failed jobs (1)" in page.inner_text("body")
    # a failure's message wraps inside its cell: it ran on one line past the table, and the page scrolled sideways
    assert page.eval_on_selector("td.err", "e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.locator(".bk-Canvas, .bk-canvas").count() >= 3  # the three objective plots drew

    # the measurement table (the quantization summary above it sorts too)
    table = page.locator("table.sortable").filter(has=page.get_by_role("columnheader", name="p50 ms", exact=True))
    headers = table.locator("th").all_inner_texts()
    column = headers.index("p50 ms")

    def p50_column() -> list[float]:
        cells = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
        return [float(c.replace(",", "")) for c in cells if c not in ("—", "")]

    table.locator("th").nth(column).click()
    ascending = p50_column()
    assert len(ascending) >= 5 and ascending == sorted(ascending)
    table.locator("th").nth(column).click()
    assert p50_column() == sorted(ascending, reverse=True)

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a rendered page with plots, not a blank one
    view.close()


def test_hover_shows_the_points_label_p50_and_figures(browser: Any, one_target_report: tuple[Path, pd.DataFrame]) -> None:
    index, ok = one_target_report
    view = Page(browser, index)
    for label in ("l1-0.5-while_training/int8", "baseline/fp32"):
        text = view.hover(view.row_of(label))
        row = ok.loc[label]
        assert f"variant: {label}" in text
        assert f"latency p50 / p90 / p99: {row['p50_ms']:.3g} / " in text
        assert f"accuracy: {row['accuracy']:.3g}" in text and "peak RSS:" in text and "KiB" in text
        assert "energy: — (not measured)" in text
    view.close()


def test_legend_click_hides_that_criterions_points(browser: Any, two_target_report: Path) -> None:
    view = Page(browser, two_target_report)
    target = view.row_of("random-0.5-while_training/fp32")
    other = view.row_of("l1-0.5-while_training/fp32")
    assert "random-0.5" in view.hover(target)
    view.page.click("button.chip[data-group=random]")
    assert view.hover(target, shown=False) == ""  # no point there any more
    assert "l1-0.5" in view.hover(other)
    shown = view.page.evaluate(f"() => ({MODEL_JS})('eb-shown').booleans")
    assert shown == [g != "random" for g in view.column("group")]
    view.page.click("button.chip[data-precision=int8]")  # precisions toggle too
    shown = view.page.evaluate(f"() => ({MODEL_JS})('eb-shown').booleans")
    assert not any(s for s, p in zip(shown, view.column("precision")) if p == "int8")
    view.page.click("button.chip[data-group=random]")
    assert "random-0.5" in view.hover(target)  # shown again
    view.close()


def test_target_selector_switches_points_fronts_and_table_rows(browser: Any, two_target_report: Path) -> None:
    view = Page(browser, two_target_report)
    page = view.page
    local, remote = view.row_of("baseline/fp32", "local-cpu"), view.row_of("baseline/fp32", "rpi5")
    assert "local-cpu" in view.hover(local) and view.hover(remote, shown=False) == ""
    assert page.locator("tr[data-i]:visible").count() == 20
    page.select_option("#eb-target", "rpi5 · onnxruntime")
    assert view.hover(local, shown=False) == "" and "rpi5" in view.hover(remote)
    assert page.locator("tr[data-i]:visible").count() == 20
    assert page.locator(f"tr[data-i='{remote}']").is_visible() and not page.locator(f"tr[data-i='{local}']").is_visible()
    fronts = page.evaluate("() => [...Bokeh.documents[0].all_models].filter(m => m.type === 'GlyphRenderer' && "
                           "m.data_source.name !== 'eb-measurements').map(m => m.visible)")
    assert sum(fronts) == 3 * 2  # one step line and one ring set per plot, of the selected target only
    page.select_option("#eb-target", "all targets")
    assert page.locator("tr[data-i]:visible").count() == 40 and "rpi5" in view.hover(remote)
    view.close()


FRONTS_JS = """plot => {
  const view = Object.values(Bokeh.index).find(v => v.model.name === plot);
  return view.model.renderers.filter(r => r.visible && r.data_source.name === 'eb-front' && r.glyph.mode !== undefined)
    .map(r => [Array.from(r.data_source.data.x), Array.from(r.data_source.data.y)]);
}"""


def test_hiding_a_precision_redraws_the_front_from_the_points_still_shown(browser: Any, two_target_report: Path) -> None:
    view = Page(browser, two_target_report)
    rows = pd.DataFrame({c: view.column(c) for c in ("latency", "accuracy", "precision", "panel")})
    local = rows[rows["panel"] == "local-cpu · onnxruntime"]
    (before_x, _), = view.page.evaluate(FRONTS_JS, LATENCY_PLOT)
    assert set(local.loc[local["precision"] == "int8", "latency"]) & set(before_x)  # fast int8 variants: on it
    view.page.click("button.chip[data-precision=int8]")
    fp32 = local[local["precision"] == "fp32"]
    expected = fp32[pareto_mask(fp32, [("latency", "min"), ("accuracy", "max")])].sort_values("latency")
    (xs, ys), = view.page.evaluate(FRONTS_JS, LATENCY_PLOT)
    assert xs == pytest.approx(expected["latency"].tolist()) and ys == pytest.approx(expected["accuracy"].tolist())
    view.page.click("button.chip[data-precision=int8]")
    assert view.page.evaluate(FRONTS_JS, LATENCY_PLOT)[0][0] == pytest.approx(before_x)  # shown again: as before
    view.close()


def test_the_tables_pareto_flags_follow_the_selector(browser: Any, two_target_report: Path) -> None:
    """On a target its own front; under 'all targets' the front across them, where the 4x slower rpi5 is off the
    latency front."""
    view = Page(browser, two_target_report)
    page = view.page
    remote = view.row_of("baseline/fp32", "rpi5")
    cell = page.locator(f"tr[data-i='{remote}'] td.eb-flags")
    page.select_option("#eb-target", "rpi5 · onnxruntime")
    assert "accuracy/latency" in cell.inner_text()
    assert page.locator(f"tr[data-i='{remote}']").get_attribute("class") == "pareto"
    page.select_option("#eb-target", "all targets")
    # the same artifact as local-cpu's (its size and MACs tie), 4x slower: off the latency front across targets
    assert cell.inner_text() == "accuracy/size, accuracy/macs"
    page.select_option("#eb-target", "rpi5 · onnxruntime")
    assert "accuracy/latency" in cell.inner_text()
    view.close()


def test_a_plot_without_values_for_the_target_is_hidden_and_said(browser: Any, sqlite_store: Store,
                                                                  tmp_path: Path) -> None:
    """Energy on local-cpu only: rpi5 hides the energy plot (BokehJS warned 'could not set initial ranges' for every
    renderer of a plot shown empty) and says why; one target's single point gets a readable axis."""
    run_id = fill_run(sqlite_store, targets={"rpi5": 4.0}, fail_one=False)
    rng = np.random.default_rng(2)
    for spec in variant_specs()[:6]:
        energy = {"energy_j_per_inference": 1e-3 * (1 + rng.random()), "energy_source": "measured:rapl"}
        result = synthetic_result(f"{spec.id}:rapl", spec, rng).model_copy(update=energy)
        settings = {"threads": 1, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
        sqlite_store.add_measurement(MeasurementRecord(run_id, f"{spec.id}:rapl", spec.id, "local-cpu", "onnxruntime",
                                                       result, settings))
    index = render_report(sqlite_store, run_id, tmp_path / "report",
                          objectives=[("energy", "accuracy"), ("latency", "accuracy")])
    view = Page(browser, index, plots=2)
    shown = "() => Object.values(Bokeh.index).filter(v => v.model.visible).map(v => v.model.name).sort()"
    energy = "eb-plot-accuracy-energy"
    for option, drawn in (("rpi5 · onnxruntime", False), ("local-cpu · onnxruntime", True), ("all targets", True)):
        view.page.select_option("#eb-target", option)
        view.page.wait_for_timeout(200)
        assert (energy in view.page.evaluate(shown)) is drawn, option
        assert view.page.locator(".eb-missing:visible").count() == (0 if drawn else 1)
    assert view.warnings == []
    view.close()


def test_selection_links_points_and_table_rows(browser: Any, two_target_report: Path) -> None:
    view = Page(browser, two_target_report)
    page = view.page
    i = view.row_of("mean_activation-0.8-while_training/int8")
    view.click_point(i)
    assert view.selected() == [i]
    rows = page.locator("tr.selected")
    assert rows.count() == 1 and rows.first.get_attribute("data-i") == str(i)
    assert rows.first.locator("td").first.inner_text() == "mean_activation-0.8-while_training/int8"
    assert rows.first.is_visible()  # scrolled into view
    j = view.row_of("l1-0.25-while_training/fp32")
    page.locator(f"tr[data-i='{j}'] td").first.click()  # and back: a row selects its point
    assert view.selected() == [j]
    assert page.locator("tr.selected").get_attribute("data-i") == str(j)
    assert "l1-0.25-while_training/fp32" in page.inner_text("#eb-detail")
    view.close()


@pytest.fixture
def profiled_report(sqlite_store: Store, tmp_path: Path) -> Path:
    """A run whose baseline/fp32 and l1-0.5/fp32 carry real ONNX Runtime per-layer profiles of digits_cnn."""
    torch.manual_seed(0)
    base = create_model("digits_cnn", num_classes=10, in_channels=1).eval()
    example = torch.randn(1, 1, 8, 8)
    pruned = create_model("digits_cnn", num_classes=10, in_channels=1).eval()
    prune_model(pruned, create_criterion("l1"), 0.5, example)
    profiles = {}
    for label, model in (("baseline/fp32", base), ("l1-0.5-while_training/fp32", pruned)):
        path = tmp_path / f"{label.replace('/', '_')}.onnx"
        export_fp32_onnx(model, example, path)
        profiles[label] = profile_onnxruntime(path, example.numpy(), threads=1, runs=10, warmup_runs=2).to_dict()
    run_id = fill_run(sqlite_store, profiles=profiles)
    return render_report(sqlite_store, run_id, tmp_path / "report")


def test_click_opens_the_variants_layer_profile_and_lineage(browser: Any, profiled_report: Path) -> None:
    view = Page(browser, profiled_report)
    page = view.page
    view.click_point(view.row_of("l1-0.5-while_training/fp32"))
    detail = page.locator("#eb-detail")
    lineage = detail.locator("ol.lineage li").all_inner_texts()
    assert lineage[0].startswith("l1-0.5-while_training/fp32") and "filter pruning: l1, 50% of filters removed" in lineage[0]
    assert lineage[1].startswith("baseline/fp32") and "trained digits_cnn on digits" in lineage[1]
    layers = detail.locator("table.profile tbody tr td:first-child").all_inner_texts()
    assert {"0.0", "1.0", "3.0", "6"} <= set(layers), layers  # digits_cnn's three convs and its classifier
    shares = detail.locator("table.profile tbody tr td:nth-child(4)").all_inner_texts()
    assert sum(float(s.rstrip("%")) for s in shares) == pytest.approx(100, abs=1)
    view.click_point(view.row_of("l1-0.5-while_training/int8"))  # not profiled: says so
    assert "No per-layer profile recorded" in detail.inner_text()
    assert detail.locator("ol.lineage li").count() == 3  # int8 <- pruned fp32 <- baseline
    view.close()


def test_a_plot_with_nothing_for_the_selected_target_is_hidden(browser: Any, sqlite_store: Store,
                                                               tmp_path: Path) -> None:
    """The FPGA cost plot (bit operations) shows for the C-simulation target and all targets, not for a CPU
    target; the latency plot, which leaves C simulations out, the other way round."""
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0}, fail_one=False)
    rng = np.random.default_rng(1)
    for spec in variant_specs()[:4]:
        details = {"hls4ml": {"bit_operations": {"bops": 1e6 * (1 + rng.random())}}}
        result = synthetic_result(f"{spec.id}:csim", spec, rng).model_copy(update={"details": details})
        settings = {"threads": 1, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
        sqlite_store.add_measurement(MeasurementRecord(run_id, f"{spec.id}:csim", spec.id, "local-hls4ml-csim",
                                                       "hls4ml", result, settings))
    view = Page(browser, render_report(sqlite_store, run_id, tmp_path / "report"), plots=4)
    shown = "() => Object.values(Bokeh.index).filter(v => v.model.visible).map(v => v.model.name).sort()"
    options = view.page.evaluate("() => [...document.querySelectorAll('#eb-target option')].map(o => o.value)")
    assert options == ["local-cpu · onnxruntime", "local-hls4ml-csim · hls4ml", "all targets"]
    plots = {}
    for option in options:
        view.page.select_option("#eb-target", option)
        plots[option.split(" ")[0]] = view.page.evaluate(shown)
    bops, latency = "eb-plot-accuracy-bops", LATENCY_PLOT
    assert latency in plots["local-cpu"] and bops not in plots["local-cpu"]
    assert bops in plots["local-hls4ml-csim"] and latency not in plots["local-hls4ml-csim"]
    assert {bops, latency} <= set(plots["all"])
    view.close()


def test_500_measurement_report_stays_small_and_offline(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    targets = {f"board-{k:02d}": 1.0 + 0.1 * k for k in range(25)}  # 20 variants x 25 targets
    run_id = fill_run(sqlite_store, targets=targets, fail_one=False)
    index = render_report(sqlite_store, run_id, tmp_path / "report")
    view = Page(browser, index)
    assert len(view.column("label")) == 500
    loaded = {Path(unquote(urlparse(url).path)) for url in view.requests}
    size = sum(p.stat().st_size for p in loaded)
    print(f"500 measurements: page {index.stat().st_size / 1e6:.2f} MB, with everything it loads {size / 1e6:.2f} MB")
    assert size <= 5e6
    assert "board-00" in view.hover(view.row_of("baseline/fp32", "board-00"))
    view.close()


def test_compare_page_renders_each_runs_distribution(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store.open(db) as store:
        _runs(store, "base", 2, 0.003, seed=1)
        _runs(store, "cand", 2, 0.003, seed=2, slowdown={LARGE: 1.08})
        medians = {side: sorted(store.measurements(r).set_index("label").loc[LARGE, "p50_ms"]
                                for r in store.resolve_runs(tag)) for side, tag in (("baseline", "base"), ("candidate", "cand"))}
        large_id = store.measurements(store.resolve_run("base")).set_index("label").loc[LARGE, "variant_id"]
    page_path = tmp_path / "cmp" / "index.html"
    app = typer.Typer()
    register(app, friendly_errors)
    done = CliRunner().invoke(app, ["compare", "base", "cand", "--store", str(db), "--repeats", "--lookback", "0",
                                    "--fail", "latency=5", "--format", "html", "-o", str(page_path)])
    assert done.exit_code == 1 and page_path.is_file(), done.output
    view = Page(browser, page_path, plots=1)
    rows = view.page.locator("tr.regression").all_inner_texts()
    assert any(LARGE in r and "latency" in r for r in rows)
    # the regressed result's plot (results too little measured to call unchanged get theirs too)
    curves = view.page.evaluate("""(name) => Bokeh.documents[0].roots().filter(r => r.name === name)
        .flatMap(r => r.renderers).filter(m => m.type === 'GlyphRenderer' && /run \\d/.test(m.name))
        .map(m => [m.name, m.data_source.data.x[100], m.data_source.data.y[100]])""", f"eb-dist-{large_id}")
    assert sorted(name for name, _, _ in curves) == ["baseline run 1", "baseline run 2", "candidate run 1", "candidate run 2"]
    for side in ("baseline", "candidate"):  # each curve's median is its run's stored p50
        drawn = sorted(x for name, x, y in curves if name.startswith(side) and y == 0.5)
        assert drawn == pytest.approx(medians[side], rel=1e-6)
    assert min(medians["candidate"]) > max(medians["baseline"])  # why it is a regression: every red curve is right
    # a narrow window squeezes the table: verdicts, metrics and figures had broken mid-word ('regressio|n', '+1087|3.2 %')
    view.page.set_viewport_size({"width": 800, "height": 900})
    cells = "tbody td.nw, tbody td:not(.l)"
    assert view.page.locator(cells).count() > 0 and view.page.evaluate(CELLS_ON_MANY_LINES_JS, cells) == []
    view.close()


def test_a_300_character_label_does_not_widen_the_page(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    """A variant named outside edgebench can be long: its legend chip is cut (whole in the tooltip) and table cells
    wrap, where the page had been 4000 px wide."""
    run_id = fill_run(sqlite_store, fail_one=False)
    spec = variant_specs()[3]
    long = "L" * 300
    described = spec.model_dump(mode="json")
    described["prune"]["criterion"] = long
    sqlite_store.upsert_variant("long0000", described, f"{long}-0.5/fp32", None, variant_facts(spec))
    result = synthetic_result("long:local-cpu", spec, np.random.default_rng(3))
    settings = {"threads": 1, "batch_size": 1, "precision": "fp32", "scenario": "single_stream"}
    sqlite_store.add_measurement(MeasurementRecord(run_id, "long:local-cpu", "long0000", "local-cpu", "onnxruntime",
                                                   result, settings))
    view = Page(browser, render_report(sqlite_store, run_id, tmp_path / "report"))
    assert view.page.evaluate("document.body.scrollWidth") <= 1400
    chip = view.page.locator(f"button.chip[data-group='{long}']")
    assert chip.get_attribute("title") == long and "…" in chip.inner_text()
    view.close()


#: the cells matching a selector that the browser laid out on more than one line
CELLS_ON_MANY_LINES_JS = """(selector) => [...document.querySelectorAll(selector)].filter(cell => {
  const range = document.createRange(); range.selectNodeContents(cell);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
}).map(cell => cell.innerText)"""
#: the variants table's number cells and ids
VARIANTS_TABLE_CELLS = ".wide tbody td:not(.l), .wide tbody td code"


def test_the_variants_tables_numbers_and_ids_stay_on_one_line(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    """A helper's report at 1400 px had squeezed twenty columns until numbers and ids broke ('0.0|182', ids two
    characters a line); the table now scrolls in its own box and the page keeps its width."""
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0, "rpi5": 4.0})
    view = Page(browser, render_report(sqlite_store, run_id, tmp_path / "report"))
    assert view.page.locator(".wide tbody td code").count() > 0  # the check looks at something
    assert view.page.evaluate(CELLS_ON_MANY_LINES_JS, VARIANTS_TABLE_CELLS) == []
    assert view.page.evaluate("document.body.scrollWidth") <= 1400
    view.close()


def test_energy_axis_says_estimated_for_the_selected_target(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    """RAPL on local-cpu, a TDP estimate on rpi5: each target's axis says what its figures are, and the front across
    targets stands on the measured figures only."""
    run_id = fill_run(sqlite_store, fail_one=False)
    rng = np.random.default_rng(4)
    for target, source in (("local-cpu", "measured:rapl"), ("rpi5", "estimated:tdp")):
        for spec in variant_specs()[:6]:
            energy = {"energy_j_per_inference": 1e-3 * (1 + rng.random()), "energy_source": source}
            result = synthetic_result(f"{spec.id}:{target}", spec, rng).model_copy(update=energy)
            settings = {"threads": 1, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
            sqlite_store.add_measurement(MeasurementRecord(run_id, f"{spec.id}:{target}", spec.id, target,
                                                           "onnxruntime", result, settings))
    view = Page(browser, render_report(sqlite_store, run_id, tmp_path / "report", objectives=[("energy", "accuracy")]),
                plots=1)
    label = "() => Bokeh.documents[0].get_model_by_name('eb-plot-accuracy-energy').below[0].axis_label"
    expected = {"local-cpu · onnxruntime": "energy per inference (mJ)",
                "rpi5 · onnxruntime": "energy per inference (mJ, estimated)",
                "all targets": "energy per inference (mJ, measured and estimated)"}
    for option, text in expected.items():
        view.page.select_option("#eb-target", option)
        assert view.page.evaluate(label) == text
    rows = pd.DataFrame({c: view.column(c) for c in ("energy", "panel")})
    (xs, _), = view.page.evaluate(FRONTS_JS, "eb-plot-accuracy-energy")
    assert set(xs) <= set(rows.loc[rows["panel"] == "local-cpu · onnxruntime", "energy"])
    view.close()


#: text of the cells matching a selector that the browser drew past its cell's box (into the next cell)
CELLS_OVERFLOWING_JS = """(selector) => [...document.querySelectorAll(selector)].filter(cell => {
  const range = document.createRange(); range.selectNodeContents(cell);
  const text = range.getBoundingClientRect(), box = cell.getBoundingClientRect();
  return text.left < box.left - 0.5 || text.right > box.right + 0.5;
}).map(cell => cell.innerText)"""


def test_the_budget_tables_cells_hold_their_text(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    """A battery's report at 1400 px: every budget cell was kept on one line inside a 30em cell, so its text ran over
    the next cell ('estimated)' printed over the next variant's name) and the latency table ran past the page."""
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0, "rpi5": 4.0}, fail_one=False)
    rng = np.random.default_rng(5)
    for spec in variant_specs():  # labels as long as a sensitivity allocation's ('l1-0.5-...-sensitivity/fp32')
        label = spec.label.replace("/", "-sensitivity/")
        sqlite_store.upsert_variant(f"{spec.id}s", spec.model_dump(mode="json"), label, None, variant_facts(spec))
        energy = {"energy_j_per_inference": 1e-4 * (1 + rng.random()), "energy_source": "estimated:tdp"}
        result = synthetic_result(f"{spec.id}:est", spec, rng).model_copy(update=energy)
        settings = {"threads": 1, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
        sqlite_store.add_measurement(MeasurementRecord(run_id, f"{spec.id}:est", f"{spec.id}s", "est-cpu",
                                                       "onnxruntime", result, settings))
    view = Page(browser, render_report(sqlite_store, run_id, tmp_path / "report"))
    headings = view.page.locator("h3").all_inner_texts()
    assert "Best accuracy under each energy per inference (mJ) budget" in headings
    cells = "table.budget tbody td"
    texts = view.page.locator(cells).all_inner_texts()
    assert len(texts) == 3 * 5 + 5 and any("estimated)" in t for t in texts)  # latency: 3 targets, energy: est-cpu
    assert view.page.evaluate(CELLS_OVERFLOWING_JS, cells) == []
    tables = view.page.eval_on_selector_all("table.budget", "ts => ts.map(t => t.getBoundingClientRect().right)")
    width = view.page.evaluate("document.body.getBoundingClientRect().right")
    assert len(tables) == 2 and max(tables) <= width  # neither table runs past the page
    view.close()
