"""Matplotlib figures of a run: trade-off fronts and MACs reduction vs measured speedup.

Uses the object-oriented API on ``Figure`` (Agg canvas, no pyplot state), so
rendering works headless and from worker threads. Every figure is written as
PNG and SVG next to the HTML page that shows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from edgebench.report.tables import ENERGY, energy_kind, finite_rows, front_mask, is_estimated
from edgebench.store.metrics import Metric, fpga_cost_metric

MARKERS = {"fp32": "o", "fp16": "^", "int8": "s", "int8_dynamic": "D", "fixed": "h"}
BASELINE = "baseline"


def series_name(row: pd.Series) -> str:
    """Legend entry of a measurement: its pruning criterion, sparse or low-rank method (or 'baseline'), marked when
    it is edgebench's reading of its paper, and precision."""
    method = row["method"] if isinstance(row["method"], str) else BASELINE
    if row["kind"] in ("sparse", "lowrank", "external"):
        method = f"{row['kind']}:{method}"
    if isinstance(row.get("method_note"), str):  # the method is (partly) edgebench's reading of its paper
        method = f"{method} (edgebench's reading)"
    return f"{method}/{row['precision']}"


def palette(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per criterion or method, stable across figures of a report."""
    criteria = sorted({n.rsplit("/", 1)[0] for n in names} - {BASELINE})
    if len(criteria) <= 10:
        colors = [matplotlib.colormaps["tab10"](i) for i in range(10)]
    else:  # tab10 repeated its colours from the 11th criterion on (14 criteria: 4 pairs alike); tab20's dark
        # shades first, then its light ones
        tab20 = matplotlib.colormaps["tab20"]
        colors = [tab20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    by_group = {c: colors[i % len(colors)] for i, c in enumerate(criteria)}
    by_group[BASELINE] = (0.0, 0.0, 0.0, 1.0)
    return {n: by_group[n.rsplit("/", 1)[0]] for n in names}


def save(fig: Figure, out_dir: Path, stem: str) -> str:
    """Write ``stem.png`` and ``stem.svg``; return the PNG file name."""
    FigureCanvasAgg(fig)
    fig.savefig(out_dir / f"{stem}.png", dpi=110)
    fig.set_layout_engine("none")  # the SVG keeps the layout the PNG computed: constrained layout runs once
    fig.savefig(out_dir / f"{stem}.svg")
    return f"{stem}.png"


def _axis_scale(ax: Axes, values: np.ndarray, axis: str) -> None:
    """Log scale when the positive values span more than 20x, else linear ticks that stay apart."""
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) and finite.max() / finite.min() > 20:
        _plain_log(ax, axis)
    else:
        _plain_linear(ax, axis)


def _plain_linear(ax: Axes, axis: str) -> None:
    """At most five ticks at steps of 1, 2 or 5 with plain labels: matplotlib's default put nine labels such as
    '0.0225' on a panel of latencies in tens of µs, where they ran into each other ('0.02000.0225')."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10]))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.4g}"))


def _plain_log(ax: Axes, axis: str) -> None:
    """Log scale with plain tick labels at 1, 2 and 5 of each decade (0.5, 1, 2 rather than 10^0 alone), so an
    axis spanning less than a decade still has numbers to read."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def axis_label(metric: Metric, rows: pd.DataFrame) -> str:
    """The metric's axis label, saying '(estimated)' or '(measured and estimated)' for estimated energy in ``rows``."""
    kind = energy_kind(rows) if metric.column == ENERGY else None
    return metric.label if kind is None else f"{metric.label[:-1]}, {kind})"


#: the legend entry of the hollow markers that stand for estimated energy
ESTIMATED = "hollow: energy estimated, not measured"


def tradeoff_axes(ax: Axes, df: pd.DataFrame, x: Metric, y: Metric, title: str, colors: dict[str, tuple]) -> None:
    """Scatter one panel: a series per criterion/precision, Pareto points ringed and joined. An FPGA C simulation's
    latency is host CPU time, so its panel puts the counted FPGA cost (or synthesised cycles) on that axis, and a
    latency panel across targets leaves C simulations out. On an energy axis an estimated figure is a hollow marker
    and the front is drawn over measured figures only where there are some (``tables.front_rows``)."""
    if x.name == "latency" and fpga_cost_metric(df) is not x:
        x = fpga_cost_metric(df)
        title += "\n(FPGA cost counted from the firmware, not host C-sim time)"
    elif x.name == "latency" and "bops" in df and df["bops"].notna().any():
        df = df[df["bops"].isna()]
        title += "\n(FPGA C simulations left out: their p50 is host CPU time)"
    data = finite_rows(df, [x.column, y.column])
    if data.empty:
        ax.text(0.5, 0.5, f"no {x.name} / {y.name} values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        return
    xs, ys = data[x.column].astype(float) * x.scale, data[y.column].astype(float) * y.scale
    names = data.apply(series_name, axis=1)
    on_energy = ENERGY in (x.column, y.column)
    hollow = data["energy_source"].map(is_estimated) if on_energy else pd.Series(False, index=data.index)
    for name in sorted(set(names)):
        precision = name.rsplit("/", 1)[1]
        parts = [sel for sel in ((names == name) & ~hollow, (names == name) & hollow) if sel.any()]
        for k, sel in enumerate(parts):  # filled (measured or no energy axis), then hollow; the series named once
            ax.scatter(
                xs[sel], ys[sel], s=28, marker=MARKERS.get(precision, "o"), alpha=0.8, zorder=3,
                label=name if k == 0 else f"_{name}", edgecolors=colors[name],
                facecolors="none" if hollow[sel].all() else colors[name],
            )  # fmt: skip
    if hollow.any():
        ax.scatter([], [], s=28, marker="o", facecolors="none", edgecolors="0.3", label=ESTIMATED)
        if not hollow.all():
            title += "\n(front over measured energy only)"
    _error_bars(ax, data, x, y, xs, ys)
    front = front_mask(data, x, y)
    fx, fy = xs[front].to_numpy(), ys[front].to_numpy()
    order = np.lexsort((fy, fx))
    step = "post" if (x.direction == "min") == (y.direction == "max") else "pre"
    ax.step(fx[order], fy[order], where=step, color="0.25", lw=1.2, ls="--", zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="crimson", linewidths=1.6, zorder=4, label="Pareto-optimal")
    _axis_scale(ax, xs.to_numpy(), "x")
    _plain_linear(ax, "y")  # the y axis stays linear (accuracy, throughput)
    ax.set_xlabel(axis_label(x, data))
    ax.set_ylabel(axis_label(y, data))
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3, which="both")


def interval_columns(column: str) -> tuple[str, str] | None:
    """The store columns of a percentile column's confidence interval (``p50_ms`` -> ``p50_low_ms``,
    ``p50_high_ms``); None for a column without one."""
    name = column.removesuffix("_ms")
    return (f"{name}_low_ms", f"{name}_high_ms") if name in ("p50", "p90", "p99") else None


def interval_spread(value: float, low: float, high: float) -> str:
    """The interval's larger side relative to ``value``, as '±1.2%', under 1 % to two significant digits ('±0.027%'):
    one decimal printed '±0.0%' for [0.018447, 0.018457] ms, an interval that is not zero wide."""
    share = max(value - low, high - value) / value * 100
    decimals = 1 if share <= 0 or share >= 1 else 1 - math.floor(math.log10(share))
    return f"±{share:.{decimals}f}%"


def _error_bars(ax: Axes, data: pd.DataFrame, x: Metric, y: Metric, xs: pd.Series, ys: pd.Series) -> None:
    """Each latency percentile's confidence interval as an error bar (often narrower than the marker)."""
    for axis, metric, values in (("x", x, xs), ("y", y, ys)):
        ends = interval_columns(metric.column)
        if ends is None or not set(ends) <= set(data.columns):
            continue
        low = data[ends[0]].astype(float) * metric.scale
        high = data[ends[1]].astype(float) * metric.scale
        known = low.notna() & high.notna()
        if not known.any():
            continue
        spread = np.vstack([(values - low)[known].clip(lower=0), (high - values)[known].clip(lower=0)])
        ax.errorbar(xs[known], ys[known], **{f"{axis}err": spread}, fmt="none", ecolor="0.35", elinewidth=0.9,
                    capsize=2, zorder=2.5)


def panel_grid(count: int, panel_height: float) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels in rows of at most three (a lab's 25 boards would otherwise make one row
    125 inches wide), wide enough for two legend columns under a single panel; the panels in reading order."""
    ncols = min(3, count)
    nrows = -(-count // ncols)
    fig = Figure(figsize=(5.0 * ncols + 1.8, panel_height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


#: legend entries longer than this are cut in the middle (a long artifact label would squeeze the panels to nothing;
#: the end keeps the precision)
LEGEND_CHARS = 40


def short_label(label: str) -> str:
    """``label`` cut in the middle to ``LEGEND_CHARS`` by an ellipsis (its end, the precision, kept)."""
    tail = LEGEND_CHARS // 3
    return label if len(label) <= LEGEND_CHARS else f"{label[: LEGEND_CHARS - tail - 1]}…{label[-tail:]}"


#: rows at most of a legend below the panels; entries past them are counted, not drawn
LEGEND_ROWS = 30


def shared_legend(fig: Figure, axes: list[Axes], fontsize: float = 8) -> None:
    """One legend for the panels, each label once, long ones cut to ``LEGEND_CHARS`` by an ellipsis, below them in
    as many columns as the figure's width holds (one column of 45 entries ran off a 4-inch figure), ``LEGEND_ROWS``
    deep at most, with an entry counting what did not fit. Not right of them: that legend's top is the figure's,
    so it covered the end of a long title ('(mJ, estimated)')."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    shown = list(handles.items())
    columns = max(1, int(fig.get_figwidth() * 72 / (fontsize * LEGEND_CHARS * 0.62 + 30)))  # a cut label and marker
    if len(shown) > columns * LEGEND_ROWS:
        cut = columns * LEGEND_ROWS - 1
        shown = [*shown[:cut], (f"... and {len(shown) - cut} more", Line2D([], [], linestyle="none"))]
    rows = -(-len(shown) // columns)
    fig.set_figheight(fig.get_figheight() + rows * fontsize * 1.75 / 72 + 0.3)  # the panels keep their height
    fig.legend([h for _, h in shown], [short_label(label) for label, _ in shown], loc="outside lower center",
               fontsize=fontsize, ncols=columns)


def tradeoff_figure(
    df: pd.DataFrame, x: Metric, y: Metric, panels: Sequence[tuple[str, pd.DataFrame]]
) -> Figure:
    """One figure for an objective pair with a panel per target context (and an all-targets panel)."""
    colors = palette(sorted(set(df.apply(series_name, axis=1))))
    fig, axes = panel_grid(len(panels), panel_height=4.0)
    for ax, (title, part) in zip(axes, panels):
        tradeoff_axes(ax, part, x, y, title, colors)
    shared_legend(fig, axes)
    fig.suptitle(f"{axis_label(y, df)} vs {axis_label(x, df)}", fontsize=11)
    return fig


def speedup_figure(panels: Sequence[tuple[str, pd.DataFrame]]) -> Figure | None:
    """MACs reduction (x) vs measured p50 speedup (y), log-log, one panel per target context.

    Each frame needs ``macs_reduction`` and ``speedup`` columns (see ``report.tables.with_speedup``),
    relative to the unpruned variant of the same context and precision. Sparse variants sit at a MACs
    reduction of 1 (dense kernels execute every zero). None when no variant has such a baseline.
    """
    parts = [(title, p[p["kind"] != "baseline"].dropna(subset=["macs_reduction", "speedup"])) for title, p in panels]
    parts = [(title, p) for title, p in parts if not p.empty]
    if not parts:
        return None
    names = sorted({n for _, p in parts for n in p.apply(series_name, axis=1)})
    colors = palette(names)
    hi = max(float(max(p["macs_reduction"].max(), p["speedup"].max())) for _, p in parts) * 1.3
    lo = min(float(min(p["macs_reduction"].min(), p["speedup"].min())) for _, p in parts) / 1.3
    fig, axes = panel_grid(len(parts), panel_height=4.6)
    for ax, (title, data) in zip(axes, parts):
        series = data.apply(series_name, axis=1)
        for name in sorted(set(series)):
            sel = series == name
            ax.scatter(
                data.loc[sel, "macs_reduction"], data.loc[sel, "speedup"], s=30, color=colors[name],
                marker=MARKERS.get(name.rsplit("/", 1)[1], "o"), label=name, alpha=0.85, zorder=3,
            )  # fmt: skip
        ax.plot([min(lo, 1), hi], [min(lo, 1), hi], color="0.4", ls="--", lw=1, label="speedup = MACs reduction")
        ax.axhline(1.0, color="0.6", lw=0.8)
        _plain_log(ax, "x")
        _plain_log(ax, "y")
        ax.set_xlim(min(lo, 1), hi)
        ax.set_ylim(min(lo, 1), hi)
        ax.set_xlabel("MACs reduction (baseline MACs / variant MACs)")
        ax.set_ylabel("measured speedup (baseline p50 / variant p50)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
    shared_legend(fig, axes)
    fig.suptitle("Does removing MACs make it faster? (speedup vs the unpruned variant, same precision)", fontsize=10)
    return fig
