"""The measured quantities reports and comparisons talk about, with their better direction.

One table so the report's Pareto fronts, the budget table and ``edgebench compare``
agree on what "better" means for every metric and on the names users type
(``latency``, ``size``...), which map to store columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgebench.store.schema import StoreError

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Metric:
    """A column of :meth:`Store.measurements` with a display label and a better direction."""

    name: str
    column: str
    direction: Direction
    label: str
    scale: float = 1.0  # multiply the column by this for display in ``label``'s unit


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "accuracy", "max", "top-1 accuracy"),
        Metric("latency", "p50_ms", "min", "p50 latency (ms)"),
        Metric("p99", "p99_ms", "min", "p99 latency (ms)"),
        Metric("throughput", "throughput_ips", "max", "throughput (inferences/s)"),
        Metric("energy", "energy_j_per_inference", "min", "energy per inference (mJ)", 1e3),
        Metric("memory", "peak_rss_mb", "min", "peak RSS (MB)"),
        Metric("size", "size_bytes", "min", "artifact size (KiB)", 1 / 1024),
        Metric("macs", "macs", "min", "MACs (M)", 1e-6),
        Metric("params", "params", "min", "parameters (k)", 1e-3),
        Metric("training_macs", "training_macs", "min", "training compute (GMACs)", 1e-9),
    )
}
_BY_COLUMN = {m.column: m for m in METRICS.values()}
# names the experiment file uses (edgebench.config.Objective)
_ALIASES = {"latency_p50_ms": METRICS["latency"], "latency_p99_ms": METRICS["p99"]}


def get_metric(name: str) -> Metric:
    """Look up a metric by name (``latency``), store column (``p50_ms``) or experiment-file name."""
    found = METRICS.get(name) or _BY_COLUMN.get(name) or _ALIASES.get(name)
    if found is None:
        raise StoreError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    return found
