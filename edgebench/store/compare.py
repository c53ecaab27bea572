"""Regression comparison of two stored runs (``edgebench compare BASELINE CANDIDATE``).

Results are matched by (variant label, target, backend, settings): a variant rebuilt from a changed model, dataset
or build keeps its label and is compared with what it replaces (its new id is listed as context), and the lookback
reads earlier runs of the same variant id only. A baseline result the candidate failed or lacks, and a metric the
baseline measured and the candidate did not ("lost"), are listed for the gate. Every measured metric (p50, p99,
throughput, energy, peak RSS) is decided on per-run values against the run-to-run spread of that result
(``significance``): the runs of each side with ``repeats``, and earlier runs of the same result on the same
machine (the lookback). With one run a side and too little history the spread is unknown: only a change
beyond the noise allowance is called, without a confidence. Artifact size is compared exactly, accuracy
against a minimum effect. Differences in machine, library versions, experiment or model, or settings are listed
as context warnings rather than silently compared. Pairing the results and reading each side's runs and the
lookback are ``compare_match``'s; this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from edgebench.job import CONFIDENCE
from edgebench.order_statistics import runs_for_an_interval
from edgebench.store.compare_match import (
    MissingResult,
    Side,
    _column,
    _dict_diff,
    _history_key,
    _value,
    at_one_speed,
    devices_differ,
    disturbance,
    lookback_values,
    match_runs,
    refuse_shared_runs,
    tag_of_several_runs,
)
from edgebench.store.metrics import (
    DEFAULT_ALLOWANCE,
    DEFAULT_LOOKBACK,
    DEFAULT_MIN_EFFECT,
    RUN_METRICS,
    TIMING_METRICS,
    column_unit,
    context_label,
    get_metric,
    with_default_min_effects,
)
from edgebench.store.schema import StoreError
from edgebench.store.significance import (
    MIN_SERIES_RUNS,
    Basis,
    Decision,
    Verdict,
    at_least,
    decide_runs,
    decide_threshold,
    p50_se_floor,
    pool,
    proportion_change_p,
    replicate_noise,
    series_noise,
)
from edgebench.store.store import Store

COMPARED = tuple(DEFAULT_MIN_EFFECT)
#: machine-speed differences below this (percent) are reported as the same speed
SAME_SPEED_PCT = 2.0


@dataclass
class MetricChange:
    """One metric of one matched result: the change, the verdict, and what the verdict rests on."""

    metric: str
    baseline: float | None  # geometric mean over the side's runs
    candidate: float | None
    change: float | None  # percent (accuracy: percentage points)
    ci_low: float | None
    ci_high: float | None
    confidence: float | None  # 1 - p of the run-level test; None where the run-to-run spread is unknown
    verdict: Verdict
    min_effect: float
    basis: Basis
    note: str = ""
    runs: tuple[int, int] = (1, 1)  # runs of each side the verdict rests on
    noise_pct: float | None = None  # the run-to-run spread used (percent of the value)


@dataclass
class MatchedResult:
    """Baseline and candidate measurements of the same variant, target, backend and settings."""

    label: str
    variant_id: str
    context: str
    changes: list[MetricChange]
    warnings: list[str] = field(default_factory=list)
    #: the stored measurements behind each side (baseline's, candidate's), oldest run first
    measurement_ids: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))

    @property
    def regressed(self) -> bool:
        """True when any metric regressed."""
        return any(c.verdict == "regression" for c in self.changes)


@dataclass
class Comparison:
    """Everything ``edgebench compare`` prints, and what its verdicts rest on."""

    baseline_run: str
    candidate_run: str
    results: list[MatchedResult]
    unmatched: list[str]
    warnings: list[str]
    min_effect: dict[str, float]
    alpha: float
    allowance: float = DEFAULT_ALLOWANCE
    #: how the verdicts were reached, in one sentence (the Markdown and the table say it)
    method: str = ""
    #: each side's machine-speed index (reference workload inferences/s; ``measure.reference_workload``)
    machine_speed: tuple[float | None, float | None] = (None, None)
    #: baseline results the candidate failed or lacks (also in ``unmatched``, as text)
    missing: list[MissingResult] = field(default_factory=list)
    #: how the hardware of the two sides' runs differs ("" where it is one kind): their timings are not decided
    other_hardware: str = ""

    @property
    def speed_note(self) -> str:
        """How the machine's own speed differed between the sides' runs, in words ("" when unknown)."""
        base, cand = self.machine_speed
        if not base or not cand:
            return ""
        if self.other_hardware:  # two machines' indices say which is faster, not how either one's speed moved
            return (f"the sides ran on different machines ({self.other_hardware}), so no speed of one machine is "
                    f"compared (reference workload: baseline {base:.0f}/s, candidate {cand:.0f}/s)")
        change = 100 * (base / cand - 1)  # positive: the candidate's run took longer on the same workload
        how = (f"the machine was {abs(change):.1f}% {'slower' if change > 0 else 'faster'} during the candidate run"
               if abs(change) >= SAME_SPEED_PCT else "the machine ran at the same speed")
        return f"{how} (reference workload: baseline {base:.0f}/s, candidate {cand:.0f}/s)"

    @property
    def regressions(self) -> list[MatchedResult]:
        """Matched results with at least one regressed metric."""
        return [r for r in self.results if r.regressed]

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form (for ``--format json``)."""
        out = asdict(self)
        out["regression_count"] = len(self.regressions)
        for result in out["results"]:  # what the numbers are in: a consumer need not know the store's columns
            for change in result["changes"]:
                change["unit"] = column_unit(change["metric"])
                change["change_unit"] = "percentage points" if change["metric"] == "accuracy" else "%"
        return _finite(out)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def parse_levels(option: str, items: Sequence[str] | None) -> dict[str, float]:
    """``["latency=2", ...]`` -> ``{"latency": 2.0}`` (metric names or store columns); a bad item is one error
    naming ``option``, the form and the metrics compare judges."""
    levels = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            metric, number = get_metric(name.strip()).name, float(value.strip().rstrip("%"))
        except (StoreError, ValueError):
            metric, number = "", -1.0
        if metric not in COMPARED or not number >= 0 or number == float("inf"):  # nan passed `number < 0`
            raise StoreError(f"{option} {item!r}: use METRIC=PERCENT (accuracy: points), a number >= 0, with METRIC "
                             f"one of {', '.join(COMPARED)}")
        if metric == "accuracy" and number > 100:  # accuracy moves by at most 100 points: the level could never fire
            raise StoreError(f"{option} {item!r}: accuracy levels are percentage points, and accuracy moves by at most "
                             "100 of them; give a level of 100 or less (e.g. accuracy=2 for two points)")
        if metric in levels:  # else the last one silently wins
            raise StoreError(f"{option} {metric} is given twice ({levels[metric]:g} and {number:g}); give it once")
        levels[metric] = number
    return levels


def _geomean(values: list[float]) -> float | None:
    positive = [v for v in values if v > 0]
    if positive and len(set(positive)) == 1:  # exp(log(x)) is not x: a size of 5000 bytes read 5000.000000000004
        return float(positive[0])
    return float(np.exp(np.mean(np.log(positive)))) if positive else None


def metric_change(metric: str, base: list[float], cand: list[float], decision: Decision, effect: float,
                  noise_pct: float | None = None) -> MetricChange:
    """A :class:`MetricChange` from a decision on per-run (or per-round) values of both sides, with the spread of
    one run (or round) the decision assumed."""
    def pct(ratio: float | None) -> float | None:
        return None if ratio is None else (ratio - 1) * 100

    a, b = _geomean(base), _geomean(cand)
    return MetricChange(metric, a, b, pct(decision.ratio), pct(decision.ci_low),
                        pct(decision.ci_high), decision.confidence, decision.verdict, effect, decision.basis,
                        decision.note, (len(base), len(cand)), noise_pct)  # fmt: skip


def _accuracy(base: pd.Series, cand: pd.Series, effect: float) -> MetricChange:
    a, b = _value(base, "accuracy"), _value(cand, "accuracy")
    if a is None or b is None:
        return MetricChange("accuracy", a, b, None, None, None, None, "n/a", effect, "missing", "missing value")
    change = (b - a) * 100
    n_a, n_b = _value(base, "n_eval"), _value(cand, "n_eval")
    p = proportion_change_p(a, int(n_a), b, int(n_b)) if n_a and n_b else None
    verdict: Verdict = "regression" if -change >= effect else "improvement" if change >= effect else "unchanged"
    return MetricChange("accuracy", a, b, change, None, None, None if p is None else 1 - p, verdict, effect, "threshold",
                        "threshold on the same test set (confidence: two-proportion z-test)")  # fmt: skip


def run_metric_change(
    metric: str,
    base: Side,
    cand: Side,
    history: list[float],
    effect: float,
    alpha: float,
    allowance: float,
    other_hardware: str = "",
) -> MetricChange:
    """Decide one measured metric on the runs of both sides, with the run-to-run spread from the runs
    themselves and ``history`` (earlier runs of this result on this machine, oldest first).

    Timing and energy are decided on uncontended runs of one kind of machine only (``other_hardware``: how the
    sides' machines differ); a side left without one is not decided. A metric neither side measured (energy on a
    target without a meter) is n/a, whatever disturbed the runs.
    """
    if not base.values(metric) and not cand.values(metric):
        return metric_change(metric, [], [], Decision("n/a", None, None, None, None, "missing",
                                                      "not measured on either side"), effect)
    if metric in TIMING_METRICS and other_hardware:
        return _undecided(metric, base, cand, effect, f"measured on different machines ({other_hardware}): one "
                          "machine's timings are no baseline for another's", "other machine")
    if metric in TIMING_METRICS:
        all_base, all_cand = base, cand
        base, cand = base.undisturbed(), cand.undisturbed()
        if not base.rows or not cand.rows:
            side, rows = ("baseline", all_base.rows) if not base.rows else ("candidate", all_cand.rows)
            return _undecided(metric, all_base, all_cand, effect, disturbance(rows[-1].get("details"), f"the {side}'s"))
        base, cand, slower = at_one_speed(base, cand)
        if slower is not None:
            return _undecided(metric, all_base, all_cand, effect, slower)
    if metric == "memory" and (executors := _executors_differ(base, cand)):  # README: compare it within one executor
        return _undecided(metric, base, cand, effect, f"measured under other executors ({executors}): a Ray worker's "
                          "imports count in the peak RSS of the jobs forked from it", "executors")
    a, b = base.values(metric), cand.values(metric)
    lookback = series_noise(history) if len(history) >= MIN_SERIES_RUNS else None
    noise = pool(replicate_noise([a, b], "runs a side"), lookback)
    short = _too_few_runs(metric, base, cand) if noise is None else None
    if short is not None:  # no spread to judge by, and a window that cannot even bound its own percentile
        return _undecided(metric, base, cand, effect, short, "short window")
    if metric == "latency" and noise is not None:  # never more alike than each run's own p50 interval allows
        noise = at_least(noise, p50_se_floor(base.samples + cand.samples), "the runs' own p50 intervals")
    higher = get_metric(metric).direction == "max"
    allowed = allowance if metric in TIMING_METRICS else 0.0
    decision = decide_runs(a, b, noise, higher_is_better=higher, min_effect=effect / 100, alpha=alpha,
                           allowance=allowed / 100)
    if noise is None and 0 < len(history) < MIN_SERIES_RUNS:
        decision = Decision(decision.verdict, decision.ratio, None, None, None, decision.basis,
                            f"{decision.note} ({len(history)} earlier run(s) here, {MIN_SERIES_RUNS} needed)")
    return metric_change(metric, a, b, decision, effect, None if noise is None else noise.pct)


def _executors_differ(base: Side, cand: Side) -> str | None:
    """``local vs ray`` where the two sides' results were measured under different executors, else None."""
    sides = [sorted({str(row.get("ran_on")).split()[0] for row in side.rows if row.get("ran_on")}) for side in (base, cand)]
    return f"{', '.join(sides[0])} vs {', '.join(sides[1])}" if sides[0] and sides[1] and sides[0] != sides[1] else None


#: the quantile each percentile metric is
_QUANTILE = {"latency": 0.5, "p99": 0.99}


def _too_few_runs(metric: str, base: Side, cand: Side) -> str | None:
    """Why a side's latest window cannot be decided on for a percentile: fewer runs than its interval needs (a p99
    of 50 runs is the slowest one or two), or None."""
    q = _QUANTILE.get(metric)
    if q is None:
        return None
    for side, rows in (("baseline", base.rows), ("candidate", cand.rows)):
        n, confidence = _value(rows[-1], "n_samples"), _value(rows[-1], "ci_confidence") or CONFIDENCE
        needed = runs_for_an_interval(q, confidence)
        if n is not None and n < needed:
            return (f"the {side}'s timed window has {n:.0f} runs, fewer than the {needed} a p{round(q * 100)} "
                    f"interval needs at {confidence:.0%}, and no run-to-run spread is known")
    return None


def _undecided(metric: str, base: Side, cand: Side, effect: float, why: str,
               basis: Basis = "contended") -> MetricChange:
    """A metric with no run on one side that can be decided on (``why``: disturbed, ``short window``: too few runs
    for its percentile, ``executors``: memory measured under different executors, ``other machine``: timings of two
    kinds of machine): the change is shown, never called."""
    a, b = base.values(metric), cand.values(metric)
    mean_a, mean_b = _geomean(a), _geomean(b)
    ratio = mean_b / mean_a if mean_a and mean_b else None
    decision = Decision("undecided", ratio, None, None, None, basis, f"not decided: {why}")
    return metric_change(metric, a, b, decision, effect)


def compare_pair(base: Side, cand: Side, history: Mapping[str, list[float]], min_effect: Mapping[str, float],
                 alpha: float = 0.01, allowance: float = DEFAULT_ALLOWANCE,
                 other_hardware: str = "") -> list[MetricChange]:
    """Per-metric changes between the runs of both sides of one result (same variant, target, settings); timings
    of two kinds of machine (the runs', ``other_hardware``, or the devices' the measurements ran on) undecided."""
    other_hardware = other_hardware or devices_differ(base, cand)
    changes = []
    for metric in RUN_METRICS:
        change = run_metric_change(metric, base, cand, history.get(metric, []), min_effect[metric], alpha, allowance,
                                   other_hardware)
        changes.append(as_metered(change, base, cand, min_effect["energy"]) if metric == "energy" else change)
    return one_sided(changes + fixed_changes(base, cand, min_effect), base, cand)


def as_metered(change: MetricChange, base: Side, cand: Side, effect: float) -> MetricChange:
    """The energy ``change`` as its meters allow: two meters' figures are not one series, and an estimate is noted
    as such (a model's figure, never gated as a counter's); the stored and the re-measured comparison alike."""
    if has_energy_of_two_meters(base, cand):
        return energy_not_compared(base, cand, effect)
    source = str(cand.rows[-1].get("energy_source") or "") if cand.rows else ""
    if source.startswith("estimated"):
        return replace(change, note=f"{source}" + (f"; {change.note}" if change.note else ""))
    return change


def one_sided(changes: list[MetricChange], base: Side, cand: Side) -> list[MetricChange]:
    """``changes`` with each metric that only one side measured said so: "lost" where the baseline has it and
    the candidate not (a gated loss, not an unknown), a note where only the candidate has it."""
    out = []
    for c in changes:
        had, has = bool(base.values(c.metric)), bool(cand.values(c.metric))
        if c.verdict == "n/a" and had and not has:
            c = replace(c, verdict="lost", note="measured in the baseline, not in the candidate")
        elif c.verdict == "n/a" and has and not had:
            c = replace(c, note="not measured in the baseline (new in the candidate)")
        out.append(c)
    return out


def shown_name(change: MetricChange) -> str:
    """The metric's name as tables show it: an estimated energy says so."""
    return f"{change.metric} (estimated)" if change.metric == "energy" and change.note.startswith("estimated") \
        else change.metric


def worth_a_row(change: MetricChange) -> bool:
    """Whether a compared metric is worth a row: anything but an n/a with no value on either side."""
    return change.verdict != "n/a" or change.baseline is not None or change.candidate is not None


def energy_not_compared(base: Side, cand: Side, effect: float) -> MetricChange:
    """Energy of two sides read by different meters: not compared (a switch from a counter to an estimate is no
    change of the model), but both figures are shown with the meters that gave them."""
    sources = f"{base.rows[-1].get('energy_source')} vs {cand.rows[-1].get('energy_source')}"
    return MetricChange("energy", _geomean(base.values("energy")), _geomean(cand.values("energy")), None, None, None,
                        None, "n/a", effect, "missing", f"energy sources differ: {sources}")


def fixed_changes(base: Side, cand: Side, min_effect: Mapping[str, float]) -> list[MetricChange]:
    """The metrics every run of an artifact reports alike: its size (exactly) and accuracy (on the same test set)."""
    size = decide_threshold(_value(base.rows[-1], _column("size")), _value(cand.rows[-1], _column("size")),
                            higher_is_better=False, min_effect=min_effect["size"] / 100)
    return [metric_change("size", base.values("size")[-1:], cand.values("size")[-1:], size, min_effect["size"]),
            _accuracy(base.rows[-1], cand.rows[-1], min_effect["accuracy"])]


def has_energy_of_two_meters(base: Side, cand: Side) -> bool:
    """Whether the two sides' energy figures come from different meters."""
    sources = {row.get("energy_source") for row in base.rows + cand.rows if _value(row, _column("energy")) is not None}
    return len(sources) > 1


def compare_runs(
    store: Store,
    baseline: str,
    candidate: str,
    min_effect: Mapping[str, float] | None = None,
    alpha: float = 0.01,
    repeats: bool = False,
    allowance: float = DEFAULT_ALLOWANCE,
    lookback: int = DEFAULT_LOOKBACK,
) -> Comparison:
    """Compare every result of ``candidate`` with the same result of ``baseline`` (run ids or tags).

    With ``repeats`` a tag names all its runs, and each side's runs are the evidence (their spread is
    the run-to-run noise). ``lookback`` earlier runs on the candidate's machine add their spread per
    result (0: none); ``allowance`` (percent) is the change a single-run comparison must exceed when
    that spread is unknown.
    """
    effects = with_default_min_effects(min_effect)
    base_ids = store.resolve_runs(baseline) if repeats else [store.resolve_run(baseline)]
    cand_ids = store.resolve_runs(candidate) if repeats else [store.resolve_run(candidate)]
    refuse_shared_runs(base_ids, cand_ids, baseline, candidate)
    matching = match_runs(store, base_ids, cand_ids)
    if not repeats:
        hint = "pass --repeats to decide on all of them (their spread is the run-to-run noise)"
        matching.warnings += [line for name, ids in ((baseline, base_ids), (candidate, cand_ids))
                              for line in tag_of_several_runs(store, name, ids[0], hint)]
    history = lookback_values(store, matching.candidate_run, exclude=set(cand_ids), limit=lookback)
    results = [matched_result(base, cand, compare_pair(base, cand, history.get(_history_key(cand.rows[-1]), {}),
                                                       effects, alpha, allowance, matching.other_hardware))
               for _, base, cand in matching.pairs]
    speeds = (machine_speed(store, base_ids), machine_speed(store, cand_ids))
    base_read, cand_read = (len({row["run_id"] for pair in matching.pairs for row in pair[i].rows}) or len(ids)
                            for i, ids in ((1, base_ids), (2, cand_ids)))  # a run left out of every result not counted
    method = (f"measured metrics decided on per-run values: {base_read} baseline and {cand_read} candidate "
              f"run(s), run-to-run spread from the runs of each side and up to {lookback} earlier runs on this "
              f"machine (at least {MIN_SERIES_RUNS}); where it is unknown, only changes beyond the "
              f"{allowance:g}% noise allowance are called; t-test at alpha={alpha:g} plus a minimum effect")
    return Comparison(matching.baseline_run["id"], matching.candidate_run["id"], results, matching.unmatched,
                      matching.warnings, effects, alpha, allowance, method, speeds, matching.missing,
                      matching.other_hardware)


def machine_speed(store: Store, run_ids: list[str]) -> float | None:
    """The machine-speed index of runs (median of their uncontended reference readings; all if none is)."""
    readings = [r for run_id in run_ids for r in store.get_run(run_id)["machine"].get("speed", [])]
    calm = [r for r in readings if not (r.get("contention") or {}).get("flagged")]
    values = [r["index"] for r in calm or readings]
    return float(np.median(values)) if values else None


def matched_result(base: Side, cand: Side, changes: list[MetricChange]) -> MatchedResult:
    """One compared result: its label and context, its changes, and runtime version differences."""
    row = cand.rows[-1]
    context = context_label(row["target"], row["backend"], row["threads"])
    warnings = _dict_diff("runtime", base.rows[-1]["runtime"] or {}, row["runtime"] or {})
    energy = next((c for c in changes if c.metric == "energy"), None)
    if energy is not None and energy.note.startswith("energy sources differ"):  # the table shows no n/a row
        warnings.append(f"{row['label']} on {context}: {energy.note} (its energy is not compared)")
    if base.rows[-1]["variant_id"] != row["variant_id"]:
        warnings.append(f"{row['label']}: rebuilt from changed inputs (model, data or build settings), variant "
                        f"{base.rows[-1]['variant_id']} -> {row['variant_id']}; compared by its label")
    ids = ([int(r["id"]) for r in base.rows], [int(r["id"]) for r in cand.rows])
    return MatchedResult(str(row["label"]), str(row["variant_id"]), context, changes, warnings, ids)
