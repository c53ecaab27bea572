"""Data frames behind the report: target contexts, Pareto flags, speedups and budget winners."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from edgebench.report.pareto import pareto_mask
from edgebench.store.metrics import Metric, fpga_cost_metric

#: columns that make two measurements of one variant incomparable (a "target context")
CONTEXT = ("target", "backend", "threads", "scenario", "batch_size")
_OPTIONAL_CONTEXT = {"threads": "{} threads", "scenario": "{}", "batch_size": "batch {}"}
#: the selector option and panel that shows every target, with fronts across them
ALL_TARGETS = "all targets"
#: the energy column: its figures are measured or estimated (``energy_source``), and fronts keep the two apart
ENERGY = "energy_j_per_inference"


def context_titles(df: pd.DataFrame) -> pd.Series:
    """Panel title per row: target and backend, plus the settings that vary within the run."""
    parts = df["target"].astype(str) + " · " + df["backend"].astype(str)
    for column, fmt in _OPTIONAL_CONTEXT.items():
        if df[column].nunique(dropna=False) > 1:
            parts = parts + " · " + df[column].map(lambda v, f=fmt: f.format(v))
    return parts


def target_titles(df: pd.DataFrame) -> pd.Series:
    """Panel and selector title per row: its target and the backends the run measured there. The report's fronts are
    per target, as the terminal summary's and ``Results.pareto``'s: a target's backends compete (on this device,
    which deployment is best)."""
    backends = df.groupby("target")["backend"].agg(lambda b: ", ".join(sorted(set(b.astype(str)))))
    return df["target"].astype(str) + " · " + df["target"].map(backends)


def panels(df: pd.DataFrame, titles_of: Callable[[pd.DataFrame], pd.Series] = target_titles) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per target (or per ``titles_of`` group: ``context_titles`` for figures whose values are relative
    to one backend's baseline), plus 'all targets' when there is more than one."""
    titles = titles_of(df)
    out = [(title, df[titles == title]) for title in sorted(set(titles))]
    if len(out) > 1:
        out.append((ALL_TARGETS, df))
    return out


def is_estimated(source: object) -> bool:
    """Whether an energy figure's source is a model's estimate (``estimated:*``) rather than a meter's reading."""
    return str(source or "").startswith("estimated")


def finite_rows(part: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of ``part`` with a finite number in every one of ``columns``: an inf p50 from an imported or
    hand-edited store is as unknown as a null one, and cannot be placed on an axis or under a budget."""
    values = part[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return part[np.isfinite(values).all(axis=1)]


def front_rows(part: pd.DataFrame, x: Metric, y: Metric) -> pd.DataFrame:
    """The rows of ``part`` that may stand on a front of (x, y): both values finite, and, on an energy axis,
    measured energy only when any row has a measured figure. An estimate (TDP times time) is no evidence against a
    meter's reading, so it must not "dominate" one, and two fronts on one axis would read as one; a front of
    estimates is drawn only where nothing is measured, and its axis says so (:func:`energy_kind`)."""
    data = finite_rows(part, [x.column, y.column])
    if ENERGY in (x.column, y.column):
        estimated = data["energy_source"].map(is_estimated)
        if not estimated.all():
            data = data[~estimated]
    return data


def front_mask(part: pd.DataFrame, x: Metric, y: Metric) -> pd.Series:
    """True for the rows of ``part`` on the Pareto front of (x, y) among :func:`front_rows` (index of ``part``)."""
    data = front_rows(part, x, y)
    mask = pd.Series(False, index=part.index, name="pareto")
    mask[data.index] = pareto_mask(data, [x.column, y.column], [x.direction, y.direction])
    return mask


def energy_kind(rows: pd.DataFrame) -> str | None:
    """'estimated', 'measured and estimated' or None (measured, or no energy) for the energy figures in ``rows``:
    what an energy axis label must say."""
    known = rows[pd.to_numeric(rows[ENERGY], errors="coerce").notna()]
    estimated = known["energy_source"].map(is_estimated)
    if not estimated.any():
        return None
    return "estimated" if estimated.all() else "measured and estimated"


def pareto_flags(ok: pd.DataFrame, pairs: Sequence[tuple[Metric, Metric]], across: bool = False) -> pd.Series:
    """Per row, the objective pairs (e.g. 'accuracy/latency') it is Pareto-optimal for on its target (its backends
    compete), or across all targets when ``across``."""
    groups = pd.Series("", index=ok.index) if across else ok["target"].astype(str)
    flags = pd.Series([[] for _ in range(len(ok))], index=ok.index, dtype=object)
    for x, y in pairs:
        for group in set(groups):
            part = ok[groups == group]
            cost = fpga_cost_metric(part) if x.name == "latency" else x  # C-sim time is host time, not FPGA latency
            if cost.name == "latency" and "bops" in part:  # across targets: C simulations left out, as in the plots
                part = part[part["bops"].isna()]
            mask = front_mask(part, cost, y)
            for idx in mask.index[mask]:
                flags[idx] = [*flags[idx], f"{y.name}/{cost.name}"]
    return flags


def target_fronts(ok: pd.DataFrame, y: Metric) -> list[tuple[str, Metric, pd.DataFrame]]:
    """Per target (its backends compete), the cost axis and the rows on its Pareto front of ``y`` against that cost,
    sorted along it: p50 latency, or for an FPGA C simulation the counted bit operations (synthesised cycles where
    every row has them), since its p50 is host CPU time."""
    fronts = []
    for target, part in ok.groupby("target", sort=True):
        cost = fpga_cost_metric(part)
        front = part[front_mask(part, cost, y)]
        fronts.append((str(target), cost, front.sort_values(cost.column, kind="stable")))
    return fronts


def with_speedup(ok: pd.DataFrame) -> pd.DataFrame:
    """Add ``macs_reduction`` and ``speedup`` relative to the unpruned variant of the same context and precision.

    The reference is the measurement of the same target, backend, settings and precision whose variant is
    the baseline (no pruning, sparsity or factorisation); rows without one get NaN, as does an artifact another
    tool made without a parent (another model: it reduced nothing of this baseline's).
    """
    keys = [*CONTEXT, "precision"]
    base = ok[ok["kind"] == "baseline"].dropna(subset=["p50_ms", "macs"])
    base = base.drop_duplicates(subset=keys)[[*keys, "p50_ms", "macs"]]
    merged = ok.merge(base, on=keys, how="left", suffixes=("", "_base"))
    merged.index = ok.index
    out = ok.copy()
    out["macs_reduction"] = merged["macs_base"] / merged["macs"]
    out["speedup"] = merged["p50_ms_base"] / merged["p50_ms"]
    if "parent_id" in out.columns:
        unrelated = (out["kind"] == "external") & out["parent_id"].isna()
        out.loc[unrelated, ["macs_reduction", "speedup"]] = np.nan
    return out


def default_budgets(values: pd.Series, count: int = 4) -> list[float]:
    """Budgets spread log-evenly over the observed range, rounded up to two significant digits.

    Rounding up keeps the smallest budget above the best measured value, so no column is empty.
    """
    finite = pd.to_numeric(values, errors="coerce").astype(float)
    finite = finite[np.isfinite(finite) & (finite > 0)]  # an inf p50 would make every budget inf or nan
    if finite.empty:
        return []
    lo, hi = float(finite.min()), float(finite.max())
    raw = np.geomspace(lo, hi, count) if hi > lo else np.array([lo])
    steps = 10.0 ** (np.floor(np.log10(raw)) - 1)
    return sorted({round(float(v), 12) for v in np.ceil(raw / steps - 1e-9) * steps})


def best_under_budget(ok: pd.DataFrame, metric: Metric, budgets: Sequence[float]) -> pd.DataFrame:
    """Most accurate variant per target context whose ``metric`` is within each budget (cross-target table).

    Ties on accuracy go to the smaller ``metric``. Cells are 'label (accuracy, value)' or '—' when
    nothing fits. Budgets are in the metric's display unit.
    """
    data = finite_rows(ok, [metric.column, "accuracy"])
    titles = context_titles(ok).loc[data.index]
    rows = []
    for title in sorted(set(titles)):
        part = data[titles == title]
        row: dict[str, str] = {"target": title}
        for budget in budgets:
            fits = part[part[metric.column] * metric.scale <= budget]
            if fits.empty:
                row[f"≤ {budget:g}"] = "—"
                continue
            best = fits.sort_values(["accuracy", metric.column], ascending=[False, True]).iloc[0]
            value = best[metric.column] * metric.scale
            estimated = metric.name == "energy" and is_estimated(best.get("energy_source"))
            row[f"≤ {budget:g}"] = f"{best['label']} (acc {best['accuracy']:.3f}, {_fmt(value)}" + \
                (" estimated)" if estimated else ")")
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if 100 <= abs(value) < 1e9:
        return f"{value:,.0f}"
    return f"{value:.3g}"  # beyond 1e9 as 1.23e+300, not 300 digits


def fmt_cell(value: object) -> str:
    """Table cell text: numbers under 100 (and from 1e9) to 3 significant digits, others whole with thousands
    separators, missing as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float | np.floating):
        return _fmt(float(value))
    return str(value)
