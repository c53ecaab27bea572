"""``edgebench compare --format html``: the gate and the verdicts, and for every result whose timing changed the
latency distributions of each run before and after, so a reviewer sees *why* it is a regression.

Each run's raw samples are drawn as an empirical CDF (200 quantiles per run keep the page small): a real
slowdown shifts every candidate curve right of every baseline curve; run-to-run noise shows as curves of
one side that disagree among themselves. BokehJS is written once beside the page, as for the run report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from bokeh.embed import components
from bokeh.models import HoverTool, Span
from bokeh.plotting import figure

from edgebench.report.page import esc, table_html, write_bokeh_js, write_page
from edgebench.report.tables import fmt_cell
from edgebench.store import Store
from edgebench.store.compare import Comparison, MatchedResult, MetricChange, shown_name, worth_a_row
from edgebench.store.compare_markdown import fmt_change, fmt_confidence, fmt_evidence
from edgebench.store.gate import (
    NOTHING_COMPARED,
    GateResult,
    Thresholds,
    missing_lines,
    threshold_text,
    undecided_lines,
    unstable_lines,
)
from edgebench.store.metrics import TIMING_METRICS, get_metric

#: points per run's CDF curve
QUANTILES = np.linspace(0.0, 1.0, 201)
_SIDES = (("baseline", "#1f77b4"), ("candidate", "#d62728"))
_SHOWN = ("regression", "lost", "improvement", "undecided")


def _changes_table(rows: list[tuple[MatchedResult, MetricChange]]) -> str:
    body = [
        f"<tr class={c.verdict}><td class='l nw'>{esc(c.verdict)}</td><td class=l>{esc(r.label)}</td>"
        f"<td class=l>{esc(r.context)}</td><td class='l nw'>{esc(shown_name(c))}</td>"
        f"<td>{esc(_value(c.baseline, c.metric))}</td><td>{esc(_value(c.candidate, c.metric))}</td>"
        f"<td>{esc(fmt_change(c))}</td><td>{esc(fmt_confidence(c))}</td>"
        f"<td class='l nw'>{esc(fmt_evidence(c))}</td><td class=l>{esc(c.note)}</td></tr>"
        for r, c in rows
    ]
    headers = ["verdict", "variant", "target", "metric", "baseline", "candidate", "change [CI]", "confidence",
               "evidence", "note"]
    return table_html(headers, body, left=4, sortable=True)


def _gate_html(gate: GateResult, thresholds: Thresholds) -> str:
    """The gate's level, thresholds, each regression's level and why, then the unstable and undecided results."""
    title = {"fail": "fails", "warn": "warns", "ok": "passes"}[gate.level]
    rows = [f"<tr class={f.level}><td class='l nw'>{f.level}</td><td class=l>{esc(f.label)}</td><td class=l>"
            f"{esc(f.context)}</td><td class='l nw'>{esc(f.change.metric)}</td><td>{esc(fmt_change(f.change))}</td>"
            f"<td class=l>{esc(f.reason)}</td></tr>" for f in gate.findings]
    parts = [f"<h2 class=gate-{gate.level}>Gate {title} (exit {int(gate.exit_code)})</h2>",
             f"<p>Thresholds: {esc(threshold_text(thresholds))}. Unstable: run-to-run spread ≥ "
             f"{thresholds.unstable_pct:g}%.</p>"]
    if rows:
        parts.append(table_html(["level", "variant", "target", "metric", "change [CI]", "why"], rows, left=4))
    if gate.nothing_compared:
        parts.append(f"<p class=gate-fail>{esc(NOTHING_COMPARED[0].upper() + NOTHING_COMPARED[1:])}.</p>")
    if gate.missing:
        parts.append("<h3>Baseline results the candidate failed or did not measure</h3><ul>"
                     + "".join(f"<li>{esc(line)}</li>" for line in missing_lines(gate)) + "</ul>")
    if gate.unstable:
        parts.append("<h3>Unstable measurements (shown, not blamed)</h3><ul>"
                     + "".join(f"<li>{esc(line)}</li>" for line in unstable_lines(gate)) + "</ul>")
    if gate.undecided:
        parts.append("<h3>Not judged (disturbed, measured on different machines, or too little evidence to decide)"
                     "</h3><ul>"
                     + "".join(f"<li>{esc(line)}</li>" for line in undecided_lines(gate)) + "</ul>")
    return "".join(parts)


def _value(v: float | None, metric: str) -> str:
    """A compared value in the unit the run report shows (energy in mJ, size in KiB) with that unit; a size also in
    whole bytes, since it is exact and a change of a few bytes must show."""
    if v is None:
        return "—"
    m = get_metric(metric)
    unit = re.search(r"\(([^;,)]+)", m.label)
    text = f"{fmt_cell(v * m.scale)} {unit[1] if unit else ''}".strip()
    return f"{text} ({round(v):,} B)" if m.column.endswith("_bytes") else text


def distribution_figure(store: Store, result: MatchedResult) -> object | None:
    """The ECDF of every run's latency samples of one result, baseline and candidate; None without samples. The
    latency axis is logarithmic: on a linear one a single descheduled iteration (milliseconds) squeezed a 0.02 ms
    model's curves against the axis, and a change of x % is one width at any latency."""
    fig = figure(width=560, height=300, title=f"{result.label} — {result.context}", x_axis_label="latency (ms, log)",
                 x_axis_type="log", y_axis_label="fraction of iterations ≤ x", tools="pan,wheel_zoom,box_zoom,reset,save",
                 name=f"eb-dist-{result.variant_id}")  # fmt: skip
    fig.toolbar.logo = None
    drawn = 0
    for (side, color), ids in zip(_SIDES, result.measurement_ids):
        for run, measurement in enumerate(ids, start=1):
            samples = store.samples(measurement)
            if len(samples) == 0:
                continue
            ms = np.quantile(samples, QUANTILES) / 1e6
            fig.line(ms, QUANTILES, color=color, line_width=2, alpha=0.8, legend_label=side,
                     name=f"{side} run {run}", tags=[side, float(np.median(samples) / 1e6)])  # fmt: skip
            drawn += 1
    if not drawn:
        return None
    fig.add_layout(Span(location=0.5, dimension="width", line_dash="dotted", line_color="#888"))
    fig.add_tools(HoverTool(tooltips=[("run", "$name"), ("latency", "$x{0.0000} ms"), ("quantile", "$y{0.00}")]))
    fig.legend.location = "bottom_right"
    return fig


def render_comparison(
    store: Store, cmp: Comparison, gate: GateResult, thresholds: Thresholds, out: Path
) -> Path:
    """Write the comparison page ``out`` (BokehJS beside it); return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notable = [(r, c) for r in cmp.results for c in r.changes if c.verdict in _SHOWN]
    notable.sort(key=lambda rc: _SHOWN.index(rc[1].verdict))
    timing = list(dict.fromkeys(r.variant_id + r.context for r, c in notable if c.metric in TIMING_METRICS))
    shown = [r for r in cmp.results if r.variant_id + r.context in timing]
    figures = [f for f in (distribution_figure(store, r) for r in shown) if f is not None]
    script, divs = components(figures) if figures else ("", [])
    notes = list(dict.fromkeys(cmp.warnings + [w for r in cmp.results for w in r.warnings] + cmp.unmatched))
    others = [(r, c) for r in cmp.results for c in r.changes if c.verdict not in _SHOWN and worth_a_row(c)]
    body = (
        f"<p>baseline <code>{esc(cmp.baseline_run)}</code> → candidate <code>{esc(cmp.candidate_run)}</code>; "
        f"{len(cmp.results)} results compared. How: {esc(cmp.method)}.</p>"
        + _gate_html(gate, thresholds)
        + ("<h2>Context differences</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>" if notes else "")
        + f"<h2>Changes ({len(notable)})</h2>" + (_changes_table(notable) if notable else "<p>No change called.</p>")
        + "<h2>Why: latency distributions of each run</h2><p class=muted>Empirical CDF of every run's raw samples "
          "(baseline blue, candidate red); the dotted line is the median. A real change moves every red curve away "
          "from every blue one; curves of one side that disagree are run-to-run noise.</p>"
        + (f"<div class=plots>{''.join(divs)}</div>" if divs else "<p>No timing change to show.</p>")
        + f"<h2>Unchanged ({len(others)})</h2><details><summary>every other compared metric</summary>"
        + _changes_table(others) + "</details>" + script
    )  # fmt: skip
    title = f"edgebench compare — {cmp.baseline_run} → {cmp.candidate_run}"
    return write_page(out, title, body, scripts=[write_bokeh_js(out.parent)])
