"""The CI gate over a comparison: per-metric warn and fail thresholds, unstable measurements named, one exit code.

``edgebench compare`` decides *whether* a metric changed (``store.compare``: per-run values against the
run-to-run spread). The gate only decides *how much that matters* to a pull request:

- a regression at least as large as the metric's ``--fail`` threshold fails the gate;
- one at least as large as its ``--warn`` threshold (and below any ``--fail``) warns;
- a metric given neither threshold keeps compare's meaning: any regression fails;
- a regression on an **unstable** measurement (its run-to-run spread across repeats, or across earlier runs,
  at least ``unstable_pct``) is named as unstable and only warns: the spread says the runs disagree among
  themselves, so the change is shown, not blamed;
- ``undecided`` results (contended measurements, or a change past the minimum effect that the spread cannot
  confirm) are listed and never fail; one whose change is worse than the metric's smallest threshold (or, with
  none, compare's minimum effect) warns, so a busy runner cannot pass a +800 % p50 without a word;
- a baseline result the candidate **failed** fails the gate, and so does a metric the baseline measured and the
  candidate did not ("lost"); one the candidate did not measure at all only warns (a target or variant left out of
  the run); a comparison in which nothing could be paired fails (nothing was checked).

Thresholds are percent of the baseline value (accuracy: percentage points), like ``--min-effect``; compare
is asked to call changes down to the smallest threshold of each metric (:func:`min_effects`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgebench.errors import ExitCode
from edgebench.store.compare import (
    Comparison,
    MatchedResult,
    MetricChange,
    parse_levels,
    shown_name,
)
from edgebench.store.compare_markdown import fmt_change, fmt_evidence
from edgebench.store.compare_match import MissingResult
from edgebench.store.metrics import get_metric, with_default_min_effects
from edgebench.store.schema import StoreError

Level = Literal["ok", "warn", "fail"]
#: run-to-run spread (percent) from which a measurement counts as unstable
DEFAULT_UNSTABLE_PCT = 10.0


@dataclass(frozen=True)
class Thresholds:
    """Per-metric warn and fail levels (percent; accuracy: points) and the spread that makes a result unstable."""

    warn: Mapping[str, float] = field(default_factory=dict)
    fail: Mapping[str, float] = field(default_factory=dict)
    unstable_pct: float = DEFAULT_UNSTABLE_PCT


@dataclass(frozen=True)
class Finding:
    """One regressed metric of one result, with the gate's level and why."""

    label: str
    context: str
    change: MetricChange
    level: Level
    reason: str


@dataclass
class GateResult:
    """The gate's verdict: its level, every regression with its level, and what it did not judge."""

    level: Level
    findings: list[Finding]
    unstable: list[tuple[MatchedResult, MetricChange]]
    undecided: list[tuple[MatchedResult, MetricChange]]
    #: baseline results the candidate failed (fail) or did not measure (warn), with their level
    missing: list[tuple[MissingResult, Level]] = field(default_factory=list)
    #: nothing could be paired: the gate checked nothing, so it fails
    nothing_compared: bool = False

    @property
    def exit_code(self) -> ExitCode:
        """REGRESSION when the gate fails, WARNING when it only warns, OK otherwise."""
        return {"fail": ExitCode.REGRESSION, "warn": ExitCode.WARNING, "ok": ExitCode.OK}[self.level]

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form (``compare --format json`` puts it under ``gate``)."""
        def named(pairs: list[tuple[MatchedResult, MetricChange]]) -> list[dict[str, Any]]:
            return [{"label": r.label, "context": r.context, "metric": c.metric, "change": c.change,
                     "spread_pct": c.noise_pct, "runs": list(c.runs), "verdict": c.verdict, "note": c.note}
                    for r, c in pairs]

        findings = [{"label": f.label, "context": f.context, "metric": f.change.metric, "change": f.change.change,
                     "level": f.level, "reason": f.reason} for f in self.findings]
        missing = [{"label": m.label, "context": m.context, "reason": m.reason, "level": level}
                   for m, level in self.missing]
        return {"level": self.level, "exit_code": int(self.exit_code), "findings": findings,
                "unstable": named(self.unstable), "undecided": named(self.undecided), "missing": missing,
                "nothing_compared": self.nothing_compared}


def parse_thresholds(
    warn: Sequence[str] | None, fail: Sequence[str] | None, unstable_pct: float = DEFAULT_UNSTABLE_PCT
) -> Thresholds:
    """``--warn latency=2 --fail latency=5`` -> :class:`Thresholds`; a warn level above its fail level is an error."""
    warns, fails = parse_levels("--warn", warn), parse_levels("--fail", fail)
    for metric in warns.keys() & fails.keys():
        if warns[metric] > fails[metric]:
            raise StoreError(f"--warn {metric}={warns[metric]:g} is above --fail {metric}={fails[metric]:g}: "
                             "the warn level must not exceed the fail level")
    return Thresholds(warns, fails, unstable_pct)


def min_effects(thresholds: Thresholds, min_effect: Sequence[str] | None = None) -> dict[str, float]:
    """Compare's minimum effect per metric: ``--min-effect`` where given, else the metric's smallest threshold
    (so a 2 % warn level is not hidden by a 5 % default), else compare's default."""
    given = parse_levels("--min-effect", min_effect)
    effects = with_default_min_effects(given)
    for metric in (thresholds.warn.keys() | thresholds.fail.keys()) - given.keys():
        effects[metric] = min(v for v in (thresholds.warn.get(metric), thresholds.fail.get(metric)) if v is not None)
    return effects


def _level(change: MetricChange, thresholds: Thresholds) -> tuple[Level, str]:
    size = abs(change.change) if change.change is not None else float("inf")
    unit = " pp" if change.metric == "accuracy" else "%"
    warn, fail = thresholds.warn.get(change.metric), thresholds.fail.get(change.metric)
    if fail is not None and size >= fail:
        return "fail", f"at or past --fail {change.metric}={fail:g}{unit}"
    if warn is not None and size >= warn:
        return "warn", f"at or past --warn {change.metric}={warn:g}{unit}" + (
            f", below --fail {fail:g}{unit}" if fail is not None else "")
    if warn is None and fail is None:
        return "fail", "a regression (no --warn or --fail level set for this metric)"
    return "ok", f"below --warn {change.metric}={warn:g}{unit}" if warn is not None else "below its thresholds"


def _undecided_past(change: MetricChange, thresholds: Thresholds) -> str | None:
    """Why an undecided ``change`` warns: it is worse than the metric's smallest threshold (none set: compare's
    minimum effect); None when it is not, or its size is unknown."""
    if change.change is None:
        return None
    worse = change.change if get_metric(change.metric).direction == "min" else -change.change
    levels = [v for v in (thresholds.warn.get(change.metric), thresholds.fail.get(change.metric)) if v is not None]
    level, what = (min(levels), "its smallest threshold") if levels else (change.min_effect, "the minimum effect")
    if worse < max(level, 1e-9):
        return None
    unit = " pp" if change.metric == "accuracy" else "%"
    return (f"undecided ({change.note.removeprefix('not decided: ')}), but {fmt_change(change)} is past {what} "
            f"{level:g}{unit}: not failed without a decision; {_AGAIN.get(change.basis, _MORE_EVIDENCE)}")


#: what to do about an undecided change, by what left it undecided (a quieter machine does not make two one, nor
#: give a 50-run window a p99, nor more evidence to a change the runs' spread could not confirm)
_AGAIN = {"contended": "measure again on a quieter machine",
          "other machine": "measure both sides on one machine (`compare --remeasure` times both here)",
          "short window": "measure longer windows (a larger measurement.min_iters, or the percentile in "
                          "measurement.precision_percentiles)",
          "executors": "measure both sides under one executor (executor.type)"}
#: a change the spread of the runs or rounds could not confirm
_MORE_EVIDENCE = "measure each side more often (runs of one tag with --repeats, or more --remeasure --rounds)"


def is_unstable(change: MetricChange, thresholds: Thresholds) -> bool:
    """Whether the run-to-run spread behind a verdict is at least ``unstable_pct`` (unknown spread: not unstable)."""
    return change.noise_pct is not None and change.noise_pct >= thresholds.unstable_pct


def evaluate(cmp: Comparison, thresholds: Thresholds) -> GateResult:
    """The gate's level over every regression of ``cmp``."""
    findings, unstable, undecided = [], [], []
    for result in cmp.results:
        for change in result.changes:
            if change.verdict == "undecided":
                undecided.append((result, change))
                if (past := _undecided_past(change, thresholds)) is not None:
                    findings.append(Finding(result.label, result.context, change, "warn", past))
            if is_unstable(change, thresholds) and change.verdict in ("regression", "unchanged", "improvement"):
                unstable.append((result, change))
            if change.verdict == "lost":
                findings.append(Finding(result.label, result.context, change, "fail", change.note))
            if change.verdict != "regression":
                continue
            level, reason = _level(change, thresholds)
            if level == "fail" and shown_name(change) != change.metric:  # an estimate: the time it is made of is gated
                level, reason = "warn", f"estimated, not measured ({change.note}): not failed on its own ({reason})"
            if is_unstable(change, thresholds) and level == "fail":
                level, reason = "warn", (f"unstable: run-to-run spread {change.noise_pct:.1f}% >= "
                                         f"{thresholds.unstable_pct:g}%, not blamed ({reason})")
            findings.append(Finding(result.label, result.context, change, level, reason))
    missing: list[tuple[MissingResult, Level]] = [(m, "fail" if m.failed else "warn") for m in cmp.missing]
    nothing = not cmp.results
    levels = {f.level for f in findings} | {level for _, level in missing} | ({"fail"} if nothing else set())
    overall: Level = "fail" if "fail" in levels else "warn" if "warn" in levels else "ok"
    return GateResult(overall, findings, unstable, undecided, missing, nothing)


#: what the gate says when nothing could be paired
NOTHING_COMPARED = ("nothing was compared: no candidate result has a baseline result of the same variant label, "
                    "target, backend and settings")


def missing_lines(gate: GateResult) -> list[str]:
    """One line per baseline result the candidate failed or lacks, with its level."""
    return [f"{level}: {m.label} on {m.context}: {m.reason}" for m, level in gate.missing]


def threshold_text(thresholds: Thresholds) -> str:
    """The thresholds in one line: ``latency warn 2% / fail 5%; every other metric: any regression fails``."""
    metrics = sorted(thresholds.warn.keys() | thresholds.fail.keys())
    parts = [f"{m} " + " / ".join(f"{kind} {levels[m]:g}{' pp' if m == 'accuracy' else '%'}"
                                  for kind, levels in (("warn", thresholds.warn), ("fail", thresholds.fail)) if m in levels)
             for m in metrics]
    others = "every other metric: any regression fails" if metrics else "any regression fails"
    return "; ".join([*parts, others])


def unstable_lines(gate: GateResult) -> list[str]:
    """One line per unstable result: its runs and each metric's spread, change and verdict."""
    by_result: dict[tuple[str, str], list[MetricChange]] = {}
    for r, c in gate.unstable:
        by_result.setdefault((r.label, r.context), []).append(c)
    return [f"{label} on {context}, {changes[0].runs[0]}+{changes[0].runs[1]} "
            f"{'rounds' if changes[0].basis == 'rounds' else 'runs'}: "
            + ", ".join(f"{shown_name(c)} spread {c.noise_pct:.1f}% (change {fmt_change(c)}, {c.verdict})"
                        for c in changes)
            for (label, context), changes in by_result.items()]


def undecided_lines(gate: GateResult) -> list[str]:
    """One line per change the gate could not judge: its result, metric (an estimated energy says so), change, why."""
    return [f"{r.label} on {r.context}: {shown_name(c)} {fmt_change(c)}: {c.note}" for r, c in gate.undecided]


def gate_markdown(gate: GateResult, thresholds: Thresholds) -> str:
    """The gate's section of the pull-request comment: level, thresholds, each regression's level, then the
    unstable and the undecided measurements by name."""
    title = {"fail": "❌ fails", "warn": "⚠️ warns", "ok": "✅ passes"}[gate.level]
    lines = [f"### edgebench deployment-cost gate {title}",
             f"Thresholds: {threshold_text(thresholds)}. Unstable: run-to-run spread >= {thresholds.unstable_pct:g}%."]
    if gate.findings:
        lines += ["", "| level | variant | target | metric | change [CI] | evidence | why |", "|---|---|---|---|---|---|---|"]
        order = sorted(gate.findings, key=lambda f: ("fail", "warn", "ok").index(f.level))
        lines += [f"| {f.level} | {f.label} | {f.context} | {shown_name(f.change)} | {fmt_change(f.change)} | "
                  f"{fmt_evidence(f.change)} | {f.reason} |" for f in order]
    if gate.unstable:
        lines += ["", f"**Unstable measurements** (spread across runs or rounds >= {thresholds.unstable_pct:g}%; shown, not "
                  "blamed: measure them again or on a quieter machine):"]
        lines += [f"- {line}" for line in unstable_lines(gate)]
    if gate.nothing_compared:
        lines += ["", f"**{NOTHING_COMPARED[0].upper()}{NOTHING_COMPARED[1:]}.**"]
    if gate.missing:
        lines += ["", "**Baseline results the candidate failed or did not measure:**"]
        lines += [f"- {line}" for line in missing_lines(gate)]
    if gate.undecided:
        lines += ["", "**Not judged** (disturbed, measured on different machines, or too little evidence to "
                  "decide):"]
        lines += [f"- {line}" for line in undecided_lines(gate)]
    return "\n".join(lines) + "\n"
