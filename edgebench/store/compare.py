"""Regression comparison of two stored runs (``edgebench compare BASELINE CANDIDATE``).

Results are matched by (variant label, target, backend, settings): a variant rebuilt from a changed model, dataset
or build keeps its label and is compared with what it replaces (its new id is listed as context), and the lookback
reads earlier runs of the same variant id only. A baseline result the candidate failed or lacks, and a metric the
baseline measured and the candidate did not ("lost"), are listed for the gate. Every measured metric (p50, p99,
throughput, energy, peak RSS) is decided on per-run values against the run-to-run spread of that result
(``significance``): the runs of each side with ``repeats``, and earlier runs of the same result on the same
machine (the lookback). With one run a side and too little history the spread is unknown: only a change
beyond the noise allowance is called, without a confidence. Artifact size is compared exactly, accuracy
against a minimum effect. Differences in machine, library versions or settings are listed as context
warnings rather than silently compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from edgebench.job import CONFIDENCE, SpeedProbe
from edgebench.order_statistics import runs_for_an_interval
from edgebench.store.metrics import (
    DEFAULT_ALLOWANCE,
    DEFAULT_LOOKBACK,
    DEFAULT_MIN_EFFECT,
    RUN_METRICS,
    TIMING_METRICS,
    column_unit,
    context_label,
    get_metric,
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
from edgebench.variants import comparable_settings

COMPARED = tuple(DEFAULT_MIN_EFFECT)
_MACHINE_KEYS = ("cpu_model", "cpu_cores_logical", "cpu_cores_physical", "hostname", "os", "governor", "power_mode")
#: what makes two runs "the same machine" for the lookback
_SAME_MACHINE = ("hostname", "cpu_model")
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
class MissingResult:
    """A result the baseline measured and the candidate did not: failed there (with its error), or not in the run."""

    label: str
    context: str
    reason: str
    failed: bool


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

    @property
    def speed_note(self) -> str:
        """How the machine's own speed differed between the sides' runs, in words ("" when unknown)."""
        base, cand = self.machine_speed
        if not base or not cand:
            return ""
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
        levels[metric] = number
    return levels


def parse_min_effects(items: Sequence[str] | None) -> dict[str, float]:
    """``["latency=3", "accuracy=1"]`` -> compare's defaults overridden (``--min-effect``)."""
    return {**DEFAULT_MIN_EFFECT, **parse_levels("--min-effect", items)}


def _settings_key(row: pd.Series) -> str:
    """A row's settings as text, those a later release added left out at their earlier value."""
    return json.dumps(comparable_settings(row["settings"] or {}), sort_keys=True, default=str)


def _key(row: pd.Series) -> tuple:
    """What pairs results across runs: the variant's label, so a variant rebuilt from changed inputs is compared
    with the one it replaces (``_keys`` adds the id where one run gives two variants one label)."""
    settings = _settings_key(row)
    return (row["label"], row["target"], row["backend"], settings)


def _keys(df: pd.DataFrame) -> list[tuple]:
    """``_key`` of each row, with the variant id added where one run measured two variants under one key."""
    keys = [_key(row) for _, row in df.iterrows()]
    ids: dict[tuple, set[str]] = {}
    for key, (_, row) in zip(keys, df.iterrows()):
        ids.setdefault((row["run_id"], *key), set()).add(row["variant_id"])
    return [(*key, row["variant_id"]) if len(ids[(row["run_id"], *key)]) > 1 else key
            for key, (_, row) in zip(keys, df.iterrows())]


def _history_key(row: pd.Series) -> tuple:
    """What makes an earlier run's figure part of a result's run-to-run spread: the same variant id (a changed
    model's earlier figures are another population)."""
    settings = _settings_key(row)
    return (row["variant_id"], row["target"], row["backend"], settings)


def _value(row: pd.Series, column: str) -> float | None:
    """The row's figure, None where it has none or a non-finite one (an inf p50 from an imported store is no
    measurement to compare)."""
    value = row.get(column)
    return None if value is None or pd.isna(value) or not math.isfinite(float(value)) else float(value)


def _column(metric: str) -> str:
    return get_metric(metric).column


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


@dataclass
class Side:
    """The runs of one side of a comparison for one result: their rows and raw samples, oldest first."""

    rows: list[pd.Series]
    samples: list[np.ndarray]

    def values(self, metric: str) -> list[float]:
        """The metric's value in each run that has one."""
        column = _column(metric)
        return [v for row in self.rows if (v := _value(row, column)) is not None]

    def undisturbed(self) -> Side:
        """The runs whose timed window nothing disturbed (``disturbance``)."""
        return self._kept([disturbance(row.get("details")) is None for row in self.rows])

    def _kept(self, keep: list[bool]) -> Side:
        return Side([r for r, k in zip(self.rows, keep) if k], [s for s, k in zip(self.samples, keep) if k])


def disturbance(details: Any, whose: str = "its") -> str | None:
    """Why a stored measurement's timed window cannot be decided on, or None: other processes' CPU use in it
    (``measure.contention``), or the machine's speed changing across it (``measure.speed_probe``); ``whose``
    names the window's owner in the sentence ("the baseline's")."""
    found = details.get("contention") if isinstance(details, dict) else None
    if found and found.get("flagged"):
        return f"other processes kept {found['other_cores']:.2f} cores busy during {whose} timed window"
    probe = _speed_probe(details)
    if probe is not None and probe.changed is not None:
        return f"the machine's speed changed during {whose} timed window ({probe.seen_by} {probe.changed:+.0%})"
    return None


def _speed_probe(details: Any) -> SpeedProbe | None:
    found = details.get("speed_probe") if isinstance(details, dict) else None
    return SpeedProbe.model_validate(found) if found else None


def at_one_speed(base: Side, cand: Side) -> tuple[Side, Side, str | None]:
    """Both sides without the runs the machine ran slower in than in the fastest of them (by their speed
    probes, beyond the tolerance; runs stored without a probe stay), and why a side was left with none."""
    probes = {id(row): p for row in base.rows + cand.rows if (p := _speed_probe(row.get("details")))}
    if not probes:
        return base, cand, None
    fastest = min(p.level_us for p in probes.values())

    def same(row: pd.Series) -> bool:
        return id(row) not in probes or not probes[id(row)].slower_than(fastest)

    kept = base._kept([same(r) for r in base.rows]), cand._kept([same(r) for r in cand.rows])
    for (name, side), left in zip((("baseline", base), ("candidate", cand)), kept):
        if not left.rows:
            slower = min(probes[id(r)].level_us for r in side.rows) / fastest - 1
            return base, cand, (f"the machine ran {slower:.0%} slower during the {name}'s timed window than during "
                                "the other side's (speed probe)")
    return kept[0], kept[1], None


def run_metric_change(
    metric: str,
    base: Side,
    cand: Side,
    history: list[float],
    effect: float,
    alpha: float,
    allowance: float,
) -> MetricChange:
    """Decide one measured metric on the runs of both sides, with the run-to-run spread from the runs
    themselves and ``history`` (earlier runs of this result on this machine, oldest first).

    Timing and energy are decided on uncontended runs only; a side left without one is not decided. A metric
    neither side measured (energy on a target without a meter) is n/a, whatever disturbed the runs.
    """
    if not base.values(metric) and not cand.values(metric):
        return metric_change(metric, [], [], Decision("n/a", None, None, None, None, "missing",
                                                      "not measured on either side"), effect)
    if metric in TIMING_METRICS:
        all_base, all_cand = base, cand
        base, cand = base.undisturbed(), cand.undisturbed()
        if not base.rows or not cand.rows:
            side, rows = ("baseline", all_base.rows) if not base.rows else ("candidate", all_cand.rows)
            return _undecided(metric, all_base, all_cand, effect, disturbance(rows[-1].get("details"), f"the {side}'s"))
        base, cand, slower = at_one_speed(base, cand)
        if slower is not None:
            return _undecided(metric, all_base, all_cand, effect, slower)
    a, b = base.values(metric), cand.values(metric)
    lookback = series_noise(history) if len(history) >= MIN_SERIES_RUNS else None
    noise = pool(replicate_noise([a, b], "runs a side"), lookback)
    short = _too_few_runs(metric, base, cand) if noise is None else None
    if short is not None:  # no spread to judge by, and a window that cannot even bound its own percentile
        return _undecided(metric, base, cand, effect, short)
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


def _undecided(metric: str, base: Side, cand: Side, effect: float, why: str) -> MetricChange:
    """A timing metric with no run on one side that can be decided on (``why``): the change is shown, never called."""
    a, b = base.values(metric), cand.values(metric)
    mean_a, mean_b = _geomean(a), _geomean(b)
    ratio = mean_b / mean_a if mean_a and mean_b else None
    decision = Decision("undecided", ratio, None, None, None, "contended", f"not decided: {why}")
    return metric_change(metric, a, b, decision, effect)


def compare_pair(base: Side, cand: Side, history: Mapping[str, list[float]], min_effect: Mapping[str, float],
                 alpha: float = 0.01, allowance: float = DEFAULT_ALLOWANCE) -> list[MetricChange]:
    """Per-metric changes between the runs of both sides of one result (same variant, target, settings)."""
    changes = []
    for metric in RUN_METRICS:
        change = run_metric_change(metric, base, cand, history.get(metric, []), min_effect[metric], alpha, allowance)
        changes.append(as_metered(change, base, cand, min_effect["energy"]) if metric == "energy" else change)
    return one_sided(changes + fixed_changes(base, cand, min_effect), base, cand)


def as_metered(change: MetricChange, base: Side, cand: Side, effect: float) -> MetricChange:
    """The energy ``change`` as its meters allow: two meters' figures are not one series, and an estimate is noted
    as such (a model's figure, never gated as a counter's); the stored and the re-measured comparison alike."""
    if has_energy_of_two_meters(base, cand):
        return energy_sources_differ(base, cand, effect)
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


def energy_sources_differ(base: Side, cand: Side, effect: float) -> MetricChange:
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
    effects = {**DEFAULT_MIN_EFFECT, **(min_effect or {})}
    base_ids = store.resolve_runs(baseline) if repeats else [store.resolve_run(baseline)]
    cand_ids = store.resolve_runs(candidate) if repeats else [store.resolve_run(candidate)]
    refuse_shared_runs(base_ids, cand_ids, baseline, candidate)
    matching = match_runs(store, base_ids, cand_ids)
    history = lookback_values(store, matching.candidate_run, exclude=set(cand_ids), limit=lookback)
    results = [matched_result(base, cand, compare_pair(base, cand, history.get(_history_key(cand.rows[-1]), {}),
                                                       effects, alpha, allowance))
               for _, base, cand in matching.pairs]
    speeds = (machine_speed(store, base_ids), machine_speed(store, cand_ids))
    method = (f"measured metrics decided on per-run values: {len(base_ids)} baseline and {len(cand_ids)} candidate "
              f"run(s), run-to-run spread from the runs of each side and up to {lookback} earlier runs on this "
              f"machine (at least {MIN_SERIES_RUNS}); where it is unknown, only changes beyond the "
              f"{allowance:g}% noise allowance are called; t-test at alpha={alpha:g} plus a minimum effect")
    return Comparison(matching.baseline_run["id"], matching.candidate_run["id"], results, matching.unmatched,
                      matching.warnings, effects, alpha, allowance, method, speeds, matching.missing)


def machine_speed(store: Store, run_ids: list[str]) -> float | None:
    """The machine-speed index of runs (median of their uncontended reference readings; all if none is)."""
    readings = [r for run_id in run_ids for r in store.get_run(run_id)["machine"].get("speed", [])]
    calm = [r for r in readings if not (r.get("contention") or {}).get("flagged")]
    values = [r["index"] for r in calm or readings]
    return float(np.median(values)) if values else None


@dataclass
class Matching:
    """Two sides' results paired by (variant label, target, backend, settings), and what could not be paired."""

    baseline_run: dict[str, Any]
    candidate_run: dict[str, Any]
    pairs: list[tuple[tuple, Side, Side]]
    unmatched: list[str]
    warnings: list[str]
    missing: list[MissingResult] = field(default_factory=list)


def refuse_shared_runs(base_ids: list[str], cand_ids: list[str], baseline: str, candidate: str) -> None:
    """StoreError when the two sides share a run: a gate that compares a run with itself passes whatever the run
    measured (one run tagged with both names, e.g. an open run the other side's command resumed and tagged)."""
    if shared := sorted(set(base_ids) & set(cand_ids)):
        raise StoreError(f"baseline {baseline!r} and candidate {candidate!r} share run {', '.join(shared)}: compare "
                         "two different runs (see `edgebench runs`)")


def match_runs(store: Store, base_ids: list[str], cand_ids: list[str]) -> Matching:
    """Pair the ok results of the runs ``base_ids`` and ``cand_ids``; machine and library differences as warnings,
    and the baseline's results the candidate failed or lacks as ``missing``."""
    base_run, base_df, base_by_key = _side(store, base_ids)
    cand_run, cand_df, cand_by_key = _side(store, cand_ids)
    cand_failed = pd.concat([_failed(store.measurements(r)) for r in cand_ids], ignore_index=True)
    warnings = _dict_diff("machine", base_run["machine"], cand_run["machine"], _MACHINE_KEYS)
    warnings += _dict_diff("library", _flat_versions(base_run["machine"]), _flat_versions(cand_run["machine"]))
    if base_run.get("edgebench_version") != cand_run.get("edgebench_version"):
        warnings.append(f"edgebench differs: {base_run.get('edgebench_version')} vs {cand_run.get('edgebench_version')} "
                        "(a change in how edgebench measures shows as a change in the figures)")
    warnings += [f"run {run['id']} is not finished ({run['status']}): only the results it has stored so far are "
                 "compared" for run in (base_run, cand_run) if run.get("finished_at") is None]
    pairs, unmatched, missing = [], [], []
    for key, cand in cand_by_key.items():
        if key in base_by_key:
            pairs.append((key, base_by_key[key], cand))
        else:
            unmatched.append(_unmatched_reason(cand.rows[-1], base_df))
    for key, base in base_by_key.items():
        row = base.rows[-1]
        if key in cand_by_key:
            continue
        other = _same_job(row, cand_df)
        if not other.empty:  # measured with other settings (listed above): not compared, so not judged either
            missing.append(MissingResult(str(row["label"]), context_label(row["target"], row["backend"], row["threads"]),
                                         f"measured with other settings ({_settings_diff(row, other.iloc[-1])})", False))
            continue
        failed = _same_job(row, cand_failed)
        reason = (f"failed in the candidate run: {failed.iloc[-1]['error'] or failed.iloc[-1]['status']}"
                  if not failed.empty else "not measured by the candidate run")
        missing.append(MissingResult(str(row["label"]), context_label(row["target"], row["backend"], row["threads"]),
                                     reason, not failed.empty))
        unmatched.append(f"{row['label']} on {row['target']}/{row['backend']}: only in the baseline run ({reason})")
    return Matching(base_run, cand_run, pairs, unmatched, warnings, missing)


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


def _side(store: Store, run_ids: list[str]) -> tuple[dict[str, Any], pd.DataFrame, dict[tuple, Side]]:
    """The latest run of one side (all its ids joined), its ok results, and per result key its runs."""
    df = pd.concat([_ok(store.measurements(r)) for r in run_ids], ignore_index=True)
    sides: dict[tuple, Side] = {}
    for key, (_, row) in zip(_keys(df), df.iterrows()):
        side = sides.setdefault(key, Side([], []))
        side.rows.append(row)
        side.samples.append(store.samples(int(row["id"])))
    run = store.get_run(run_ids[-1])
    if len(run_ids) > 1:
        run = {**run, "id": ", ".join(run_ids)}
    return run, df, sides


def lookback_values(
    store: Store, run: Mapping[str, Any], exclude: set[str], limit: int = DEFAULT_LOOKBACK
) -> dict[tuple, dict[str, list[float]]]:
    """Per result key and measured metric, its values in up to ``limit`` earlier runs on ``run``'s machine.

    Earlier: started before ``run``; same machine: the same hostname and CPU model; runs in ``exclude``
    (the candidate side) left out, and so are contended timing figures. Oldest first.
    """
    if limit <= 0:
        return {}
    runs = store.runs()
    runs = runs[(runs["started_at"] < run["started_at"]) & ~runs["id"].isin(exclude)]
    same = [rid for rid in reversed(runs["id"].tolist()) if _same_machine(store.get_run(rid)["machine"], run["machine"])]
    values: dict[tuple, dict[str, list[float]]] = {}
    for rid in reversed(same[:limit]):
        for _, row in _ok(store.measurements(rid)).iterrows():
            per_metric = values.setdefault(_history_key(row), {})
            contended = disturbance(row.get("details")) is not None
            for metric in RUN_METRICS:
                if contended and metric in TIMING_METRICS:
                    continue
                if (v := _value(row, _column(metric))) is not None:
                    per_metric.setdefault(metric, []).append(v)
    return values


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _failed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] != "ok"]


def _same_machine(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _SAME_MACHINE)


def _same_job(row: pd.Series, other: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``other`` with the same variant label, target and backend (any settings)."""
    return other[(other["label"] == row["label"]) & (other["target"] == row["target"])
                 & (other["backend"] == row["backend"])]


def _unmatched_reason(cand: pd.Series, base_df: pd.DataFrame) -> str:
    """Why a candidate result has no baseline counterpart: a settings difference (flagged) or none measured."""
    where = f"{cand['label']} on {cand['target']}/{cand['backend']}"
    same = _same_job(cand, base_df)
    if same.empty:
        return f"{where}: only in the candidate run"
    return f"{where}: settings mismatch, not compared ({_settings_diff(same.iloc[0], cand)})"


def _settings_diff(base: pd.Series, cand: pd.Series) -> str:
    """Each setting that differs between two results, ``name old -> new`` (absent: ``-``)."""
    a, b = comparable_settings(base["settings"] or {}), comparable_settings(cand["settings"] or {})
    raw_a, raw_b = base["settings"] or {}, cand["settings"] or {}  # shown as recorded ('-': not recorded)
    diffs = [f"{k} {raw_a.get(k, '-')} -> {raw_b.get(k, '-')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs) or "other settings differ"
