"""The measured quantities reports and comparisons talk about, with their better direction.

One table so the report's Pareto fronts, the budget table and ``edgebench compare``
agree on what "better" means for every metric and on the names users type
(``latency``, ``size``...), which map to store columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgebench.store.schema import StoreError

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Metric:
    """A column of :meth:`Store.measurements` with its names, display and better direction."""

    name: str  # what users type: ``--metric latency``, ``--min-effect latency=3``
    column: str
    direction: Direction
    label: str  # axis label, with the unit after ``scale``
    short: str  # table header
    scale: float = 1.0  # multiply the column by this for display in ``label``'s unit
    aliases: tuple[str, ...] = ()  # other accepted names (the experiment file's ``latency_p50_ms``)
    #: compare's default minimum effect (percent; accuracy: points); None: compare does not judge it
    min_effect: float | None = None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "accuracy", "max", "top-1 accuracy", "accuracy", min_effect=0.5),
        Metric("latency", "p50_ms", "min", "p50 latency (ms)", "p50 ms", aliases=("latency_p50_ms",), min_effect=5.0),
        Metric("p99", "p99_ms", "min", "p99 latency (ms)", "p99 ms", aliases=("latency_p99_ms",), min_effect=15.0),
        Metric("throughput", "throughput_ips", "max", "throughput (inferences/s)", "inf/s", min_effect=5.0),
        Metric("size", "size_bytes", "min", "artifact size (KiB)", "size KiB", 1 / 1024, min_effect=1.0),
        Metric("compressed_size", "compressed_size_bytes", "min", "compressed artifact size (KiB, ZIP)",
               "zip KiB", 1 / 1024),
        Metric("params", "params", "min", "parameters (k)", "params k", 1e-3),
        Metric("nonzero_params", "nonzero_params", "min", "non-zero parameters (k)", "non-zero k", 1e-3),
        Metric("macs", "macs", "min", "MACs (M)", "MACs (M)", 1e-6),
        Metric("nonzero_macs", "nonzero_macs", "min", "MACs of non-zero weights (M)", "nz MACs (M)", 1e-6),
        Metric("training_macs", "training_macs", "min", "training compute (GMACs)", "training GMACs", 1e-9),
        Metric("energy", "energy_j_per_inference", "min", "energy per inference (mJ)", "energy mJ", 1e3,
               min_effect=5.0),
        Metric("memory", "peak_rss_mb", "min", "peak RSS (MiB)", "peak RSS MiB", min_effect=10.0),
        Metric("bops", "bops", "min", "bit operations (M; counted from the hls4ml model, not synthesised)",
               "MBOPs (counted)", 1e-6),
        Metric("fpga_multipliers", "fpga_multipliers", "min",
               "FPGA multipliers at their reuse factor (counted, not synthesised)", "multipliers (counted)"),
        Metric("fpga_latency", "fpga_latency_cycles", "min", "FPGA latency (clock cycles, worst case, HLS synthesis)",
               "FPGA cycles"),
        Metric("output_error", "max_abs_diff", "min", "max |logit difference| vs PyTorch fp32", "max |Δ| vs torch"),
        Metric("predicted_latency", "predicted_p50_ms", "min", "p50 predicted by the latency tables (ms)",
               "predicted p50 ms"),
        Metric("prediction_error", "prediction_error_pct", "min",
               "latency model error (% of the measured p50; + predicted slower)", "prediction error %"),
    )
}
_BY_OTHER_NAME = {name: m for m in METRICS.values() for name in (m.column, *m.aliases)}
#: metrics ``edgebench compare`` judges, with their default minimum effects
DEFAULT_MIN_EFFECT: dict[str, float] = {m.name: m.min_effect for m in METRICS.values() if m.min_effect is not None}


def with_default_min_effects(given: Mapping[str, float] | None) -> dict[str, float]:
    """The minimum effect per metric: ``given`` where it names one, else :data:`DEFAULT_MIN_EFFECT`'s."""
    return {**DEFAULT_MIN_EFFECT, **(given or {})}


#: metrics every run measures anew, so identical artifacts differ between runs: decided on per-run values
RUN_METRICS = ("latency", "p99", "throughput", "energy", "memory")
#: of those, the ones that move with the machine's speed and load (the noise allowance applies to them)
TIMING_METRICS = ("latency", "p99", "throughput", "energy")
#: percent a timing or energy figure of identical artifacts may move between two single runs on a shared machine:
#: compare calls a change only beyond it while the run-to-run spread is unknown (scripts/bench_regression_detection.py)
DEFAULT_ALLOWANCE = 20.0
#: earlier runs on the same machine whose per-result spread compare consults (conbench's lookback)
DEFAULT_LOOKBACK = 20
#: interleaved rounds per result and side of ``compare --remeasure``
DEFAULT_ROUNDS = 5


def get_metric(name: str) -> Metric:
    """Look up a metric by name (``latency``), store column (``p50_ms``) or alias (``latency_p50_ms``)."""
    found = METRICS.get(name) or _BY_OTHER_NAME.get(name)
    if found is None:
        raise StoreError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    return found


#: the unit of a stored column, by its name's suffix (what compare's JSON values are in)
_COLUMN_UNITS = (("_ms", "ms"), ("_bytes", "bytes"), ("_ips", "inferences/s"), ("_j_per_inference", "J per inference"),
                 ("_mb", "MiB"), ("accuracy", "fraction"))


def column_unit(metric: str) -> str | None:
    """The unit a metric's stored values are in (``p50_ms``: ms; ``accuracy``: a fraction); None where the column's
    name does not say."""
    column = get_metric(metric).column
    return next((unit for suffix, unit in _COLUMN_UNITS if column.endswith(suffix)), None)


def one_metric_twice(a: str, b: str) -> str | None:
    """Why the objective pair (a, b) makes no front: both name one metric (``latency`` and ``p50_ms``); None else."""
    if get_metric(a).name == get_metric(b).name:
        return f"{a} and {b} name one metric twice: a front needs two, e.g. latency and accuracy"
    return None


def context_label(target: str, backend: str, threads: object) -> str:
    """How a measurement's target context is named in comparisons and histories."""
    return f"{target} · {backend} · {threads} threads"


def fpga_cost_metric(rows: Any) -> Metric:
    """The cost axis of a target's Pareto front: p50 latency, except for an FPGA C simulation, whose p50 is host CPU
    time: there the front is on the synthesised latency in cycles where every row has one, else on the bit
    operations counted from the firmware; host time stays a detail."""
    if not len(rows) or "bops" not in rows or not rows["bops"].notna().all():
        return METRICS["latency"]
    cycles = rows.get("fpga_latency_cycles")
    return METRICS["fpga_latency"] if cycles is not None and cycles.notna().all() else METRICS["bops"]
