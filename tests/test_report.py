"""HTML report from a real SQLite store of synthetic runs: files, Pareto rows, budgets, speedups."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from store_fixtures import MACHINE, PNG_MAGIC, fill_run

from edgebench.report import pareto_mask, render_report
from edgebench.report.tables import best_under_budget, default_budgets, panels, with_speedup
from edgebench.store import Store, StoreError
from edgebench.store.metrics import METRICS


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr( class=pareto)? data-i=\d+><td class=l>([^<]+)</td><td class=l><code>", page)


def test_report_files_are_offline_and_complete(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    store, run_id = filled_store
    index = render_report(store, run_id, tmp_path / "report")
    page = index.read_text()
    for stem in ("accuracy_vs_latency", "accuracy_vs_size", "accuracy_vs_macs", "speedup_vs_macs_reduction"):
        png = index.parent / f"{stem}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
        assert (index.parent / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
        assert f'"{stem}.png"' in page  # shown (speedup) or linked (the interactive plots' static copies)
    # each p50 cell carries its confidence interval in its tooltip (the fixtures' samples give one)
    assert re.search(r'<td title="95% interval \[[0-9.e-]+, [0-9.e-]+\] ms \(±[0-9.]+%\)">', page)
    assert not re.search(r'(src|href)="https?:', page)  # nothing fetched from the network
    assert '<script src="bokeh-' in page and (index.parent / re.search(r'src="(bokeh-[^"]+)"', page)[1]).is_file()
    assert MACHINE["cpu_model"] in page and "abc1234" in page
    assert "worker timed out after 60 s" in page and "Failed jobs (1)" in page
    assert "never 0" in page  # energy absent is said, not invented


def test_the_report_opens_with_links_to_each_of_its_sections(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    """A lab's report of 372 measurements was 23,000 px tall with no way to its notes and failed jobs but scrolling."""
    import re

    store, run_id = filled_store
    page = render_report(store, run_id, tmp_path / "report").read_text()
    nav = re.search(r"<nav class=toc>(.*?)</nav>", page)
    assert nav is not None and page.index("<nav class=toc>") < page.index("<h2")
    links = re.findall(r'<a href="#(s\d+)">(.*?)</a>', nav[1])
    headings = re.findall(r'<a id="(s\d+)"></a><h2>(.*?)</h2>', page)
    assert links == headings and len(links) == page.count("<h2")  # every section, in order
    assert any(text.startswith("Failed jobs (") for _, text in links) and ("s0", "Trade-offs per target") in links


def test_report_marks_exactly_the_pareto_rows(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    store, run_id = filled_store
    page = render_report(store, run_id, tmp_path / "r").read_text()
    ok = store.measurements(run_id).query("status == 'ok'")
    expected = set()
    for x in ("latency", "size", "macs"):
        m = METRICS[x]
        mask = pareto_mask(ok, [m.column, "accuracy"], [m.direction, "max"])
        expected |= set(ok.loc[mask, "label"])
    rows = _rows(page)
    assert len(rows) == len(ok)
    assert {label for cls, label in rows if cls} == expected
    assert "baseline/fp32" in expected  # the most accurate point is always on the front


def test_multi_target_panels_and_budget_table(sqlite_store: Store, tmp_path: Path) -> None:
    run_id = fill_run(sqlite_store, targets={"local-cpu": 1.0, "rpi5": 4.0})
    ok = sqlite_store.measurements(run_id).query("status == 'ok'")
    titles = [title for title, _ in panels(ok)]
    assert titles == ["local-cpu · onnxruntime", "rpi5 · onnxruntime", "all targets"]

    latency = METRICS["latency"]
    budgets = default_budgets(ok["p50_ms"])
    assert budgets[0] >= ok["p50_ms"].min() and len(budgets) == 4
    table = best_under_budget(ok, latency, budgets)
    assert list(table["target"]) == ["local-cpu · onnxruntime", "rpi5 · onnxruntime"]
    for _, row in table.iterrows():  # each cell is the most accurate variant within the budget on that target
        part = ok[ok["target"] == row["target"].split(" · ")[0]]
        for budget in budgets:
            fits = part[part["p50_ms"] <= budget]
            cell = row[f"≤ {budget:g}"]
            if fits.empty:
                assert cell == "—"
            else:
                best = fits.loc[fits["accuracy"].idxmax()]
                assert cell.startswith(f"{best['label']} (acc {best['accuracy']:.3f}")
    page = render_report(sqlite_store, run_id, tmp_path / "r", budgets={"latency": [0.5, 2.0]}).read_text()
    assert "≤ 0.5" in page and "≤ 2" in page and "rpi5 · onnxruntime" in page

    # an estimate keeps its label in the budget table: an energy model's figure beside a meter's
    cpu = ok["target"] == "local-cpu"
    energy = ok.assign(energy_j_per_inference=1e-3, energy_source=["estimated:tdp" if c else "measured:rapl" for c in cpu])
    cells = best_under_budget(energy, METRICS["energy"], [10.0]).set_index("target")["≤ 10"]
    assert cells["local-cpu · onnxruntime"].endswith(", 1 estimated)") and cells["rpi5 · onnxruntime"].endswith(", 1)")


def test_many_targets_wrap_into_rows_of_three_panels(sqlite_store: Store) -> None:
    from edgebench.report import plots

    run_id = fill_run(sqlite_store, targets={f"board-{k}": 1.0 + 0.1 * k for k in range(7)})
    ok = sqlite_store.measurements(run_id).query("status == 'ok'")
    speed = plots.speedup_figure([(t, p) for t, p in panels(with_speedup(ok)) if t != "all targets"])
    shown = [ax for ax in speed.axes if ax.get_visible()]
    assert len(shown) == 7 and len({round(ax.get_position().y0, 3) for ax in shown}) == 3  # 3 + 3 + 1
    assert speed.get_figwidth() == pytest.approx(3 * 5.0 + 1.8)  # not 7 panels side by side
    assert [ax.get_title() for ax in shown] == [f"board-{k} · onnxruntime" for k in range(7)]


def test_speedup_is_relative_to_unpruned_variant_of_same_context(filled_store: tuple[Store, str]) -> None:
    store, run_id = filled_store
    ok = with_speedup(store.measurements(run_id).query("status == 'ok'"))
    for precision in ("fp32", "int8"):
        same = ok[ok["precision"] == precision]
        base = same[same["criterion"].isna()].iloc[0]
        assert base["speedup"] == pytest.approx(1.0) and base["macs_reduction"] == pytest.approx(1.0)
        pruned = same[same["ratio"] == 0.8].iloc[0]
        assert pruned["speedup"] == pytest.approx(base["p50_ms"] / pruned["p50_ms"])
        assert pruned["macs_reduction"] == pytest.approx(base["macs"] / pruned["macs"])
        assert pruned["macs_reduction"] > 1 and pruned["speedup"] > 1


def test_an_artifact_made_elsewhere_without_a_parent_gets_no_speedup(filled_store: tuple[Store, str]) -> None:
    """An external model with no parent is another network: its 'MACs reduction' against this baseline (225x for a
    2,672-MAC file beside a 601,600-MAC baseline) was drawn as if pruning had made it."""
    store, run_id = filled_store
    ok = store.measurements(run_id).query("status == 'ok'")
    pruned = ok[(ok["ratio"] == 0.8) & (ok["precision"] == "fp32")].iloc[0]
    made_elsewhere = pd.DataFrame([pruned.to_dict() | {"kind": "external", "parent_id": None},
                                   pruned.to_dict() | {"kind": "external", "parent_id": "ab12"}])
    rows = with_speedup(pd.concat([ok, made_elsewhere], ignore_index=True)).tail(2)
    assert rows["speedup"].isna().tolist() == [True, False] and rows["macs_reduction"].isna().tolist() == [True, False]


def test_custom_objectives_and_missing_metric(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    store, run_id = filled_store
    index = render_report(store, run_id, tmp_path / "r", objectives=[("energy", "accuracy"), ("memory", "p99")])
    assert (index.parent / "accuracy_vs_energy.png").exists() and (index.parent / "p99_vs_memory.png").exists()
    with pytest.raises(StoreError, match="unknown metric 'speed'"):
        render_report(store, run_id, tmp_path / "r", objectives=[("speed", "accuracy")])


def test_a_re_rendered_report_draws_the_run_s_own_objectives(sqlite_store: Store, tmp_path: Path) -> None:
    """`edgebench report` of a run whose experiment asked for energy vs accuracy drew latency, size and MACs."""
    run_id = fill_run(sqlite_store, experiment={"report": {"objectives": [["accuracy", "energy"]]}})
    index = render_report(sqlite_store, run_id, tmp_path / "own")
    assert sorted(p.name for p in index.parent.glob("*_vs_*.png")) == ["accuracy_vs_energy.png", "speedup_vs_macs_reduction.png"]
    index = render_report(sqlite_store, run_id, tmp_path / "asked", objectives=[("memory", "p99")])
    assert sorted(p.name for p in index.parent.glob("*_vs_*.png")) == ["p99_vs_memory.png", "speedup_vs_macs_reduction.png"]


def test_run_without_measurements_renders(sqlite_store: Store, tmp_path: Path) -> None:
    run_id = sqlite_store.start_run("empty", {}, "h", MACHINE)
    page = render_report(sqlite_store, run_id, tmp_path / "r").read_text()
    assert "No successful measurement" in page and "(unfinished)" in page


def test_default_budgets_are_rounded_up() -> None:
    import pandas as pd

    budgets = default_budgets(pd.Series([0.0631, 1.05, np.nan]))
    assert budgets[0] == pytest.approx(0.064) and budgets[-1] == pytest.approx(1.1)
    assert default_budgets(pd.Series([np.nan])) == []


def test_objective_pairs_accept_experiment_names_in_any_order() -> None:
    from edgebench.report.html import resolve_objectives

    pairs = resolve_objectives([("accuracy", "latency_p50_ms"), ("size_bytes", "accuracy"), ("memory", "p99")])
    assert [(x.name, y.name) for x, y in pairs] == [("latency", "accuracy"), ("size", "accuracy"), ("memory", "p99")]


def test_fpga_section_shows_synthesis_figures_or_why_not() -> None:
    import pandas as pd

    from edgebench.report.fpga import fpga_section

    hls = {"part": "xczu9eg-ffvb1156-2-e", "precision": "ap_fixed<16,6>", "reuse_factor": 1, "io_type": "io_stream"}
    synthesised = {"status": "synthesised", "latency_cycles_worst": 1234, "latency_ns_worst": 6170.0,
                   "interval_max": 1100, "resources": {"LUT": 5000, "DSP": 40},
                   "utilisation_pct": {"LUT": 1.8, "DSP": 1.6}}
    rows = pd.DataFrame([
        {"label": "l1-0.5/fixed", "target": "zcu102", "accuracy": 0.97,
         "details": {"hls4ml": hls, "synthesis": synthesised}},
        {"label": "baseline/fixed", "target": "local-hls4ml-csim", "accuracy": 0.98,
         "details": {"hls4ml": hls, "synthesis": {"status": "not synthesised", "reason": "vitis_hls not on PATH"}}},
        {"label": "baseline/fp32", "target": "local-cpu", "accuracy": 0.99, "details": {}},
    ])
    html = fpga_section(rows)
    assert "1234 cycles / 6.17 µs" in html and "5,000 (1.8%)" in html and "40 (1.6%)" in html
    assert "not synthesised: vitis_hls not on PATH" in html
    assert "baseline/fp32" not in html  # not an FPGA measurement
    wrapped = {**hls, "overflow": ["conv1 reaches 9.2", "a", "b", "c"]}
    rows.at[1, "details"] = {"hls4ml": wrapped, "synthesis": {"status": "not synthesised", "reason": "no tool"}}
    html = fpga_section(rows)
    assert "4 tensors: conv1 reaches 9.2; a; b; ..." in html and ">none<" in html
    assert fpga_section(rows.iloc[2:]) is None


def test_equal_accuracy_table_shows_dashes_for_missing_figures_never_nan() -> None:
    """A baseline whose p50 is missing (its timing failed) and a variant without accuracy: the speedup and the
    accuracy cells are dashes, as in every other table, not 'nanx' and 'nan (+nan)'."""
    from edgebench.report.compression import equal_accuracy_table

    def row(label: str, kind: str, accuracy: float, p50: float) -> dict:
        return {"label": label, "variant_id": label, "kind": kind, "accuracy": accuracy, "nonzero_params": 100,
                "size_bytes": 4096.0, "compressed_size_bytes": float("nan"), "macs": 1e6, "nonzero_macs": 1e6,
                "p50_ms": p50}

    base = pd.Series(row("baseline/fp32", "baseline", 0.9, float("nan")))
    part = pd.DataFrame([row("l1-0.5/fp32", "structured", 0.895, 0.5), row("rigl-0.9-sparse/fp32", "sparse",
                                                                              float("nan"), 0.4)])
    html = equal_accuracy_table(part, base)
    assert "nan" not in html.lower()
    assert "0.8950 (-0.5)" in html and html.count("—") >= 3  # speedups against a missing p50, zip sizes


def test_static_figures_keep_long_labels_short_and_log_axes_readable() -> None:
    """A 240-character artifact label is cut in the legend (ending with its precision) instead of squeezing the
    panel to nothing, and a log axis spanning less than a decade is labelled at 1, 2 and 5."""
    from edgebench.report.plots import LEGEND_CHARS, _plain_log, panel_grid, shared_legend

    fig, axes = panel_grid(1, 4.0)
    ax = axes[0]
    ax.scatter([1.2, 3.9], [1.1, 2.3], label="external:" + "x" * 235 + "/fp32")
    ax.scatter([1.5], [1.6], label="baseline/fp32")
    for axis in ("x", "y"):
        _plain_log(ax, axis)
    ax.set_xlim(0.9, 5.0)
    shared_legend(fig, axes)
    fig.savefig(io.BytesIO(), format="png")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[1] == "baseline/fp32" and len(labels[0]) == LEGEND_CHARS and labels[0].endswith("…" + "x" * 8 + "/fp32")
    assert {"1", "2", "5"} <= {t.get_text() for t in ax.get_xticklabels() if 0.9 <= t.get_position()[0] <= 5.0}
    assert ax.get_position().width > 0.3  # the panel keeps its room


def test_table_cells_keep_huge_figures_short() -> None:
    """A plug-in meter's 1e300 J was printed as a 301-digit number in the report's tables."""
    from edgebench.report.tables import fmt_cell

    assert fmt_cell(1e300) == "1e+300" and fmt_cell(123456.7) == "123,457" and fmt_cell(0.012345) == "0.0123"
    assert fmt_cell(float("nan")) == "—" and fmt_cell(None) == "—"


def test_a_render_removes_the_figures_an_earlier_render_left_and_nothing_else(sqlite_store: Store,
                                                                               tmp_path: Path) -> None:
    """A battery re-rendered into a folder that held another run's report: its accuracy_vs_energy.png stayed beside
    the new index.html as if it were this run's figure. A user's own files in the folder stay."""
    out = tmp_path / "report"
    render_report(sqlite_store, fill_run(sqlite_store, name="a"), out, objectives=[("energy", "accuracy")])
    assert {"accuracy_vs_energy.png", "accuracy_vs_energy.svg", "speedup_vs_macs_reduction.png"} <= {
        p.name for p in out.iterdir()}
    mine = ["notes.txt", "mine_vs_theirs.png", "accuracy_vs_energy.pdf", "accuracy_vs_latency_old.png"]
    for name in mine:
        (out / name).write_text("a user's file")
    render_report(sqlite_store, fill_run(sqlite_store, name="b", seed=1), out, objectives=[("latency", "accuracy")])
    names = {p.name for p in out.iterdir()}
    assert not {"accuracy_vs_energy.png", "accuracy_vs_energy.svg"} & names
    assert {"accuracy_vs_latency.png", "accuracy_vs_latency.svg", "speedup_vs_macs_reduction.svg", *mine} <= names
    empty = sqlite_store.start_run("c", {"name": "c"}, "hash-c", MACHINE, ())  # nothing measured: no figure at all
    sqlite_store.finish_run(empty)
    render_report(sqlite_store, empty, out)
    assert not [n for n in (p.name for p in out.iterdir()) if n.endswith((".png", ".svg")) and n not in mine]
