"""Statistics that decide whether a latency change is real: tests on raw samples plus an effect floor.

A change counts only when a test on the raw per-iteration samples says it is
unlikely to be noise *and* its size reaches a minimum effect. With thousands of
samples any difference is "significant", so the effect floor is what keeps
run-to-run machine noise (frequency, other tenants) from failing a CI job.

Quantile confidence intervals use the exact bootstrap distribution of an order
statistic: the k-th smallest of n draws from the empirical distribution is the
empirical quantile at a Beta(k, n-k+1) variate, so no resampling of the
samples themselves is needed (fast for 100k samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["regression", "improvement", "unchanged", "n/a"]


@dataclass(frozen=True)
class Estimate:
    """Candidate/baseline ratio of a statistic with its confidence interval and test p-value."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float | None


def bootstrap_quantile(sorted_x: np.ndarray, q: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` bootstrap replicates of the q-quantile of the sample ``sorted_x`` (ascending)."""
    n = len(sorted_x)
    k = min(n, max(1, int(np.ceil(q * n))))  # the quantile is the k-th order statistic
    u = rng.beta(k, n - k + 1, size=draws)
    idx = np.clip(np.ceil(u * n).astype(np.int64) - 1, 0, n - 1)
    return sorted_x[idx]


def quantile_ratio(
    baseline: np.ndarray,
    candidate: np.ndarray,
    q: float = 0.5,
    confidence: float = 0.99,
    draws: int = 4000,
    seed: int = 0,
) -> Estimate:
    """Ratio candidate/baseline of the q-quantile, a bootstrap CI, and a two-sided Mann-Whitney U p-value."""
    a = np.sort(np.asarray(baseline, dtype=np.float64))
    b = np.sort(np.asarray(candidate, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both sides need samples")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_quantile(b, q, draws, rng) / bootstrap_quantile(a, q, draws, rng)
    tail = (1 - confidence) / 2
    point = float(np.quantile(b, q, method="inverted_cdf") / np.quantile(a, q, method="inverted_cdf"))
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue) if min(len(a), len(b)) > 1 else None
    return Estimate(point, float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail)), p)


def mean_ratio(baseline: np.ndarray, candidate: np.ndarray, confidence: float = 0.99) -> Estimate:
    """Ratio candidate/baseline of the mean with a delta-method CI on the log ratio and Welch's p-value."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    ma, mb = a.mean(), b.mean()
    se = np.sqrt(a.var(ddof=1) / (len(a) * ma**2) + b.var(ddof=1) / (len(b) * mb**2)) if min(len(a), len(b)) > 1 else 0.0
    z = stats.norm.ppf(0.5 + confidence / 2)
    ratio = float(mb / ma)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if se > 0 else None
    return Estimate(ratio, float(ratio * np.exp(-z * se)), float(ratio * np.exp(z * se)), p)


def proportion_change_p(p_a: float, n_a: int, p_b: float, n_b: int) -> float | None:
    """Two-sided p-value of a two-proportion z-test (accuracy on n test images); None if undefined."""
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None if p_a == p_b else 0.0
    return float(2 * stats.norm.sf(abs(p_b - p_a) / se))


def decide(
    est: Estimate, higher_is_better: bool, min_effect: float, alpha: float
) -> Verdict:
    """Regression/improvement only when the test, the whole CI and the effect floor agree.

    ``min_effect`` is a fraction (0.05 = 5 %) of relative change in the bad or good direction.
    """
    significant = est.p_value is None or est.p_value < alpha
    worse_lo, worse = (est.ci_low, est.ratio) if not higher_is_better else (1 / est.ci_high, 1 / est.ratio)
    better_hi = est.ci_high if not higher_is_better else 1 / est.ci_low
    if significant and worse_lo > 1 and worse - 1 >= min_effect:
        return "regression"
    if significant and better_hi < 1 and 1 - worse >= min_effect:
        return "improvement"
    return "unchanged"
