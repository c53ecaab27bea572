"""Summary statistics of raw latency samples (integer nanoseconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize_ns(samples_ns: Sequence[int], batch_size: int = 1) -> tuple[dict[str, float], float]:
    """Return latency summary in ms (p50/p90/p99/mean/std/min/max) and throughput in inferences/s.

    Throughput counts images, so an offline batch of N counts N inferences.
    """
    if len(samples_ns) == 0:
        raise ValueError("no latency samples to summarise")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    summary = {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
    }
    throughput = batch_size * 1e3 / summary["mean"]
    return summary, throughput
