"""Regression comparison of two stored runs (``edgebench compare BASELINE CANDIDATE``).

Results are matched by (variant id, target, backend, settings). Per metric the
change is reported with its confidence; latency is decided on raw samples (see
``significance``), other metrics on their single values against a per-metric
minimum effect. Differences in machine, library versions or settings are
listed as context warnings rather than silently compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from edgebench.store.metrics import DEFAULT_MIN_EFFECT, context_label, get_metric
from edgebench.store.schema import StoreError
from edgebench.store.significance import Estimate, Verdict, decide, mean_ratio, proportion_change_p, quantile_ratio
from edgebench.store.store import Store

#: default minimum effects: percent of relative change, accuracy in percentage points
COMPARED = tuple(DEFAULT_MIN_EFFECT)
#: the lowest quantile whose ratio decides latency verdicts (robust to contention on shared machines) ...
FLOOR_QUANTILE = 0.02
#: ... raised so that at least this many samples lie below it
FLOOR_MIN_SAMPLES = 20
_MACHINE_KEYS = ("cpu_model", "cpu_cores_logical", "cpu_cores_physical", "hostname", "os", "governor", "power_mode")
_SETTING_KEYS = ("threads", "batch_size", "scenario", "settings_precision")


@dataclass
class MetricChange:
    """One metric of one matched result."""

    metric: str
    baseline: float | None
    candidate: float | None
    change: float | None  # percent (accuracy: percentage points)
    ci_low: float | None
    ci_high: float | None
    confidence: float | None  # 1 - p-value of the test, where one applies
    verdict: Verdict
    min_effect: float
    method: str
    note: str = ""


@dataclass
class MatchedResult:
    """Baseline and candidate measurements of the same variant, target, backend and settings."""

    label: str
    variant_id: str
    context: str
    changes: list[MetricChange]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """True when any metric regressed."""
        return any(c.verdict == "regression" for c in self.changes)


@dataclass
class Comparison:
    """Everything ``edgebench compare`` prints."""

    baseline_run: str
    candidate_run: str
    results: list[MatchedResult]
    unmatched: list[str]
    warnings: list[str]
    min_effect: dict[str, float]
    alpha: float

    @property
    def regressions(self) -> list[MatchedResult]:
        """Matched results with at least one regressed metric."""
        return [r for r in self.results if r.regressed]

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form (for ``--format json``)."""
        out = asdict(self)
        out["regression_count"] = len(self.regressions)
        return _finite(out)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def parse_min_effects(items: list[str] | None) -> dict[str, float]:
    """``["latency=3", "accuracy=1"]`` -> defaults overridden; unknown names raise with the allowed ones."""
    effects = dict(DEFAULT_MIN_EFFECT)
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in effects and get_metric(name).name in effects:
            name = get_metric(name).name
        if not sep or name not in effects:
            raise StoreError(f"--min-effect {item!r}: use METRIC=PERCENT with METRIC one of {', '.join(COMPARED)}")
        try:
            effects[name] = float(value.rstrip("%"))
        except ValueError:
            raise StoreError(f"--min-effect {item!r}: {value!r} is not a number") from None
    return effects


def _key(row: pd.Series) -> tuple:
    settings = json.dumps(row["settings"], sort_keys=True, default=str)
    return (row["variant_id"], row["target"], row["backend"], settings)


def _value(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return None if value is None or pd.isna(value) else float(value)


def _pct(est: Estimate) -> tuple[float, float, float]:
    return (est.ratio - 1) * 100, (est.ci_low - 1) * 100, (est.ci_high - 1) * 100


def _from_estimate(
    metric: str, a: float | None, b: float | None, est: Estimate, effect: float, alpha: float, method: str
) -> MetricChange:
    higher = get_metric(metric).direction == "max"
    change, lo, hi = _pct(est)
    confidence = None if est.p_value is None else 1 - est.p_value
    verdict = decide(est, higher, effect / 100, alpha)
    return MetricChange(metric, a, b, change, lo, hi, confidence, verdict, effect, method)


def _threshold(metric: str, a: float | None, b: float | None, effect: float, alpha: float) -> MetricChange:
    if a is None or b is None or a == 0:
        return MetricChange(metric, a, b, None, None, None, None, "n/a", effect, "missing value")
    ratio = b / a
    return _from_estimate(metric, a, b, Estimate(ratio, ratio, ratio, None), effect, alpha, "threshold")


def _accuracy(base: pd.Series, cand: pd.Series, effect: float) -> MetricChange:
    a, b = _value(base, "accuracy"), _value(cand, "accuracy")
    if a is None or b is None:
        return MetricChange("accuracy", a, b, None, None, None, None, "n/a", effect, "missing value")
    change = (b - a) * 100
    n_a, n_b = _value(base, "n_eval"), _value(cand, "n_eval")
    p = proportion_change_p(a, int(n_a), b, int(n_b)) if n_a and n_b else None
    verdict: Verdict = "regression" if -change >= effect else "improvement" if change >= effect else "unchanged"
    return MetricChange(
        "accuracy", a, b, change, None, None, None if p is None else 1 - p, verdict, effect,
        "threshold on the same test set (confidence: two-proportion z-test)",
    )  # fmt: skip


def _column(metric: str) -> str:
    return get_metric(metric).column


def compare_pair(
    base: pd.Series,
    cand: pd.Series,
    base_samples: np.ndarray,
    cand_samples: np.ndarray,
    min_effect: Mapping[str, float],
    alpha: float = 0.01,
    floor_quantile: float = FLOOR_QUANTILE,
) -> list[MetricChange]:
    """Per-metric changes between two measurements of the same variant/target/settings."""
    if len(base_samples) > 1 and len(cand_samples) > 1:
        changes = _latency_changes(base, cand, base_samples, cand_samples, min_effect, alpha, floor_quantile)
    else:
        changes = [
            _threshold(metric, _value(base, _column(metric)), _value(cand, _column(metric)), min_effect[metric], alpha)
            for metric in ("latency", "p99", "throughput")
        ]
    energy_a, energy_b = _value(base, _column("energy")), _value(cand, _column("energy"))
    source_a, source_b = base.get("energy_source"), cand.get("energy_source")
    if source_a != source_b and energy_a is not None and energy_b is not None:
        changes.append(MetricChange("energy", energy_a, energy_b, None, None, None, None, "n/a", min_effect["energy"],
                                    f"energy sources differ: {source_a} vs {source_b}"))  # fmt: skip
    else:
        changes.append(_threshold("energy", energy_a, energy_b, min_effect["energy"], alpha))
    for metric in ("memory", "size"):
        changes.append(_threshold(metric, _value(base, _column(metric)), _value(cand, _column(metric)),
                                  min_effect[metric], alpha))
    changes.append(_accuracy(base, cand, min_effect["accuracy"]))
    return changes


def floor_quantile_for(n_samples: int, floor_quantile: float = FLOOR_QUANTILE) -> float:
    """The decision quantile for ``n_samples``: ``floor_quantile``, raised to keep FLOOR_MIN_SAMPLES below it."""
    return min(0.5, max(floor_quantile, FLOOR_MIN_SAMPLES / max(n_samples, 1)))


def _latency_changes(
    base: pd.Series,
    cand: pd.Series,
    a: np.ndarray,
    b: np.ndarray,
    min_effect: Mapping[str, float],
    alpha: float,
    floor_quantile: float,
) -> list[MetricChange]:
    """p50, p99 and throughput changes; verdicts must be confirmed by the fast tail (the floor quantile).

    Contention on a shared machine inflates the median, tail and mean of a run but not its fastest
    iterations, while a real slowdown shifts them all. So the p50 verdict is decided on the floor
    quantile's ratio, and a p99 or throughput verdict stands only when the floor agrees. (On this
    project's 2-core shared machine, p10 gave 3 false alarms in 100 A/A pairs, p2 one; see
    scripts/bench_regression_detection.py.)
    """
    q = floor_quantile_for(min(len(a), len(b)), floor_quantile)
    floor = quantile_ratio(a, b, q=q, confidence=1 - alpha)
    floor_verdict = decide(floor, False, min_effect["latency"] / 100, alpha)
    floor_text = f"p{100 * q:.3g} {100 * (floor.ratio - 1):+.1f}%"
    mw = "Mann-Whitney U + bootstrap CI"
    p50 = _from_estimate("latency", _value(base, "p50_ms"), _value(cand, "p50_ms"),
                         quantile_ratio(a, b, q=0.5, confidence=1 - alpha), min_effect["latency"], alpha,
                         f"{mw}; decided on the p{100 * q:.3g} ratio (contention-robust)")  # fmt: skip
    p50.note = floor_text
    if p50.verdict != floor_verdict and floor_verdict == "unchanged":
        p50.note += ": the p50 shift is not in the fastest iterations (contention in one run?)"
    p50.verdict = floor_verdict
    p99 = _from_estimate("p99", _value(base, "p99_ms"), _value(cand, "p99_ms"),
                         quantile_ratio(a, b, q=0.99, confidence=1 - alpha), min_effect["p99"], alpha, mw)  # fmt: skip
    lat = mean_ratio(a, b, confidence=1 - alpha)
    est = Estimate(1 / lat.ratio, 1 / lat.ci_high, 1 / lat.ci_low, lat.p_value)
    throughput = _from_estimate("throughput", _value(base, "throughput_ips"), _value(cand, "throughput_ips"), est,
                                min_effect["throughput"], alpha, "Welch t on mean latency")  # fmt: skip
    for change in (p99, throughput):
        if change.verdict != "unchanged" and change.verdict != floor_verdict:
            change.note = f"not confirmed by the fastest iterations ({floor_text}): contention in one run?"
            change.verdict = "unchanged"
    return [p50, p99, throughput]


def _dict_diff(what: str, a: Mapping[str, Any], b: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    keys = keys or tuple(sorted(set(a) | set(b)))
    return [f"{what} {k} differs: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _flat_versions(machine: Mapping[str, Any]) -> dict[str, Any]:
    libs = machine.get("packages") or {}
    return dict(libs) if isinstance(libs, Mapping) else {}


def compare_runs(
    store: Store,
    baseline: str,
    candidate: str,
    min_effect: Mapping[str, float] | None = None,
    alpha: float = 0.01,
    floor_quantile: float = FLOOR_QUANTILE,
    repeats: bool = False,
) -> Comparison:
    """Compare every result of ``candidate`` with the same result of ``baseline`` (run ids or tags).

    With ``repeats`` a tag names all its runs, and per result the repeat with the fastest floor
    (the least disturbed by other work on the machine) is compared: contention only ever slows a
    run down, so the best of k runs measured at different times is the most faithful one.
    """
    effects = {**DEFAULT_MIN_EFFECT, **(min_effect or {})}
    base_run, base_df, base_by_key = _side(store, baseline, repeats, floor_quantile)
    cand_run, cand_df, cand_by_key = _side(store, candidate, repeats, floor_quantile)
    warnings = _dict_diff("machine", base_run["machine"], cand_run["machine"], _MACHINE_KEYS)
    warnings += _dict_diff("library", _flat_versions(base_run["machine"]), _flat_versions(cand_run["machine"]))
    results, unmatched = [], []
    for key, (cand, cand_samples) in cand_by_key.items():
        context = context_label(cand["target"], cand["backend"], cand["threads"])
        if key not in base_by_key:
            unmatched.append(_unmatched_reason(cand, base_df))
            continue
        base, base_samples = base_by_key[key]
        changes = compare_pair(base, cand, base_samples, cand_samples, effects, alpha, floor_quantile)
        row_warnings = _dict_diff("runtime", base["runtime"] or {}, cand["runtime"] or {})
        results.append(MatchedResult(str(cand["label"]), str(cand["variant_id"]), context, changes, row_warnings))
    for key, (base, _) in base_by_key.items():
        if key not in cand_by_key and _same_job(base, cand_df).empty:  # settings mismatches are listed once above
            unmatched.append(f"{base['label']} on {base['target']}/{base['backend']}: only in the baseline run")
    return Comparison(base_run["id"], cand_run["id"], results, unmatched, warnings, effects, alpha)


def _side(
    store: Store, ref: str, repeats: bool, floor_quantile: float
) -> tuple[dict[str, Any], pd.DataFrame, dict[tuple, tuple[pd.Series, np.ndarray]]]:
    """Latest run of one side, its ok results, and per result key the least-disturbed repeat with samples."""
    run_ids = store.resolve_runs(ref) if repeats else [store.resolve_run(ref)]
    df = pd.concat([store.measurements(r).query("status == 'ok'") for r in run_ids], ignore_index=True)
    best: dict[tuple, tuple[pd.Series, np.ndarray, float]] = {}
    for _, row in df.iterrows():
        samples = store.samples(int(row["id"]))
        floor = float(np.quantile(samples, floor_quantile_for(len(samples), floor_quantile))) if len(samples) else np.inf
        key = _key(row)
        if key not in best or floor < best[key][2]:
            best[key] = (row, samples, floor)
    run = store.get_run(run_ids[-1])
    if len(run_ids) > 1:
        run = {**run, "id": ", ".join(run_ids)}
    return run, df, {k: (row, samples) for k, (row, samples, _) in best.items()}


def _same_job(row: pd.Series, other: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``other`` with the same variant, target and backend (any settings)."""
    return other[
        (other["variant_id"] == row["variant_id"]) & (other["target"] == row["target"]) & (other["backend"] == row["backend"])
    ]


def _unmatched_reason(cand: pd.Series, base_df: pd.DataFrame) -> str:
    """Why a candidate result has no baseline counterpart: a settings difference (flagged) or none measured."""
    where = f"{cand['label']} on {cand['target']}/{cand['backend']}"
    same = _same_job(cand, base_df)
    if same.empty:
        return f"{where}: only in the candidate run"
    base = same.iloc[0]
    diffs = [f"{k} {base[k]} -> {cand[k]}" for k in _SETTING_KEYS if str(base[k]) != str(cand[k])]
    return f"{where}: settings mismatch, not compared ({'; '.join(diffs) or 'other settings differ'})"
