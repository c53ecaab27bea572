"""The report's interactive trade-off plots (Bokeh): hover, legend toggles, a target selector, linked selection
and a click from a point to its lineage and per-layer profile.

Every plot draws from one ColumnDataSource of the run's successful measurements (row ``i`` of the source is the
measurement table's row with ``data-i=i``), so a selection in one plot is a selection in every plot and in the
table. A latency plot leaves out FPGA C-simulation targets, whose p50 is host CPU time: they get a plot of their
own on the counted FPGA cost (bit operations, or synthesised cycles), as the static figures do. Each plot has one
points renderer and one Pareto front per target (its backends compete, as in the terminal summary and
``Results.pareto``), plus a front across all targets; the page's script (``explore.js``) shows the selected option's
renderers, hides the legend's toggled criteria and precisions through one BooleanFilter shared by every points
renderer, and redraws each front from the rows still shown. On an energy axis an estimated figure is a hollow marker
and never stands on a front beside measured ones (``tables.front_rows``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
from bokeh.document import Document
from bokeh.embed import components
from bokeh.models import (
    BooleanFilter,
    CDSView,
    ColumnDataSource,
    CustomJS,
    GroupFilter,
    HoverTool,
    LogTicker,
    LogTickFormatter,
    Model,
    Title,
)
from bokeh.plotting import figure
from matplotlib.colors import to_hex

from edgebench.profile.table import LayerProfile
from edgebench.report.lineage import lineage, pruned_share, removed_share
from edgebench.report.page import esc
from edgebench.report.plots import (
    BASELINE,
    ESTIMATED,
    MARKERS,
    axis_label,
    interval_columns,
    interval_spread,
    palette,
    series_name,
    short_label,
)
from edgebench.report.tables import (
    ALL_TARGETS,
    ENERGY,
    context_titles,
    energy_kind,
    finite_rows,
    fmt_cell,
    front_mask,
    front_rows,
    is_estimated,
    target_titles,
)
from edgebench.store.metrics import METRICS, Metric, fpga_cost_metric

#: matplotlib marker codes of ``plots.MARKERS`` as Bokeh marker names (one marker per precision in both)
_BOKEH_MARKERS = {"o": "circle", "^": "triangle", "s": "square", "D": "diamond", "h": "hex"}
#: what a point's hover shows: (line title, source column)
TOOLTIP = (
    ("variant", "@label"), ("made by", "@how"), ("precision", "@precision"), ("target", "@context"),
    ("accuracy", "@t_accuracy"), ("latency p50 / p90 / p99", "@t_latency"), ("p50 interval", "@t_interval"),
    ("size", "@t_size"),
    ("MACs", "@t_macs"), ("FPGA cost", "@t_fpga"), ("energy", "@t_energy"), ("peak RSS", "@t_memory"),
)  # fmt: skip


def explore_script() -> str:
    """The page script that wires the selector, legend, table and detail panel to the Bokeh models."""
    return files("edgebench.report").joinpath("explore.js").read_text(encoding="utf-8")


def _baseline_facts(ok: pd.DataFrame) -> dict[str, Any] | None:
    """The stored facts of the run's trained baseline (what a pruned variant's removed share is counted against)."""
    return next((f for kind, f in zip(ok["kind"], ok["facts"], strict=True) if kind == "baseline" and isinstance(f, dict)),
                None)


def _unit(row: pd.Series) -> str:
    """What a structured variant's ratio counts: filters, or MACs (``pruning.unit``)."""
    spec = row["spec"] if isinstance(row["spec"], dict) else {}
    return (spec.get("prune") or {}).get("unit", "filters")


def _removed(row: pd.Series, base_facts: dict[str, Any] | None) -> float | None:
    return removed_share(row["facts"], base_facts, _unit(row)) if row["kind"] == "structured" else None


def _how(row: pd.Series, base_facts: dict[str, Any] | None = None) -> str:
    """Criterion or method with its ratio, sparsity or rank ratio (the short form of the lineage)."""
    if row["kind"] == "structured":
        share = pruned_share(row["ratio"], _unit(row), _removed(row, base_facts))
        return f"{row['criterion']} · {share} · {row['schedule']}"
    if row["kind"] == "sparse":
        return f"{row['method']} · {row['sparsity']:.0%} of weights zero (unstructured)"
    if row["kind"] == "lowrank":
        return f"{row['method']} · rank ratio {row['rank_ratio']:g}"
    if row["kind"] == "external":
        return f"made outside edgebench ({row['method']}), measured as given"
    return "trained baseline" if row["kind"] == "baseline" else "—"


def _text(value: object, unit: str, scale: float = 1.0) -> str:
    number = None if value is None or pd.isna(value) else float(value) * scale  # type: ignore[arg-type]
    return "—" if number is None else f"{fmt_cell(number)} {unit}"


def _energy(row: pd.Series) -> str:
    text = _text(row["energy_j_per_inference"], "mJ", 1e3)
    if text == "—":
        return "— (not measured)"
    source = str(row["energy_source"] or "")
    return text + (" (estimated)" if is_estimated(source) else f" ({source})" if source else "")


def _latency(row: pd.Series) -> str:
    parts = [_text(row[c], "").strip() for c in ("p50_ms", "p90_ms", "p99_ms")]
    return " / ".join(parts) + " ms" + (" (host C-sim)" if pd.notna(row.get("bops")) else "")


def _fpga(row: pd.Series) -> str:
    """The FPGA cost counted from an hls4ml model ('—' elsewhere)."""
    if pd.isna(row.get("bops")):
        return "—"
    return (f"{_text(row['bops'], 'MBOPs', 1e-6)}, {_text(row.get('fpga_multipliers'), 'multipliers')} "
            "(counted, not synthesised)")


def _interval(row: pd.Series) -> str:
    """The p50's confidence interval, its larger side relative to the p50 and its confidence ('—' when none was
    recorded)."""
    p50, low, high = (row.get(c) for c in ("p50_ms", "p50_low_ms", "p50_high_ms"))
    if any(not isinstance(v, int | float) or not np.isfinite(v) for v in (p50, low, high)) or not p50 > 0:
        return "—"
    confidence = row.get("ci_confidence")
    level = f", {confidence:.0%} confidence" if isinstance(confidence, int | float) and np.isfinite(confidence) else ""
    return f"[{low:.4g}, {high:.4g}] ms ({interval_spread(p50, low, high)}{level})"


def source_data(ok: pd.DataFrame, metrics: Sequence[Metric]) -> dict[str, list[Any]]:
    """Columns of the shared source: numbers for the axes (display units), texts for the hover, groups for
    the legend and selector. Row order is ``ok``'s."""
    series = ok.apply(series_name, axis=1)
    colors = {name: to_hex(c) for name, c in palette(sorted(set(series))).items()}
    data: dict[str, list[Any]] = {
        "label": ok["label"].astype(str).tolist(),
        "variant_id": ok["variant_id"].astype(str).tolist(),
        "context": context_titles(ok).tolist(),
        "panel": target_titles(ok).tolist(),  # the selector option that shows the row
        "group": [s.rsplit("/", 1)[0] for s in series],
        "precision": ok["precision"].astype(str).tolist(),
        "color": [colors[s] for s in series],
        "marker": [_BOKEH_MARKERS.get(MARKERS.get(p, "o"), "circle") for p in ok["precision"]],
        "how": ok.apply(_how, axis=1, base_facts=_baseline_facts(ok)).tolist(),
        "t_accuracy": [_text(v, "").strip() for v in ok["accuracy"]],
        "t_latency": ok.apply(_latency, axis=1).tolist(),
        "t_interval": ok.apply(_interval, axis=1).tolist(),
        "t_size": [_text(v, "KiB", 1 / 1024) for v in ok["size_bytes"]],
        "t_macs": [_text(v, "M", 1e-6) for v in ok["macs"]],
        "t_fpga": ok.apply(_fpga, axis=1).tolist(),
        "t_energy": ok.apply(_energy, axis=1).tolist(),
        "t_memory": [_text(v, "MiB") for v in ok["peak_rss_mb"]],
        # on an energy axis an estimate is hollow: a model's figure must not read as a meter's
        "energy_fill": [0.0 if is_estimated(s) else 0.75 for s in ok["energy_source"]],
        "energy_fill_faint": [0.0 if is_estimated(s) else 0.15 for s in ok["energy_source"]],  # while others selected
    }
    for m in metrics:
        values = pd.to_numeric(ok[m.column], errors="coerce").astype(float) * m.scale
        data[m.name] = values.where(np.isfinite(values)).tolist()  # an inf (imported store) has no place on an axis
        ends = interval_columns(m.column)  # a latency percentile: its confidence interval, for the error bars
        if ends is not None and set(ends) <= set(ok.columns):
            for end, column in zip(("low", "high"), ends):
                data[f"{m.name}_{end}"] = (pd.to_numeric(ok[column], errors="coerce").astype(float) * m.scale).tolist()
    return data


def _axis_type(values: Sequence[float]) -> str:
    """Log when the positive values span more than 20x (as the static figures do)."""
    finite = np.asarray([v for v in values if np.isfinite(v) and v > 0])
    return "log" if len(finite) and finite.max() / finite.min() > 20 else "linear"


def _front(ok: pd.DataFrame, part: pd.DataFrame, x: Metric, y: Metric) -> ColumnDataSource:
    """The Pareto front of ``part`` for (x, y): its points sorted along x (display units), and in ``tags`` what the
    page script needs to redraw it from the rows the legend leaves shown: the source rows that may stand on it
    (positions in ``ok``) and the axes' columns and better directions."""
    front = part[front_mask(part, x, y)]
    xs, ys = front[x.column].astype(float) * x.scale, front[y.column].astype(float) * y.scale
    order = np.lexsort((ys.to_numpy(), xs.to_numpy()))
    rows = [int(i) for i in np.flatnonzero(ok.index.isin(front_rows(part, x, y).index))]
    spec = {"rows": rows, "x": x.name, "y": y.name, "x_min": x.direction == "min", "y_min": y.direction == "min"}
    return ColumnDataSource({"x": xs.to_numpy()[order].tolist(), "y": ys.to_numpy()[order].tolist()}, tags=[spec],
                            name="eb-front")


def selector_options(ok: pd.DataFrame) -> list[str]:
    """The target selector's options: each target (with its backends), then all targets together when there are
    several."""
    targets = sorted(set(target_titles(ok)))
    return targets + ([ALL_TARGETS] if len(targets) > 1 else [])


def figure_axes(ok: pd.DataFrame, pairs: Sequence[tuple[Metric, Metric]]) -> list[tuple[Metric, Metric, list[str]]]:
    """(x, y, the targets it plots) per figure: each objective pair over every target, except that an x of latency
    leaves out FPGA C-simulation targets (host CPU time); those get a figure of their own on their counted FPGA
    cost, unless the pairs already have one."""
    titles = target_titles(ok)
    contexts = sorted(set(titles))
    out: list[tuple[Metric, Metric, list[str]]] = []
    for x, y in pairs:
        if x.name != "latency":
            out.append((x, y, contexts))
            continue
        by_cost: dict[str, tuple[Metric, list[str]]] = {}
        for context in contexts:
            cost = fpga_cost_metric(ok[titles == context])
            by_cost.setdefault(cost.name, (cost, []))[1].append(context)
        out.append((x, y, by_cost.pop(x.name, (x, []))[1]))
        out += [(cost, y, drawn) for cost, drawn in by_cost.values() if (cost, y) not in pairs]
    return out


def _tradeoff_figure(
    source: ColumnDataSource, shown: BooleanFilter, ok: pd.DataFrame, x: Metric, y: Metric, contexts: Sequence[str],
    selected: str,
) -> tuple[Any, dict[str, list[Model]], list[str]]:
    """One objective pair over the targets ``contexts``, per selector option the renderers it shows (the option's
    points and its Pareto front: step line and rings), and the options that have a point to draw (the figure is
    hidden for the others); ``selected`` is the option shown first. Axis ranges follow the visible renderers only,
    so each target gets its own scale."""
    titles = target_titles(ok)
    drawn = finite_rows(ok[titles.isin(contexts)], [x.column, y.column])
    fpga = x.name in ("bops", "fpga_latency")
    # the axis labels carry units and caveats: a 440-px title cut them off mid-word
    title = f"{y.label.split(' (')[0]} vs {x.label.split(' (')[0]}"
    fig = figure(
        width=440, height=360, title=title, x_axis_label=axis_label(x, drawn), y_axis_label=axis_label(y, drawn),
        x_axis_type=_axis_type(source.data[x.name]), tools="pan,wheel_zoom,box_select,tap,reset,save",
        name=f"eb-plot-{y.name}-{x.name}",
    )  # fmt: skip
    fig.toolbar.logo = None
    if fpga:
        fig.add_layout(Title(text="FPGA C simulation: its p50 is host CPU time (in the table)", text_font_size="9pt",
                             text_font_style="italic"), "above")
    fig.x_range.only_visible = fig.y_range.only_visible = True
    _single_point_spans(fig, drawn, x, y)
    if isinstance(fig.xaxis[0].formatter, LogTickFormatter):
        fig.xaxis[0].formatter = LogTickFormatter(min_exponent=4)  # 0.1, 1, 10 rather than 10^-1 ...
        fig.xaxis[0].ticker = LogTicker(mantissas=[1, 2, 5])  # 0.02, 0.05: the default labelled 0.05, 0.1, 0.15 alone
    step_mode = "after" if (x.direction == "min") == (y.direction == "max") else "before"
    options = [*contexts, *([ALL_TARGETS] if len(set(titles)) > 1 else [])]
    layers: dict[str, list[Model]] = {option: [] for option in options}
    fill, faint = ("energy_fill", "energy_fill_faint") if ENERGY in (x.column, y.column) else (0.75, 0.15)
    for option in options:
        visible = option == selected
        if option != ALL_TARGETS:
            view = CDSView(filter=GroupFilter(column_name="panel", group=option) & shown)
            points = fig.scatter(
                x.name, y.name, source=source, view=view, marker="marker", color="color", size=10, fill_alpha=fill,
                selection_line_color="black", selection_line_width=2, nonselection_fill_alpha=faint,
                nonselection_line_alpha=0.25, name="eb-points", visible=visible,
            )  # fmt: skip
            bars = _error_bars(fig, source, view, x, y, visible)
            layers[option] += [points, *bars]
            layers.get(ALL_TARGETS, []).extend([points, *bars])
        front = _front(ok, ok[titles.isin(contexts)] if option == ALL_TARGETS else ok[titles == option], x, y)
        line = fig.step("x", "y", source=front, mode=step_mode, line_dash="dashed", color="#444", visible=visible)
        rings = fig.scatter("x", "y", source=front, size=15, fill_color=None, line_color="crimson", line_width=2,
                            visible=visible)  # fmt: skip
        layers[option] += [line, rings]
    points = [r for r in fig.renderers if r.name == "eb-points"]
    fig.add_tools(HoverTool(renderers=points, tooltips=list(TOOLTIP)))
    has_points = set(titles.loc[drawn.index]) | ({ALL_TARGETS} if ALL_TARGETS in options and len(drawn) else set())
    labels = {}  # per option, its axis labels: an energy axis says whether its figures are estimated (explore.js)
    for option in options:
        part = drawn if option == ALL_TARGETS else drawn[titles.loc[drawn.index] == option]
        labels[option] = [axis_label(x, part), axis_label(y, part)]
    fig.tags = [labels]
    return fig, layers, [o for o in options if o in has_points]


def _single_point_spans(fig: Any, drawn: pd.DataFrame, x: Metric, y: Metric) -> None:
    """The width of an axis whose visible values are all one (a target with one point): a tenth of the smallest
    value rather than BokehJS's default of 2, which put one accuracy of 0.95 on an axis from 0 to 2 (and a latency
    of 0.05 ms on one from -0.95); half a decade on a log axis."""
    for metric, data_range, kind in ((x, fig.x_range, fig.x_scale), (y, fig.y_range, fig.y_scale)):
        values = np.abs(drawn[metric.column].astype(float).to_numpy() * metric.scale)
        values = values[values > 0]
        linear = type(kind).__name__ != "LogScale"
        data_range.default_span = 0.1 * float(values.min()) if linear and len(values) else 1.0 if linear else 0.5


def _error_bars(fig: Any, source: ColumnDataSource, view: CDSView, x: Metric, y: Metric, visible: bool) -> list[Model]:
    """Segments from each point's interval low to high, on the axes that show a latency percentile."""
    bars = []
    if f"{x.name}_low" in source.data:
        bars.append(fig.segment(f"{x.name}_low", y.name, f"{x.name}_high", y.name, source=source, view=view,
                                color="color", line_width=1.5, visible=visible))
    if f"{y.name}_low" in source.data:
        bars.append(fig.segment(x.name, f"{y.name}_low", x.name, f"{y.name}_high", source=source, view=view,
                                color="color", line_width=1.5, visible=visible))
    return bars


def _finite(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe number: NaN and infinities become null."""
    return round(float(value), digits) if value is not None and np.isfinite(value) else None


def details_payload(ok: pd.DataFrame, profiles: dict[int, LayerProfile]) -> list[dict[str, Any]]:
    """Per source row: its lineage and, when recorded, its per-layer profile (what a click on a point opens)."""
    out = []
    base_facts = _baseline_facts(ok)
    for _, row in ok.iterrows():
        profile = profiles.get(int(row["id"]))
        item: dict[str, Any] = {
            "label": str(row["label"]),
            "id": str(row["variant_id"]),
            "context": str(row["target"]) + " · " + str(row["backend"]),
            "lineage": lineage(row["spec"], row["parent_id"] if isinstance(row["parent_id"], str) else None,
                               (row["settings"] if isinstance(row["settings"], dict) else {}).get("calibrator"),
                               _removed(row, base_facts)),
        }
        if profile is not None:
            item["profile"] = {
                "runtime": profile.runtime, "status": profile.status, "reason": profile.reason,
                "run_ms": _finite(profile.run_ms),
                "rows": [[r.layer, r.op, _finite(r.time_ms, 5), _finite(r.time_share, 4), _finite(r.macs_share, 4)]
                         for r in profile.rows],
            }  # fmt: skip
        out.append(item)
    return out


def _controls(ok: pd.DataFrame, options: Sequence[str], estimates: bool) -> str:
    """Target selector and the legend: one toggle per criterion/method (its colour), one per precision (marker),
    and, when an energy plot shows an estimate, what its hollow marker means. A long criterion name is cut as in
    the static figures' legend (a 300-character label made the page 4000 px wide), whole in its tooltip."""
    select = "".join(f'<option value="{esc(o)}">{esc(o)}</option>' for o in options)
    series = ok.apply(series_name, axis=1)
    colors = palette(sorted(set(series)))
    groups = sorted({s.rsplit("/", 1)[0] for s in series}, key=lambda g: (g != BASELINE, g))
    group_color = {s.rsplit("/", 1)[0]: to_hex(c) for s, c in colors.items()}
    symbols = {"o": "●", "^": "▲", "s": "■", "D": "◆", "h": "⬢"}
    chips = [f'<button class=chip data-group="{esc(g)}" title="{esc(g)}"><i style="color:{group_color[g]}">●</i> '
             f"{esc(short_label(g))}</button>" for g in groups]
    chips += [f'<button class=chip data-precision="{esc(p)}" title="{esc(p)}"><i>{symbols.get(MARKERS.get(p, "o"), "●")}'
              f"</i> {esc(short_label(p))}</button>" for p in sorted(set(ok["precision"].astype(str)))]
    note = f"<span class=muted><i>○</i> {esc(ESTIMATED)}</span>" if estimates else ""
    return (f'<div class=controls><label>target <select id=eb-target>{select}</select></label>'
            f'<span class=legend title="click to hide or show">{"".join(chips)}</span>{note}</div>')


def _missing_notes(options: Sequence[str], missing: dict[str, list[str]]) -> str:
    """Per selector option, the plots hidden for it because it has no value to draw in them (shown by the page
    script while that option is selected)."""
    notes = [f'<p class="muted eb-missing" data-option="{esc(o)}"{"" if i == 0 else " hidden"}>No values on this '
             f"target for: {esc('; '.join(missing[o]))} (not drawn).</p>" for i, o in enumerate(options) if missing[o]]
    return "".join(notes)


def _csim_left_out(ok: pd.DataFrame, axes: Sequence[tuple[Metric, Metric, list[str]]], options: Sequence[str]) -> str:
    """With all targets selected, the note that the latency plot leaves the FPGA C simulations out (as the static
    figure's title says): their p50 is host CPU time; shown by the page script while that option is selected."""
    drawn = next((set(contexts) for x, _, contexts in axes if x.name == "latency"), None)
    left_out = sorted(set(target_titles(ok)) - drawn) if drawn is not None and ALL_TARGETS in options else []
    if not left_out:
        return ""
    return (f'<p class="muted eb-missing" data-option="{esc(ALL_TARGETS)}" hidden>The p50 latency plot leaves out '
            f"{esc(', '.join(left_out))}: an FPGA C simulation's p50 is host CPU time (its own plot is on its counted "
            "FPGA cost).</p>")


def explorer_html(
    ok: pd.DataFrame, pairs: Sequence[tuple[Metric, Metric]], profiles: dict[int, LayerProfile]
) -> str:
    """The interactive section: controls, one plot per objective pair with values (a pair none of the run's
    measurements has is said, not drawn empty), the detail panel and its data."""
    options = selector_options(ok)
    axes = [(x, y, contexts) for x, y, contexts in figure_axes(ok, pairs) if contexts]
    metrics = list({m.name: m for x, y, _ in axes for m in (x, y)}.values())
    if METRICS["accuracy"] not in metrics:
        metrics.append(METRICS["accuracy"])
    source = ColumnDataSource(source_data(ok, metrics), name="eb-measurements")
    shown = BooleanFilter(booleans=[True] * len(ok), name="eb-shown")  # the legend's toggles
    doc = Document()
    layers: dict[str, list[Model]] = {o: [] for o in options}
    plots: dict[str, list[Model]] = {o: [] for o in options}  # per option, the plots that have points for it
    missing: dict[str, list[str]] = {o: [] for o in options}  # per option, the plots it has no point in
    estimates = False
    for x, y, contexts in axes:
        fig, fig_layers, with_points = _tradeoff_figure(source, shown, ok, x, y, contexts, options[0])
        for option in options:
            missing[option] += [] if option in with_points else [f"{y.label} vs {x.label}"]
        if not with_points:
            continue
        fig.visible = options[0] in with_points
        estimates |= ENERGY in (x.column, y.column) and energy_kind(ok) is not None
        doc.add_root(fig)
        for option, renderers in fig_layers.items():
            layers[option] += renderers
        for option in with_points:
            plots[option].append(fig)
    fronts = list(doc.select({"name": "eb-front"}))
    models = {"source": source, "shown": shown, "layers": layers, "plots": plots, "fronts": fronts}
    source.selected.js_on_change("indices", CustomJS(args=models, code="window.ebReport.select(source.selected.indices)"))
    doc.js_on_event("document_ready",
                    CustomJS(args=models, code="window.ebReport.init({source, shown, layers, plots, fronts})"))
    script, divs = components(doc.roots) if doc.roots else ("", [])
    # "<" escaped so no string in the data can close the script element
    details = json.dumps(details_payload(ok, profiles), separators=(",", ":"), default=str).replace("<", "\\u003c")
    return (
        _controls(ok, options, estimates)
        + _missing_notes(options, missing)
        + _csim_left_out(ok, axes, options)
        + f"<div class=plots>{''.join(divs)}</div>"
        + "<div id=eb-detail class=detail><p class=muted>Click a point (or a table row) for the variant's "
          "lineage and per-layer profile; drag with the box tool to select several.</p></div>"
        + f'<script type="application/json" id=eb-details>{details}</script>'
        + script
    )  # fmt: skip
