"""Summary statistics of raw latency samples (integer nanoseconds) and how precise they are.

Precision is the distribution-free confidence interval of a percentile from order statistics: among ``n``
independent samples, the number ``B`` at or below the true q-quantile is Binomial(n, q), so the sorted
samples ``x_(l) <= x_(u)`` (1-based ranks) enclose the quantile with probability ``P(l <= B <= u - 1)``.
No assumption on the latency distribution is needed (latencies are skewed and multi-modal); the samples
are assumed independent, which a timed loop on a busy machine only approximates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgebench.job import CONFIDENCE
from edgebench.order_statistics import order_statistic_ranks

#: the percentiles a latency summary reports, by name
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def summarize_ns(samples_ns: Sequence[int], batch_size: int = 1) -> tuple[dict[str, float], float]:
    """Return latency summary in ms (p50/p90/p99/mean/std/min/max) and throughput in inferences/s.

    Throughput counts images, so an offline batch of N counts N inferences.
    """
    if len(samples_ns) == 0:
        raise ValueError("no latency samples to summarise")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    summary = {name: float(np.percentile(ms, q)) for name, q in PERCENTILES.items()}
    summary.update({
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
    })
    throughput = batch_size * 1e3 / summary["mean"]
    return summary, throughput


@dataclass(frozen=True)
class Interval:
    """A percentile's point estimate and its confidence interval, in the samples' unit."""

    estimate: float
    low: float
    high: float

    @property
    def relative_half_width(self) -> float:
        """The larger distance from the estimate to an end, as a fraction of the estimate."""
        if self.estimate <= 0:
            return float("inf")
        return max(self.estimate - self.low, self.high - self.estimate) / self.estimate


def percentile_interval(samples: Sequence[int] | np.ndarray, percentile: float,
                        confidence: float = CONFIDENCE) -> Interval | None:
    """The ``percentile`` (0-100) of ``samples`` with its order-statistic confidence interval; None when too few."""
    values = np.asarray(samples, dtype=np.float64)
    ranks = order_statistic_ranks(values.size, percentile / 100.0, confidence)
    if ranks is None:
        return None
    lower, upper = ranks
    picked = np.partition(values, [lower - 1, upper - 1])
    return Interval(float(np.percentile(values, percentile)), float(picked[lower - 1]), float(picked[upper - 1]))


def latency_intervals(samples_ns: Sequence[int] | np.ndarray, confidence: float = CONFIDENCE
                      ) -> dict[str, tuple[float, float]]:
    """``{"p50": (low_ms, high_ms), ...}`` for every reported percentile the samples are enough for."""
    found = {}
    for name, q in PERCENTILES.items():
        interval = percentile_interval(samples_ns, q, confidence)
        if interval is not None:
            found[name] = (interval.low / 1e6, interval.high / 1e6)
    return found


class PrecisionRule:
    """When a timed loop has enough samples: every percentile named is known within ``precision`` (relative).

    LoadGen's early-stopping idea (a percentile bounded by a binomial confidence rule instead of a fixed
    query count), applied to the percentile's two-sided interval: stop once its ends lie within
    ``precision`` x the estimate on both sides.
    """

    def __init__(self, precision: float, percentiles: Sequence[str] = ("p50",), confidence: float = CONFIDENCE) -> None:
        unknown = sorted(set(percentiles) - set(PERCENTILES))
        if unknown:
            raise ValueError(f"unknown percentiles {unknown}; choose from {', '.join(PERCENTILES)}")
        self.precision = precision
        self.percentiles = [PERCENTILES[name] for name in percentiles]
        self.confidence = confidence

    def widest(self, samples: Sequence[int] | np.ndarray) -> float:
        """The largest relative half-width among the percentiles (inf while one has too few samples)."""
        values = np.asarray(samples, dtype=np.float64)
        widths = [percentile_interval(values, q, self.confidence) for q in self.percentiles]
        return max(float("inf") if w is None else w.relative_half_width for w in widths)

    def met(self, samples: Sequence[int] | np.ndarray) -> bool:
        """Whether ``samples`` pin every percentile within the precision."""
        return self.widest(samples) <= self.precision
