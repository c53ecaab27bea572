"""A metric over tagged runs per (variant, target context), with detected change points.

Change points come from binary segmentation on the per-run values: split where
the medians of the two sides differ most (weighted by the sides' sizes), keep the split when that difference
reaches the metric's minimum effect, then recurse on
each side. Medians of segments keep one noisy run from creating a change. For
latency the series searched is each run's floor quantile of raw samples (the
contention-robust statistic ``edgebench compare`` decides on); the page plots p50.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgebench.store.compare import floor_quantile_for
from edgebench.store.metrics import DEFAULT_MIN_EFFECT, context_label, get_metric
from edgebench.store.store import Store


@dataclass(frozen=True)
class ChangePoint:
    """The series changes between position ``index - 1`` and ``index``."""

    index: int
    change_pct: float
    verdict: str  # "regression" or "improvement"


def history_frame(
    store: Store,
    metric: str = "latency",
    name: str | None = None,
    tagged_only: bool = True,
    until_run: str | None = None,
) -> pd.DataFrame:
    """Long table: one row per (run, measurement) with ``value`` of ``metric`` and the run's position.

    Runs are ordered by start time; ``name`` keeps one experiment's runs; ``tagged_only`` keeps
    runs that carry a tag; ``until_run`` drops runs started after that one.
    """
    m = get_metric(metric)
    runs = store.runs()
    if name is not None:
        runs = runs[runs["name"] == name]
    last_id = store.get_run(until_run)["id"] if until_run is not None else None
    if last_id is not None:
        runs = runs[runs["started_at"] <= runs.loc[runs["id"] == last_id, "started_at"].max()]
    if tagged_only:
        runs = runs[(runs["tags"] != "") | (runs["id"] == last_id)]
    frames = []
    for position, (_, run) in enumerate(runs.iterrows()):
        df = store.measurements(run["id"])
        df = df[df["status"] == "ok"]
        if df.empty:
            continue
        df = df.assign(
            position=position,
            run_label=run["tags"].split(", ")[-1] if run["tags"] else run["id"],
            run_started_at=run["started_at"],
            value=df[m.column].astype(float) * m.scale,
            context=[context_label(t, b, n) for t, b, n in zip(df["target"], df["backend"], df["threads"])],
        )
        frames.append(df)
    columns = ["position", "run_id", "run_label", "run_started_at", "variant_id", "label", "target", "context", "value",
               "id"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].rename(columns={"id": "measurement_id"})


def detect_change_points(values: Sequence[float], min_effect_pct: float, higher_is_better: bool = False) -> list[ChangePoint]:
    """Change points of a per-run series (see module docstring)."""
    vals = np.asarray(values, dtype=np.float64)
    found: list[ChangePoint] = []
    _segment(vals, 0, len(vals), min_effect_pct / 100, higher_is_better, found)
    return sorted(found, key=lambda c: c.index)


def _segment(
    vals: np.ndarray,
    lo: int,
    hi: int,
    effect: float,
    higher: bool,
    found: list[ChangePoint],
) -> None:
    if hi - lo < 2:
        return
    best_k, best_score = None, 0.0
    for k in range(lo + 1, hi):
        left, right = np.nanmedian(vals[lo:k]), np.nanmedian(vals[k:hi])
        # weight the gap by segment sizes (as a two-sample statistic does) so tiny end segments do not win
        score = abs(np.log(right / left)) * np.sqrt((k - lo) * (hi - k) / (hi - lo)) if left > 0 and right > 0 else 0.0
        if score > best_score:
            best_k, best_score = k, score
    if best_k is None:
        return
    ratio = np.nanmedian(vals[best_k:hi]) / np.nanmedian(vals[lo:best_k])
    worse = 1 / ratio if higher else ratio
    verdict = "regression" if worse - 1 >= effect else "improvement" if 1 - worse >= effect else None
    if verdict is None:
        return
    found.append(ChangePoint(best_k, float((ratio - 1) * 100), verdict))
    _segment(vals, lo, best_k, effect, higher, found)
    _segment(vals, best_k, hi, effect, higher, found)


def _floor(samples: np.ndarray) -> float | None:
    return float(np.quantile(samples, floor_quantile_for(len(samples)))) if len(samples) else None


def series_change_points(
    store: Store, hist: pd.DataFrame, metric: str = "latency", min_effect_pct: float | None = None
) -> pd.DataFrame:
    """Detected change points per (variant, context) of a :func:`history_frame` table."""
    m = get_metric(metric)
    effect = min_effect_pct if min_effect_pct is not None else DEFAULT_MIN_EFFECT.get(m.name, 5.0)
    rows = []
    for (label, context), part in hist.groupby(["label", "context"], sort=True):
        part = part.sort_values("position").dropna(subset=["value"])
        values = part["value"].to_list()
        if m.name == "latency":  # detect on the contention-robust floor of each run's samples, as compare decides
            floors = [_floor(store.samples(int(i))) for i in part["measurement_id"]]
            values = [f if f is not None else v for f, v in zip(floors, values)]
        for cp in detect_change_points(values, effect, m.direction == "max"):
            at = part.iloc[cp.index]
            rows.append({"label": label, "context": context, "position": at["position"], "run_label": at["run_label"],
                         "run_id": at["run_id"], "change_pct": cp.change_pct, "verdict": cp.verdict})  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "context", "position", "run_label", "run_id", "change_pct", "verdict"])
