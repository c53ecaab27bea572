"""Distribution-free confidence intervals of percentiles from order statistics: which sorted samples enclose a
quantile, and how many samples that takes. A leaf module (numpy only): the job contract validates its settings
with it and the measurement statistics build on it.
"""

from __future__ import annotations

import math

import numpy as np

#: the default confidence level of the percentile intervals every measurement reports
CONFIDENCE = 0.95


def _binomial_tails(n: int, q: float) -> tuple[int, np.ndarray, np.ndarray]:
    """``(k0, cdf, sf)``: ``P(B <= k)`` and ``P(B > k)`` for ``k = k0, k0 + 1, ...`` over the part of ``0..n`` where
    either tail can matter (the mean +- 40 standard deviations; beyond it each tail is below 1e-300), ``B ~
    Binomial(n, q)``, each summed from its own small end (the upper tail is not ``1 - cdf``, which loses its digits
    near 1). Computed here, not with scipy: a measurement worker imports this module, and scipy.stats would add
    about 40 MiB to every job's peak RSS."""
    spread = 40.0 * math.sqrt(n * q * (1.0 - q)) + 40.0
    k0, k1 = max(0, math.floor(n * q - spread)), min(n, math.ceil(n * q + spread))
    k = np.arange(k0, k1, dtype=np.float64)
    log_first = math.lgamma(n + 1) - math.lgamma(k0 + 1) - math.lgamma(n - k0 + 1) + k0 * math.log(q) + (
        n - k0) * math.log1p(-q)
    log_ratio = np.log(n - k) - np.log(k + 1) + math.log(q) - math.log1p(-q)  # log pmf(k + 1) - log pmf(k)
    pmf = np.exp(log_first + np.concatenate(([0.0], np.cumsum(log_ratio))))
    cdf = np.cumsum(pmf)
    sf = np.concatenate((np.cumsum(pmf[::-1])[::-1][1:], [0.0]))
    return k0, cdf, sf


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks ``(l, u)`` of the sorted samples that enclose the ``q``-quantile with at least ``confidence``.

    Equal tails: ``l`` is the largest rank with ``P(B <= l - 1) <= alpha/2`` and ``u`` the smallest with
    ``P(B >= u) <= alpha/2``, ``B ~ Binomial(n, q)``. None when ``n`` samples are too few for any such pair
    (at 95 %: a p50 needs 6 samples, a p90 36, a p99 368).
    """
    if not 0.0 < q < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"quantile {q} and confidence {confidence} must lie strictly between 0 and 1")
    if n < 1:
        return None
    tail = (1.0 - confidence) / 2.0
    k0, cdf, sf = _binomial_tails(n, q)
    lower = k0 + int(np.searchsorted(cdf, tail, side="right"))  # the ranks l with P(B <= l - 1) <= tail: 1..this
    upper = k0 + int(np.argmax(sf <= tail)) + 1  # the smallest k with P(B > k) <= tail: P(B >= k + 1) <= tail
    if lower < 1 or upper > n:
        return None
    return lower, upper



def runs_for_an_interval(q: float, confidence: float) -> int:
    """The fewest runs whose order statistics enclose the ``q``-quantile at ``confidence`` (equal tails: both
    q^n and (1 - q)^n at most (1 - confidence) / 2; at 95 %: p50 6, p90 36, p99 368), by the rule the intervals
    themselves use (:func:`order_statistic_ranks`), so the two never disagree at an exact bound."""
    n = max(1, math.floor(math.log((1.0 - confidence) / 2.0) / math.log(max(q, 1.0 - q))) - 1)
    while order_statistic_ranks(n, q, confidence) is None:
        n += 1
    return n
