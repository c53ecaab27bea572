"""Statistics that decide whether a change is real: the run, not the sample, is the unit of evidence.

Thousands of per-iteration samples inside one run say how precisely that run measured, not how much a
second run of the same artifact will differ: on a shared machine the p50 of identical artifacts moves by
several percent between runs (process placement, memory layout, frequency, other tenants). So a change
between two sides is tested against the *run-to-run* spread of the statistic:

* several runs a side: the pooled spread of the runs within each side;
* earlier runs of the same result on the same machine (a lookback, as conbench and Bencher keep): the
  spread of successive runs of the series, estimated robustly (median absolute successive difference,
  so a real step or one disturbed run in the history does not shrink or blow up the estimate);
* interleaved rounds (``compare --remeasure``): the spread of the paired per-round differences.

Never tighter than the per-measurement intervals: the spread is at least the within-run standard error
of the p50. With one run a side and no history the spread cannot be known on this machine: no confidence
is given, and only a change beyond a stated noise allowance is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

#: ``undecided``: the evidence was disturbed (a contended measurement), or a change past the minimum effect was not
#: significant (too few or too spread runs or rounds to tell), or, on per-run values, one below it has an interval
#: reaching past it (too few runs to say it is smaller), so no call is made either way
#: "lost": measured in the baseline, not in the candidate (compare's own verdict; no test decides it)
Verdict = Literal["regression", "improvement", "unchanged", "undecided", "n/a", "lost"]
#: what a verdict rests on (see the module docstring); ``threshold``: a deterministic value (size, accuracy)
Basis = Literal["runs", "lookback", "rounds", "allowance", "threshold", "contended", "short window", "executors",
                "other machine", "missing"]

#: efficiency of the median absolute deviation against the standard deviation for normal data: the
#: degrees of freedom a robust spread estimate is worth
MAD_EFFICIENCY = 0.37
#: runs a series needs before its own spread is trusted more than the noise allowance
MIN_SERIES_RUNS = 8
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Noise:
    """Expected spread between runs of one result: sd of the log of its per-run value, and its degrees of freedom."""

    sigma: float
    df: float
    source: str
    #: ``runs`` when the runs being compared are among the evidence, ``lookback`` when only earlier runs are
    basis: Basis = "runs"

    @property
    def pct(self) -> float:
        """The spread as a percentage of the value."""
        return 100 * float(np.expm1(self.sigma))


@dataclass(frozen=True)
class Decision:
    """The outcome of one comparison: ``ratio`` is candidate / baseline, with its interval where one is known."""

    verdict: Verdict
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float | None  # 1 - p of the run-level test; None where the spread is unknown
    basis: Basis
    note: str = ""


def _logs(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return np.log(x[np.isfinite(x) & (x > 0)])


def replicate_noise(groups: Sequence[Sequence[float]], what: str = "runs") -> Noise | None:
    """Pooled within-group spread of log values; each group holds runs that measured the same thing."""
    logs = [_logs(g) for g in groups]
    df = sum(len(g) - 1 for g in logs if len(g) > 1)
    if df < 1:
        return None
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in logs if len(g) > 1)
    sizes = "+".join(str(len(g)) for g in logs)
    return Noise(float(np.sqrt(ss / df)), df, f"{sizes} {what}")


def series_noise(values: Sequence[float], what: str = "earlier runs", basis: Basis = "lookback") -> Noise | None:
    """Spread of one run from a time-ordered series of runs: robust to a step or an outlier in the series.

    sigma = 1.4826 * median |successive log difference| / sqrt(2); its degrees of freedom are the
    differences' count scaled by the MAD's efficiency (at least one).
    """
    logs = _logs(values)
    if len(logs) < 3:
        return None
    diffs = np.abs(np.diff(logs))
    sigma = _MAD_TO_SD * float(np.median(diffs)) / np.sqrt(2)
    return Noise(sigma, max(1.0, MAD_EFFICIENCY * len(diffs)), f"{len(logs)} {what}", basis)


def pool(*noises: Noise | None) -> Noise | None:
    """One spread from several estimates of it, weighted by their degrees of freedom."""
    found = [n for n in noises if n is not None]
    if not found:
        return None
    df = sum(n.df for n in found)
    sigma = float(np.sqrt(sum(n.df * n.sigma**2 for n in found) / df))
    basis: Basis = "runs" if any(n.basis == "runs" for n in found) else "lookback"
    return Noise(sigma, df, " + ".join(n.source for n in found), basis)


def at_least(noise: Noise | None, sigma_floor: float, why: str) -> Noise | None:
    """``noise`` raised to ``sigma_floor`` (the per-measurement intervals): runs never look more alike than
    each run is precise."""
    if noise is None or noise.sigma >= sigma_floor:
        return noise
    return Noise(sigma_floor, noise.df, f"{noise.source}; raised to {why}", noise.basis)


def p50_log_se(samples: np.ndarray) -> float | None:
    """Standard error of log(p50) of one run's samples, from the order statistics bracketing the median."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n < 20 or x[0] <= 0:
        return None
    half = 0.5 * np.sqrt(n)  # +-1 standard error of the median's rank
    lo, hi = x[max(0, int(np.floor(n / 2 - half)))], x[min(n - 1, int(np.ceil(n / 2 + half)))]
    return float(np.log(hi / lo) / 2)


def p50_se_floor(runs: Iterable[np.ndarray]) -> float:
    """The root mean square of the runs' own p50 standard errors (log scale, :func:`p50_log_se`): runs never agree
    better than their own intervals allow; 0.0 where no run has enough samples."""
    se = [s for s in (p50_log_se(samples) for samples in runs) if s is not None]
    return float(np.sqrt(np.mean(np.square(se)))) if se else 0.0


def effect_verdict(ratio: float, higher_is_better: bool, min_effect: float) -> Verdict:
    """Regression or improvement when the change as shown (candidate / baseline - 1) reaches ``min_effect`` in the
    bad or the good direction: the gate's thresholds and the report read that same figure (judged as the time it
    stands for instead, a throughput drop of 36 % was a regression past a 40 % level the gate passed)."""
    worse = (1 - ratio) if higher_is_better else (ratio - 1)
    if worse >= min_effect:
        return "regression"
    if -worse >= min_effect:
        return "improvement"
    return "unchanged"


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of ``t`` under Student's t with ``df`` degrees of freedom. scipy.stats is imported here,
    not with this module: it is half a second of every CLI start, and most commands never test."""
    from scipy import stats

    return float(2 * stats.t.sf(abs(t), df))


def _tested(log_ratio: float, se: float, df: float, higher_is_better: bool, min_effect: float, alpha: float,
            basis: Basis, note: str) -> Decision:
    """Verdict of a t-test on a log ratio: significant at ``alpha`` *and* at least ``min_effect``; ``undecided`` where
    the estimate reaches ``min_effect`` but is not significant."""
    ratio = float(np.exp(log_ratio))
    if se <= 0:
        return Decision(effect_verdict(ratio, higher_is_better, min_effect) if log_ratio else "unchanged",
                        ratio, ratio, ratio, None, basis, note)
    from scipy import stats  # see t_two_sided_p

    p = t_two_sided_p(log_ratio / se, df)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    call = effect_verdict(ratio, higher_is_better, min_effect)
    if p >= alpha and call != "unchanged":
        # a change whose best estimate is past the minimum effect but which the spread cannot confirm: too little
        # evidence either way (two calm rounds of a +35 % slowdown), never "unchanged"
        call, note = "undecided", f"not decided: not significant at alpha={alpha:g} (p={p:.2f}); {note}"
    low, high = float(np.exp(log_ratio - half)), float(np.exp(log_ratio + half))
    return Decision(call, ratio, low, high, 1 - p, basis, note)


def decide_runs(
    baseline: Sequence[float],
    candidate: Sequence[float],
    noise: Noise | None,
    *,
    higher_is_better: bool,
    min_effect: float,
    alpha: float,
    allowance: float,
) -> Decision:
    """Decide on per-run values of both sides (geometric means compared) with the run-to-run ``noise``.

    ``min_effect`` and ``allowance`` are fractions (0.05 = 5 %). Without a known spread only a change of at
    least ``max(min_effect, allowance)`` is called, and no confidence is given.
    """
    a, b = _logs(baseline), _logs(candidate)
    if not len(a) or not len(b):
        return Decision("n/a", None, None, None, None, "missing", "no value on one side")
    log_ratio = float(b.mean() - a.mean())
    if noise is None:
        ratio = float(np.exp(log_ratio))
        floor = max(min_effect, allowance)
        note = (f"{len(a)}+{len(b)} run(s) and no history on this machine: the run-to-run spread, and so the "
                f"confidence, cannot be known; decided against the noise allowance of {100 * floor:g}%")
        return Decision(effect_verdict(ratio, higher_is_better, floor), ratio, None, None, None, "allowance", note)
    se = noise.sigma * float(np.sqrt(1 / len(a) + 1 / len(b)))
    note = f"run-to-run spread {noise.pct:.1f}% ({noise.source}; t-test, {noise.df:g} df)"
    decision = _tested(log_ratio, se, noise.df, higher_is_better, min_effect, alpha, noise.basis, note)
    return _unchanged_within(decision, higher_is_better, min_effect, alpha)


def _unchanged_within(decision: Decision, higher_is_better: bool, min_effect: float, alpha: float) -> Decision:
    """``decision``, but an "unchanged" whose interval reaches past ``min_effect`` either way is undecided: "unchanged"
    says the change is smaller than the minimum effect, which only an interval inside it shows (equivalence; 2+1
    runs, a t on 1 df, called +0.3 % [-91.8, +1126.8] unchanged)."""
    bounds = (decision.ci_low, decision.ci_high)
    if decision.verdict != "unchanged" or None in bounds:
        return decision
    if all(effect_verdict(b, higher_is_better, min_effect) == "unchanged" for b in bounds if b is not None):
        return decision
    note = (f"not decided: too few runs to decide: the {100 * (1 - alpha):g}% interval is wider than the minimum "
            f"effect {100 * min_effect:g}%; measure each side more often (runs of one tag, --repeats) or keep earlier "
            f"runs of this machine in the store (the lookback); {decision.note}")
    return replace(decision, verdict="undecided", note=note)


def decide_rounds(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    higher_is_better: bool,
    min_effect: float,
    alpha: float,
    sigma_floor: float = 0.0,
) -> Decision:
    """Decide on interleaved rounds: ``baseline[i]`` and ``candidate[i]`` were measured back to back.

    A paired t-test on the per-round log ratios; the machine's slow drift cancels within each pair.
    """
    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
    d = np.log(b[ok] / a[ok])
    if len(d) < 2:
        return Decision("n/a", None, None, None, None, "missing", "fewer than two complete rounds")
    sd = max(float(d.std(ddof=1)), sigma_floor * np.sqrt(2))
    note = f"{len(d)} interleaved rounds, per-round spread {100 * np.expm1(sd):.1f}% (paired t-test, {len(d) - 1} df)"
    return _tested(float(d.mean()), sd / np.sqrt(len(d)), len(d) - 1, higher_is_better, min_effect, alpha, "rounds",
                   note)


def decide_threshold(baseline: float | None, candidate: float | None, *, higher_is_better: bool,
                     min_effect: float) -> Decision:
    """A deterministic value (artifact size): any change of at least ``min_effect`` counts."""
    if baseline is None or candidate is None or baseline == 0:
        return Decision("n/a", None, None, None, None, "missing", "missing value")
    ratio = candidate / baseline
    return Decision(effect_verdict(ratio, higher_is_better, min_effect), ratio, ratio, ratio, None, "threshold")


def proportion_change_p(p_a: float, n_a: int, p_b: float, n_b: int) -> float | None:
    """Two-sided p-value of a two-proportion z-test (accuracy on n test images); None if undefined."""
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None if p_a == p_b else 0.0
    from scipy import stats  # see t_two_sided_p

    return float(2 * stats.norm.sf(abs(p_b - p_a) / se))
