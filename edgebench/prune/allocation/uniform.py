"""The ``uniform`` allocation: every layer loses the same fraction of its filters."""

from __future__ import annotations

from collections.abc import Sequence

from edgebench.prune.allocation.base import ALLOCATIONS, Allocation
from edgebench.prune.groups import GroupScores


@ALLOCATIONS.register("uniform")
class Uniform(Allocation):
    """Every group loses ``ratio`` of its original channels: what Roy et al. 2020 (pruning while training) and
    ThiNet do, and what most filter-pruning papers report as "pruning X % of the filters"."""

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        return {g.root: ratio for g in groups}
