"""Per-layer profile records: runtime operators mapped to PyTorch layers, one row per layer.

A runtime reports time per *operator* it executed (after its own fusions and layout
changes); a row here is one PyTorch layer (a conv or linear module path) with every
operator that belongs to it: the layer's kernel itself, the activation/pooling/residual
add the runtime ran after it, and layout reorders feeding it. ``compute_ms`` keeps the
conv/gemm kernel time apart, so the time that is *not* multiply-accumulate work stays
visible. Operators that map to no layer stay as their own rows (``(input)``,
``(unmapped)``): shares always add up to the profiled total.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: runtime operator types that do the layer's multiply-accumulates (ORT, OpenVINO, TensorRT, torch)
_COMPUTE = re.compile(r"conv|gemm|matmul|fullyconnected|innerproduct|addmm|^(aten::)?linear$", re.IGNORECASE)
INPUT_ROW, UNMAPPED_ROW = "(input)", "(unmapped)"


def is_compute_op(op_type: str) -> bool:
    """Whether a runtime operator type is a conv/gemm kernel (as opposed to layout, activation, pooling...)."""
    return bool(_COMPUTE.search(op_type))


@dataclass(frozen=True)
class LayerInfo:
    """A PyTorch layer's shape facts: what it costs in MACs and its channels."""

    path: str  # module path, e.g. stages.0.conv1
    op: str  # Conv / Gemm / MatMul
    macs: int  # per sample
    c_in: int
    c_out: int


@dataclass
class OpTime:
    """One runtime operator's mean time per inference in the profiling window."""

    name: str
    op_type: str
    time_ms: float
    layer: str


@dataclass
class LayerRow:
    """One layer: measured time and share, MACs and share, channels."""

    layer: str
    op: str
    time_ms: float
    time_share: float
    compute_ms: float
    macs: int
    macs_share: float
    c_in: int | None
    c_out: int | None
    ops: int


@dataclass
class LayerProfile:
    """A runtime's per-layer profile of one artifact, or why there is none."""

    runtime: str
    status: str  # "ok" | "not available"
    reason: str | None = None
    run_ms: float | None = None  # mean wall time per inference in the profiling window
    runs: int = 0
    rows: list[LayerRow] = field(default_factory=list)
    ops: list[OpTime] = field(default_factory=list)

    @property
    def ops_ms(self) -> float:
        """Sum of the operators' times (excludes the runtime's time between operators)."""
        return sum(r.time_ms for r in self.rows)

    @property
    def compute_ms(self) -> float:
        """Time inside conv/gemm kernels."""
        return sum(r.compute_ms for r in self.rows)

    def non_compute_share(self, p50_ms: float | None = None) -> float | None:
        """Share of ``p50_ms`` (default: the profiled run time) not spent in conv/gemm kernels.

        Against the profiled run time it is an upper bound (the profiler's own cost between operators
        counts as non-compute); against a p50 from another window it assumes the kernels ran as fast there.
        """
        total = p50_ms or self.run_ms
        # kernels that took longer in the profiled window than the whole timed p50: the two windows ran at different
        # speeds (host load, the profiler's cost), and no share can be read off them
        return None if not total or self.compute_ms > total else 1.0 - self.compute_ms / total

    def p50_share_text(self, p50_ms: float) -> str:
        """The non-compute share of a timed ``p50_ms`` as printed, or why there is none."""
        share = self.non_compute_share(p50_ms)
        if share is None:
            return (f"none of the timed p50 ({p50_ms:.3f} ms): the profiled conv/gemm kernels alone took "
                    f"{self.compute_ms:.3f} ms, the windows ran at different speeds")
        return f"{100 * share:.1f}% of the timed p50 ({p50_ms:.3f} ms)"

    def non_compute_operator_share(self) -> float | None:
        """Share of the operators' own time that is not conv/gemm kernels (a lower bound: no overhead)."""
        return None if not self.ops_ms else 1.0 - self.compute_ms / self.ops_ms

    def non_compute_text(self, p50_ms: float | None = None) -> str:
        """The "not conv/gemm compute" line every printer shows: the share of operator time (a lower bound), of the
        profiled run (an upper bound) and of a timed ``p50_ms``; a share that cannot be read off says why."""
        ops, run = self.non_compute_operator_share(), self.non_compute_share()
        run_ms = f" ({self.run_ms:.3f} ms)" if self.run_ms else ""
        if run is not None:
            of_run = f"{100 * run:.1f}% of the profiled run{run_ms} (upper bound)"
        elif not self.run_ms:
            of_run = "unknown of the profiled run (the runtime reported no run time)"
        else:
            of_run = (f"unknown of the profiled run{run_ms}: its conv/gemm kernels alone took {self.compute_ms:.3f} ms "
                      "(the profiler's windows ran at different speeds)")
        shares = [f"{100 * ops:.1f}% of operator time (lower bound)" if ops is not None
                  else "unknown of operator time (no operator times)", of_run]
        if p50_ms:
            shares.append(self.p50_share_text(p50_ms))
        return "not conv/gemm compute: " + "; ".join(shares)

    def top(self, n: int) -> list[LayerRow]:
        """The ``n`` rows that took the most time."""
        return sorted(self.rows, key=lambda r: r.time_ms, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored per measurement)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerProfile:
        """Inverse of :meth:`to_dict`."""
        rows = [LayerRow(**r) for r in data.get("rows", [])]
        ops = [OpTime(**o) for o in data.get("ops", [])]
        return cls(**{**data, "rows": rows, "ops": ops})


def not_available(runtime: str, reason: str) -> LayerProfile:
    """A profile record saying why ``runtime`` gives no per-layer times here."""
    return LayerProfile(runtime=runtime, status="not available", reason=reason)


def build_profile(runtime: str, ops: list[OpTime], layers: dict[str, LayerInfo], run_ms: float | None,
                  runs: int) -> LayerProfile:
    """Aggregate operator times into one row per layer (every known layer gets a row, even at 0 ms)."""
    total_ms = sum(o.time_ms for o in ops) or 1.0
    total_macs = sum(info.macs for info in layers.values()) or 1
    rows: dict[str, LayerRow] = {}
    for path, info in layers.items():
        rows[path] = LayerRow(path, info.op, 0.0, 0.0, 0.0, info.macs, info.macs / total_macs, info.c_in, info.c_out, 0)
    for op in ops:
        row = rows.get(op.layer)
        if row is None:
            row = rows[op.layer] = LayerRow(op.layer, "", 0.0, 0.0, 0.0, 0, 0.0, None, None, 0)
        row.time_ms += op.time_ms
        row.ops += 1
        if is_compute_op(op.op_type):
            row.compute_ms += op.time_ms
    for row in rows.values():
        row.time_share = row.time_ms / total_ms
    return LayerProfile(runtime=runtime, status="ok", run_ms=run_ms, runs=runs, rows=list(rows.values()), ops=ops)


@dataclass
class LayerGap:
    """A layer of a pruned variant next to the same layer of the baseline."""

    layer: str
    macs_kept: float  # pruned MACs / baseline MACs
    time_kept: float  # pruned time / baseline time
    base_ms: float
    pruned_ms: float

    @property
    def realised(self) -> float | None:
        """Fraction of the removed MACs that became removed time (1 = proportional, <= 0 = none)."""
        removed = 1.0 - self.macs_kept
        return None if removed <= 0 else (1.0 - self.time_kept) / removed


def macs_time_gaps(base: LayerProfile, pruned: LayerProfile, min_removed: float = 0.2,
                   max_realised: float = 0.5) -> list[LayerGap]:
    """Layers whose MACs were cut by at least ``min_removed`` but whose time fell by less than
    ``max_realised`` of that cut: where removed MACs did not become time (layout reorders, fixed per-op
    cost, kernels that do not scale down), largest absolute time first."""
    pruned_rows = {r.layer: r for r in pruned.rows}
    gaps = []
    for row in base.rows:
        other = pruned_rows.get(row.layer)
        if other is None or row.macs <= 0 or row.time_ms <= 0:
            continue
        gap = LayerGap(row.layer, other.macs / row.macs, other.time_ms / row.time_ms, row.time_ms, other.time_ms)
        realised = gap.realised
        if 1.0 - gap.macs_kept >= min_removed and realised is not None and realised < max_realised:
            gaps.append(gap)
    return sorted(gaps, key=lambda g: g.pruned_ms, reverse=True)


def format_profile(profile: LayerProfile, top: int | None = None, p50_ms: float | None = None) -> str:
    """Plain-text table of ``profile`` (the ``top`` slowest layers), with the non-compute share."""
    if profile.status != "ok":
        return f"{profile.runtime}: per-layer profile not available: {profile.reason}"
    rows = profile.top(top) if top else profile.rows
    lines = [f"{'layer':<28} {'op':<6} {'c_in':>5} {'c_out':>5} {'ms':>8} {'time %':>7} {'conv/gemm ms':>12} "
             f"{'MMACs':>8} {'MACs %':>7}"]
    for r in rows:
        lines.append(f"{r.layer:<28} {r.op:<6} {r.c_in or '':>5} {r.c_out or '':>5} {r.time_ms:>8.4f} "
                     f"{100 * r.time_share:>6.1f}% {r.compute_ms:>12.4f} {r.macs / 1e6:>8.2f} {100 * r.macs_share:>6.1f}%")
    run = f"{profile.run_ms:.3f} ms" if profile.run_ms else "time unknown"
    lines.append(f"{profile.runtime}: profiled run {run} = operators {profile.ops_ms:.3f} ms "
                 f"(conv/gemm kernels {profile.compute_ms:.3f} ms) + time between operators")
    lines.append(profile.non_compute_text(p50_ms))
    return "\n".join(lines)
