"""Per-layer allocation: how a network-wide pruning ratio is split between layers, one plug-in per module.

Registered: ``uniform`` (every layer loses the same fraction), ``global_raw`` (one global ranking of the criterion's
raw scores, with a per-layer safety floor), ``global`` (one ranking of scores normalised by each layer's mean:
edgebench's form), ``sensitivity`` (Li et al. 2017's per-layer sensitivity analysis), ``gradient_bound``
(edgebench's reading of Zhou et al. 2022), ``latency`` (each layer's width from a latency budget measured on a
target: ``latency/``). ``paper`` picks the criterion's own (``Criterion.paper_allocation``).

The plug-in modules load on the registry's first lookup (``sensitivity`` and ``latency`` use the structured surgery,
which itself uses this package's base), so importing this package stays light.
"""

from edgebench.prune.allocation.base import (
    ALLOCATIONS,
    PAPER,
    Allocation,
    AllocationRecord,
    create_allocation,
    record_summary,
)

__all__ = ["ALLOCATIONS", "PAPER", "Allocation", "AllocationRecord", "create_allocation", "record_summary"]
