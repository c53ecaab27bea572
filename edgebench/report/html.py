"""Offline HTML report of one run: index.html with interactive trade-off plots (BokehJS written once beside
it, no CDN) and PNG/SVG figures for papers and slides.

Re-rendering reads only the store, so ``edgebench report`` works on any stored run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import edgebench.report.plots as plots
from edgebench.job import SpeedProbe
from edgebench.report.compression import compression_section
from edgebench.report.explore import explore_script, explorer_html
from edgebench.report.fpga import fpga_section
from edgebench.report.history_page import render_history
from edgebench.report.layers import layer_profile_section
from edgebench.report.page import esc, table_html, with_contents, write_bokeh_js, write_page
from edgebench.report.quantization import quantization_section
from edgebench.report.run_notes import run_notes
from edgebench.report.tables import (
    best_under_budget,
    context_titles,
    default_budgets,
    fmt_cell,
    is_estimated,
    panels,
    pareto_flags,
    with_speedup,
)
from edgebench.store import Store
from edgebench.store.metrics import METRICS, Metric, get_metric

DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("latency", "accuracy"), ("size", "accuracy"), ("macs", "accuracy"))

#: the measurement table's columns, in order
_TABLE_METRICS = tuple(METRICS[name] for name in (
    "accuracy", "latency", "p99", "throughput", "size", "compressed_size", "params", "nonzero_params", "macs",
    "bops", "fpga_multipliers", "training_macs", "energy", "memory", "output_error", "predicted_latency",
    "prediction_error",
))
#: table columns shown only when some row has a value (runs that asked for them)
_OPTIONAL_METRICS = ("predicted_latency", "prediction_error")


def resolve_objectives(objectives: Sequence[tuple[str, str]] | None) -> list[tuple[Metric, Metric]]:
    """Objective pairs as ``(x, y)`` metrics; names are metric names, store columns or experiment-file names.

    Pairs are unordered: when exactly one metric is higher-is-better (accuracy, throughput) it goes on
    the y axis, so ``("accuracy", "latency_p50_ms")`` and ``("latency", "accuracy")`` plot the same.
    """
    pairs = []
    for a, b in objectives or DEFAULT_OBJECTIVES:
        x, y = get_metric(a), get_metric(b)
        if x.direction == "max" and y.direction == "min":
            x, y = y, x
        pairs.append((x, y))
    return pairs


def _rounded(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _kv_table(items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th class=l>{esc(k)}</th><td class=l>{esc(fmt_cell(v))}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value
    return out


def _speed_text(record: dict[str, Any]) -> str:
    """A machine-speed record as a line: the reference workload's p50, its index and what else ran meanwhile."""
    text = f"{record['workload']}: p50 {record['p50_ms']:.4g} ms ({record['index']:,.0f} inferences/s)"
    if contention := record.get("contention"):
        text += f", others' CPU {contention['other_cores']:.2f} cores" + (" ⚠ contended" if contention.get("flagged")
                                                                             else "")
    if record.get("measured_at"):
        text += f", at {datetime.fromtimestamp(record['measured_at'], tz=UTC):%Y-%m-%d %H:%M:%S} UTC"
    return text


def context_panel(run: dict[str, Any], df: pd.DataFrame) -> str:
    """Machine, software versions, power mode and energy sources: what a comparison needs to be fair."""
    about = {
        "run id": run["id"],
        "name": run["name"],
        "status": run["status"],
        "started": run["started_at"],
        "finished": run["finished_at"] or "— (unfinished)",
        "tags": ", ".join(run["tags"]) or "—",
        "edgebench": f"{run['edgebench_version']} ({run['edgebench_commit'] or 'commit unknown'})",
        "experiment hash": run["experiment_hash"],
    }
    fed = (run.get("experiment") or {}).get("input") or {}
    if scaling := fed.get("normalize"):  # what a deployment must feed each artifact
        about["input"] = (f"{'x'.join(map(str, fed['shape']))}, {fed['classes']} classes; (pixel in [0, 1] - mean) / "
                          f"std, mean {_rounded(scaling['mean'])}, std {_rounded(scaling['std'])} ({scaling['from']})")
    machine = _flatten("", {k: v for k, v in run["machine"].items() if k != "not_run"}, {})  # its own section
    machine.setdefault("power mode", machine.pop("power_mode", "not reported"))
    if isinstance(speeds := machine.get("speed"), list):  # the reference workload's records, one per measurement
        machine["speed"] = "; ".join(map(_speed_text, speeds)) or "—"
    runtimes: dict[str, set[str]] = {}
    for versions in df["runtime"]:
        for lib, ver in (versions or {}).items():
            runtimes.setdefault(lib, set()).add(str(ver))
    versions = {lib: ", ".join(sorted(v)) for lib, v in sorted(runtimes.items())}
    sources = df["energy_source"].dropna().unique().tolist()
    notes = df["energy_note"].dropna().unique().tolist()
    by_target = {target: ", ".join(sorted(group["energy_source"].dropna().unique())) or "none (not measured)"
                 for target, group in df.groupby("target")}  # a source read on one target says nothing of another
    energy = {
        "energy source": "; ".join(f"{t}: {s}" for t, s in by_target.items()) if sources
        else "none (energy not measured; shown as —, never 0)",
        "energy notes": "; ".join(notes) or "—",
    }
    return (
        "<div class=ctx>"
        f"<div><h3>Run</h3>{_kv_table(about)}</div>"
        f"<div><h3>Machine</h3>{_kv_table(machine)}</div>"
        f"<div><h3>Runtime versions (from the workers)</h3>{_kv_table(versions or {'—': '—'})}"
        f"<h3>Energy</h3>{_kv_table(energy)}</div>"
        "</div>"
    )


def variants_table(ok: pd.DataFrame, flags: pd.Series, across: pd.Series | None = None) -> str:
    """Every measured variant, rows Pareto-optimal on their target highlighted; headers sort on click.

    Each row carries ``data-i``, its position in ``ok`` (the interactive plots' source row), so a point and
    its row select each other. ``across``, the flags across all targets, rides in the flags cell's
    ``data-across`` for the page script to show when the selector reads 'all targets'.
    """
    titles = context_titles(ok)
    position = {idx: i for i, idx in enumerate(ok.index)}
    metrics = [m for m in _TABLE_METRICS if m.name not in _OPTIONAL_METRICS or ok[m.column].notna().any()]
    body = []
    for idx, row in ok.sort_values(["target", "backend", "p50_ms"]).iterrows():
        cells = []
        for metric in metrics:
            value = row[metric.column]
            text = fmt_cell(value * metric.scale if isinstance(value, int | float) else value)
            if metric.name == "energy" and is_estimated(row["energy_source"]):
                text += " (estimated)"
            if metric.name == "latency" and pd.notna(row.get("bops")):
                text += " (host C-sim)"  # the FPGA simulation's time on this CPU, not the FPGA's latency
            note = _interval_note(row, metric)  # in the cell's tooltip: the cell itself stays a sortable number
            cells.append(f"<td title=\"{esc(note)}\">{esc(text)}</td>" if note else f"<td>{esc(text)}</td>")
        cells.append(f"<td class=\"l note\">{esc(_contention_cell(row['details']))}</td>")
        marks = ", ".join(flags[idx])
        cls = " class=pareto" if marks else ""
        other = "" if across is None else f' data-across="{esc(", ".join(across[idx]) or "—")}"'
        body.append(
            f"<tr{cls} data-i={position[idx]}><td class=l>{esc(row['label'])}</td>"
            f"<td class=l><code>{esc(row['variant_id'])}</code></td>"
            f"<td class=l>{esc(titles[idx])}</td>{''.join(cells)}"
            f'<td class="l eb-flags" data-target="{esc(marks or "—")}"{other}>{esc(marks or "—")}</td></tr>'
        )
    headers = ["variant", "id", "target", *(m.short for m in metrics), "others' CPU (cores)", "Pareto-optimal for"]
    return table_html(headers, body, left=3, sortable=True)


def _interval_note(row: pd.Series, metric: Metric) -> str:
    """``95% interval [0.0210, 0.0215] ms (±1.2%)`` of a latency percentile ('' when none was recorded)."""
    ends = plots.interval_columns(metric.column)
    value = row.get(metric.column)
    if ends is None or not isinstance(value, int | float) or not value > 0:
        return ""
    low, high = row.get(ends[0]), row.get(ends[1])
    if not isinstance(low, int | float) or not isinstance(high, int | float) or pd.isna(low) or pd.isna(high):
        return ""
    confidence = row.get("ci_confidence")
    level = f"{confidence:.0%} " if isinstance(confidence, int | float) and not pd.isna(confidence) else ""
    return f"{level}interval [{low:.4g}, {high:.4g}] ms ({plots.interval_spread(value, low, high)})"


def _contention_cell(details: object) -> str:
    """Other processes' CPU use during the timed window (cores), flagged when it made the figure undecidable, and
    a change of the machine's speed across the window (``measure.speed_probe``)."""
    found = details.get("contention") if isinstance(details, dict) else None
    cell = "—" if not found else f"{found['other_cores']:.2f}" + (" ⚠ contended" if found.get("flagged") else "")
    probe = details.get("speed_probe") if isinstance(details, dict) else None
    probe = SpeedProbe.model_validate(probe) if probe else None
    if probe is None or probe.changed is None:
        return cell
    return f"{cell} ⚠ machine speed {probe.changed:+.0%} " + (
        "across the window" if probe.seen_by == "speed probe" else "within the window (its own samples)")


def failed_table(failed: pd.DataFrame) -> str:
    """Failed jobs with their error messages."""
    if failed.empty:
        return "<p>No job failed.</p>"
    rows = [
        f"<tr><td class=l>{esc(r['label'])}</td><td class=l>{esc(r['target'])}</td>"
        f"<td class=l>{esc(r['backend'])}</td><td class=l><code>{esc(r['job_key'])}</code></td>"
        f"<td class=err>{esc(r['error'] if isinstance(r['error'], str) else 'no error text')}"
        f"{_detail(r.get('error_detail'))}</td></tr>"
        for _, r in failed.iterrows()
    ]
    return table_html(["variant", "target", "backend", "job", "error"], rows, left=5)


def _detail(text: object) -> str:
    """A failure's traceback or stderr tail, folded under its one-line error."""
    if not isinstance(text, str) or not text.strip():
        return ""
    return f"<details><summary>traceback / worker output</summary><pre>{esc(text)}</pre></details>"


def _frame_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class=muted>No measurements with this metric.</p>"
    return df.to_html(index=False, escape=True, classes="budget", border=0).replace("<th>", "<th class=l>")


def _budget_section(ok: pd.DataFrame, budgets: dict[str, Sequence[float]] | None) -> str:
    parts = []
    for name in ("latency", "energy"):
        metric = METRICS[name]
        if ok[metric.column].notna().sum() == 0:
            parts.append(f"<p class=muted>No {name} values in this run (not measured here).</p>")
            continue
        chosen = (budgets or {}).get(name) or default_budgets(ok[metric.column] * metric.scale)
        parts.append(f"<h3>Best accuracy under each {metric.label} budget</h3>")  # 'each': no article to get wrong ('a energy')
        parts.append(_frame_html(best_under_budget(ok, metric, chosen)))
    return "".join(parts)


#: the static figure of MACs reduction against measured speedup
SPEEDUP_FIGURE = "speedup_vs_macs_reduction"


def _remove_stale_figures(out_dir: Path, drawn: set[str]) -> None:
    """Delete the figures an earlier render left in ``out_dir`` that this one did not draw (other objectives, another
    run), which sat beside the new page as if they were its run's: only the names a render writes
    (``<metric>_vs_<metric>`` and the speedup figure, PNG and SVG), never another file."""
    ours = {f"{y}_vs_{x}" for y in METRICS for x in METRICS} | {SPEEDUP_FIGURE}
    for path in out_dir.glob("*_vs_*"):
        if path.suffix in (".png", ".svg") and path.stem in ours - drawn and path.is_file():
            path.unlink()


def render_report(
    store: Store,
    run_id: str,
    out_dir: Path,
    objectives: Sequence[tuple[str, str]] | None = None,
    *,
    budgets: dict[str, Sequence[float]] | None = None,
) -> Path:
    """Render ``out_dir/index.html`` (plus PNG and SVG figures) for a stored run; return its path.

    Args:
        store: the results store.
        run_id: run id, tag, unique id prefix or 'latest'.
        out_dir: created if missing; existing figures are overwritten, and those of an earlier render that this
            one does not draw are removed.
        objectives: ``(x, y)`` metric pairs for Pareto plots (names from ``edgebench.store.metrics.METRICS``);
            defaults to the run's own (its experiment's ``report.objectives``, as ``edgebench run`` drew them), else
            accuracy vs latency, size and MACs.
        budgets: optional ``{"latency": [ms...], "energy": [mJ...]}`` for the budget table; defaults span
            the measured range.
    """
    run = store.get_run(run_id)
    df = store.measurements(run["id"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if objectives is None:  # a re-rendered report draws what the run's own did (energy vs accuracy, say)
        objectives = ((run.get("experiment") or {}).get("report") or {}).get("objectives") or None
    pairs = resolve_objectives(objectives)
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    sections = []
    drawn: set[str] = set()

    if ok.empty:
        sections.append("<h2>Trade-offs</h2><p>No successful measurement in this run.</p>")
    else:
        profiles = store.layer_profiles(ok["id"].tolist())
        figs = []
        for x, y in pairs:
            fig = plots.tradeoff_figure(ok, x, y, panels(ok))
            figs.append(plots.save(fig, out_dir, f"{y.name}_vs_{x.name}"))
        drawn.update(f.removesuffix(".png") for f in figs)
        static = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a> (<a href="{esc(f[:-4])}.svg">SVG</a>)' for f in figs)
        sections.append(
            "<h2>Trade-offs per target</h2><p class=muted>Colour: pruning criterion or method; marker: precision. "
            "Pareto-optimal points of the selected target are ringed in red and joined by the dashed front. Hover "
            "a point for its figures; click it (or a table row) for its lineage and per-layer profile; the legend "
            f"hides and shows criteria and precisions. Static figures with a panel per target: {static}.</p>"
            + explorer_html(ok, pairs, profiles)
        )
        sections.append(f"<h2>Best variant under a budget, across targets</h2>{_budget_section(ok, budgets)}")
        # a panel per target context: each speedup is against its own backend's unpruned variant
        speed = plots.speedup_figure([(t, p) for t, p in panels(with_speedup(ok), context_titles) if t != "all targets"])
        if speed is not None:
            name = plots.save(speed, out_dir, SPEEDUP_FIGURE)
            drawn.add(SPEEDUP_FIGURE)
            sections.append(
                "<h2>MACs reduction vs measured speedup</h2><p class=muted>Points under the dashed line are "
                f'pruned variants that are not as much faster as their MAC count suggests.</p><img src="{name}">'
            )
        compared = compression_section(ok)
        if compared is not None:
            sections.append("<h2>Filter pruning, sparsity and low rank at equal accuracy</h2>" + compared)
        quantized = quantization_section(ok)
        if quantized is not None:
            sections.append("<h2>Quantization</h2><p class=muted>Accuracy of each deployed artifact on the test split; "
                            "drops against the fp32 artifact of the same variant on the same target.</p>" + quantized)
        fpga = fpga_section(ok)
        if fpga is not None:
            sections.append(
                "<h2>FPGA (hls4ml)</h2><p class=muted>Accuracy of the fixed-point C simulation on the test split; "
                "cycle latency and resources come from a synthesis report only.</p>" + fpga
            )
        layers = layer_profile_section(ok, profiles)
        if layers is not None:
            sections.append(
                "<h2>Where the time goes, per layer</h2><p class=muted>Time share vs MACs share of every layer, "
                "from each runtime's profiler in its own window after the timed one (measurement.profile_layers)."
                "</p>" + layers
            )
        across = pareto_flags(ok, pairs, across=True) if ok["target"].nunique() > 1 else None
        table = variants_table(ok, pareto_flags(ok, pairs), across)
        # numbers are never broken across lines: a table wider than the page scrolls in its own box
        sections.append(f"<h2>All variants ({len(ok)} measurements)</h2><div class=wide>{table}</div>")
    notes = run_notes(df, (run.get("experiment") or {}).get("input"))
    if notes:  # what the CLI's summary says beside the figures: a report read later says it too
        items = "".join(f"<li><b>{esc(n.label)}</b>: {esc(n.text)}</li>" for n in notes)
        sections.append(f"<h2>Notes ({len(notes)})</h2><ul class=notes>{items}</ul>")
    sections.append(f"<h2>Failed jobs ({len(failed)})</h2>{failed_table(failed)}")
    if not_run := run["machine"].get("not_run"):  # targets, backends and precisions this machine left out, and why
        items = "".join(f"<li>{esc(line)}</li>" for line in not_run)
        sections.append(f"<h2>Not run ({len(not_run)})</h2><ul class=notes>{items}</ul>")
    sections.append(f"<h2>Context</h2>{context_panel(run, df)}")
    if render_history(store, out_dir, "latency", name=run["name"], until_run=run["id"], in_report=True) is not None:
        sections.append('<h2>History</h2><p><a href="history.html">p50 latency over tagged runs, with change points</a></p>')

    _remove_stale_figures(out_dir, drawn)
    title = f"edgebench report — {run['name']} ({run['id']})"
    return write_page(out_dir / "index.html", title, with_contents(sections), scripts=[write_bokeh_js(out_dir)],
                      inline_js=explore_script())
