"""A metric over tagged runs per (variant, target context), with detected change points.

Change points come from binary segmentation on the per-run values: split where the medians of the two
sides differ most (weighted by the sides' sizes), keep the split when the difference passes the same
run-level rule ``edgebench compare`` uses, then recurse on each side. The run is the unit of evidence:
the test compares the segments' medians against the run-to-run spread of the series itself (robust to
the steps it looks for; never below the runs' own p50 intervals), Bonferroni-corrected for the splits
tried; contended runs (``measure.contention``) are left out of timing series. A series too short to
estimate its spread (fewer than ``MIN_SERIES_RUNS`` runs) calls only steps
beyond the noise allowance; a deterministic metric (size, MACs) has no spread, so any step of at least the
minimum effect counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgebench.store.compare_match import disturbance
from edgebench.store.metrics import (
    DEFAULT_ALLOWANCE,
    DEFAULT_MIN_EFFECT,
    RUN_METRICS,
    TIMING_METRICS,
    context_label,
    get_metric,
)
from edgebench.store.significance import (
    MIN_SERIES_RUNS,
    Noise,
    at_least,
    effect_verdict,
    p50_se_floor,
    series_noise,
    t_two_sided_p,
)
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
    tags = [tags.split(", ")[-1] if tags else run_id for tags, run_id in zip(runs["tags"], runs["id"])]
    repeated = {tag for tag in tags if tags.count(tag) > 1}  # a CI job's repeats: main, main, candidate...
    labels = [f"{tag} {run_id[-6:]}" if tag in repeated else tag for tag, run_id in zip(tags, runs["id"])]
    frames = []
    for position, ((_, run), run_label) in enumerate(zip(runs.iterrows(), labels)):
        df = store.measurements(run["id"])
        df = df[(df["status"] == "ok") & np.isfinite(df[m.column].astype(float))]  # what was not measured is no point
        if df.empty:
            continue
        context = [context_label(t, b, n) for t, b, n in zip(df["target"], df["backend"], df["threads"])]
        if m.name == "energy":  # a switch of meter (a counter to an estimate) starts a series, not a change
            context = [f"{c} [{source}]" for c, source in zip(context, df["energy_source"])]
        df = df.assign(
            position=position,
            run_label=run_label,
            run_started_at=run["started_at"],
            value=df[m.column].astype(float) * m.scale,
            context=context,
            contended=[disturbance(d) is not None for d in df["details"]],
        )
        frames.append(df)
    columns = ["position", "run_id", "run_label", "run_started_at", "variant_id", "label", "target", "context", "value",
               "contended", "id"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].rename(columns={"id": "measurement_id"})


def detect_change_points(
    values: Sequence[float],
    min_effect_pct: float,
    higher_is_better: bool = False,
    *,
    noisy: bool = True,
    allowance_pct: float = 0.0,
    alpha: float = 0.01,
    sigma_floor: float = 0.0,
) -> list[ChangePoint]:
    """Change points of a per-run series (see module docstring).

    ``noisy``: the metric differs between runs of the same artifact (timing, energy, memory), so steps are
    tested against the series' spread (at least ``sigma_floor``, a log sd) or, for a short series, must
    reach ``allowance_pct``; otherwise every step of ``min_effect_pct`` counts.
    """
    vals = np.asarray(values, dtype=np.float64)
    noise = None
    if noisy and len(vals) >= MIN_SERIES_RUNS:
        noise = at_least(series_noise(vals, "runs", basis="runs"), sigma_floor, "the runs' own p50 intervals")
    floor = min_effect_pct if noise is not None or not noisy else max(min_effect_pct, allowance_pct)
    rule = _Rule(noise, floor / 100, higher_is_better, alpha / max(1, len(vals) - 1))
    found: list[ChangePoint] = []
    _segment(vals, 0, len(vals), rule, found)
    return sorted(found, key=lambda c: c.index)


@dataclass(frozen=True)
class _Rule:
    """When a split of a series is a change: its step reaches ``effect`` and, with a known spread, is significant."""

    noise: Noise | None
    effect: float
    higher: bool
    alpha: float

    def verdict(self, left: np.ndarray, right: np.ndarray) -> str | None:
        ratio = float(np.nanmedian(right) / np.nanmedian(left))
        verdict = effect_verdict(ratio, self.higher, self.effect)
        if verdict == "unchanged" or self.noise is None:
            return None if verdict == "unchanged" else verdict
        # the median of k runs has a standard error of about 1.2533 sigma / sqrt(k)
        se = 1.2533 * self.noise.sigma * np.sqrt(1 / len(left) + 1 / len(right))
        p = t_two_sided_p(np.log(ratio) / se, self.noise.df) if se > 0 else 0.0
        return verdict if p < self.alpha else None


def _segment(vals: np.ndarray, lo: int, hi: int, rule: _Rule, found: list[ChangePoint]) -> None:
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
    verdict = rule.verdict(vals[lo:best_k], vals[best_k:hi])
    if verdict is None:
        return
    ratio = np.nanmedian(vals[best_k:hi]) / np.nanmedian(vals[lo:best_k])
    found.append(ChangePoint(best_k, float((ratio - 1) * 100), verdict))
    _segment(vals, lo, best_k, rule, found)
    _segment(vals, best_k, hi, rule, found)


def series_change_points(
    store: Store,
    hist: pd.DataFrame,
    metric: str = "latency",
    min_effect_pct: float | None = None,
    allowance_pct: float = DEFAULT_ALLOWANCE,
) -> pd.DataFrame:
    """Detected change points per (variant, context) of a :func:`history_frame` table."""
    m = get_metric(metric)
    effect = min_effect_pct if min_effect_pct is not None else DEFAULT_MIN_EFFECT.get(m.name, 5.0)
    rows = []
    for (label, context), part in hist.groupby(["label", "context"], sort=True):
        part = part.sort_values("position").dropna(subset=["value"])
        if m.name in TIMING_METRICS:  # a contended run's timing is shown, never a change point's evidence
            part = part[~part["contended"].astype(bool)]
        floor = p50_se_floor(store.samples(int(i)) for i in part["measurement_id"]) if m.name == "latency" else 0.0
        found = detect_change_points(part["value"].to_list(), effect, m.direction == "max", noisy=m.name in RUN_METRICS,
                                     allowance_pct=allowance_pct if m.name in TIMING_METRICS else 0.0,
                                     sigma_floor=floor)  # fmt: skip
        for cp in found:
            at = part.iloc[cp.index]
            rows.append({"label": label, "context": context, "position": at["position"], "run_label": at["run_label"],
                         "run_id": at["run_id"], "change_pct": cp.change_pct, "verdict": cp.verdict})  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "context", "position", "run_label", "run_id", "change_pct", "verdict"])
