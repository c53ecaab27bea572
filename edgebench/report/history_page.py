"""history.html: a metric over tagged runs per (variant, target context), change points marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from edgebench.report.page import esc, write_page
from edgebench.report.plots import save, shared_legend
from edgebench.store import Store
from edgebench.store.history import history_frame, series_change_points
from edgebench.store.metrics import get_metric


def history_figure(hist: pd.DataFrame, changes: pd.DataFrame, metric: str) -> Figure:
    """One panel per target context; a line per variant; change points as red triangles."""
    m = get_metric(metric)
    contexts = sorted(set(hist["context"]))
    fig = Figure(figsize=(11, 3.6 * len(contexts)), layout="constrained")
    axes = fig.subplots(len(contexts), 1, squeeze=False)[:, 0]
    labels = sorted(set(hist["label"]))
    colors = {lab: matplotlib.colormaps["tab20"](i % 20) for i, lab in enumerate(labels)}
    runs = hist.drop_duplicates("position").sort_values("position")
    for ax, context in zip(axes, contexts):
        part = hist[hist["context"] == context]
        for label, series in part.groupby("label"):
            series = series.sort_values("position")
            ax.plot(series["position"], series["value"], marker="o", ms=3, lw=1.2, color=colors[label], label=label)
        marks = changes[changes["context"] == context].merge(part, on=["label", "position"])
        for verdict, marker, color in (("regression", "^", "crimson"), ("improvement", "v", "seagreen")):
            sel = marks[marks["verdict"] == verdict]
            if sel.empty:
                continue
            ax.scatter(sel["position"], sel["value"], marker=marker, s=120, color=color, zorder=5, label=f"change: {verdict}")
        ax.set_xticks(runs["position"], runs["run_label"], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(m.label)
        ax.set_title(context, fontsize=9)
        ax.grid(True, alpha=0.3)
    shared_legend(fig, list(axes), fontsize=7)
    return fig


def render_history(
    store: Store, out_dir: Path, metric: str = "latency", name: str | None = None, until_run: str | None = None,
    hist: pd.DataFrame | None = None, *, in_report: bool = False,
) -> Path | None:
    """Write ``out_dir/history.html`` (+ PNG/SVG) over tagged runs, or over ``hist`` (a ``history_frame`` already
    selected: every run, some variants or targets); None when fewer than two runs are in it. The page links back to
    the run report when it is part of one (``in_report``: its index.html is written after) or one is beside it; a
    ``history --out DIR`` page has none to link to."""
    if hist is None:
        hist = history_frame(store, metric, name=name, until_run=until_run)
    if hist["position"].nunique() < 2:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    changes = series_change_points(store, hist, metric)
    png = save(history_figure(hist, changes, metric), out_dir, f"history_{get_metric(metric).name}")
    if changes.empty:
        table = "<p>No change point detected.</p>"
    else:
        shown = changes.assign(change_pct=changes["change_pct"].map(lambda v: f"{v:+.1f}%"))
        table = shown[["label", "context", "run_label", "run_id", "change_pct", "verdict"]].to_html(
            index=False, escape=True, border=0
        )
    runs = hist.drop_duplicates("position").sort_values("position")
    run_list = "".join(
        f"<li>{esc(r.run_label)}: <code>{esc(r.run_id)}</code> ({esc(r.run_started_at)})</li>" for r in runs.itertuples()
    )
    back = in_report or (out_dir / "index.html").is_file()
    body = (
        ('<p><a href="index.html">back to the run report</a></p>' if back else "")
        + f'<img src="{png}" alt="history"><h2>Detected change points</h2>{table}'
        f"<h2>Runs</h2><ol start=0>{run_list}</ol>"
    )
    return write_page(out_dir / "history.html", f"History of {get_metric(metric).label} over tagged runs", body)
