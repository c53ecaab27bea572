"""Global allocations: every channel of the network ranked on one list, the lowest removed until ``ratio`` of all
filters are gone, so each layer loses what its scores say rather than a fixed share.

- ``global_raw`` ranks the criterion's scores as they are. This is what the papers that prune globally do: Network
  Slimming's single threshold on ``|gamma|`` (Liu et al. 2017), Molchanov et al. 2019's Taylor scores, which "scale
  consistently across layers", Molchanov et al. 2017 on their layer-wise L2-normalised activation scores (the
  normalisation is part of that criterion), SOSP-H's global saliencies. A per-layer safety floor keeps every
  layer connected: each group keeps at least ``min_channels`` (and ``round_to``) channels, its best-scored. A group
  the criterion cannot score (``bn_scale``, ``taylor_bn``, ``bn_stats`` on a conv without BatchNorm: its filters
  ranked by L1 norm instead) loses the requested ratio of its own filters and the others are ranked among
  themselves: an L1 norm on the list of ``|gamma|`` would decide the cut by its scale alone.
- ``global`` (edgebench's normalised form) divides each group's scores by that group's mean first, so criteria
  whose raw scale differs between layers (an L1 norm grows with fan-in) can still be ranked together. No paper
  defines this normalisation; it is the ``scope: global`` of earlier edgebench versions, kept for their variants.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from edgebench.prune.allocation.base import ALLOCATIONS, Allocation
from edgebench.prune.groups import GroupScores

if TYPE_CHECKING:
    from edgebench.variants import PruneSpec

log = logging.getLogger(__name__)


def rank_globally(groups: Sequence[GroupScores], scores: Sequence[torch.Tensor], ratio: float,
                  floor: int = 0) -> dict[str, float]:
    """Per-group ratios that keep the highest ``scores`` of all groups together until ``1 - ratio`` of the filters
    are kept, after reserving each group's ``floor`` best channel slots. A slot of a group spanning several convs
    (a residual add) or slices (a grouped conv) stands for that many filters."""
    budget = sum(g.slots * g.filter_weight for g in groups) * (1 - ratio)
    reserved = [torch.zeros(len(s), dtype=torch.bool) for s in scores]
    for r, s in zip(reserved, scores):
        r[torch.argsort(s, descending=True, stable=True)[: min(floor, len(s))]] = True
    budget -= sum(int(r.sum()) * g.filter_weight for g, r in zip(groups, reserved))
    owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores)])
    weight = torch.cat([torch.full((len(s),), float(g.filter_weight)) for g, s in zip(groups, scores)])
    free = ~torch.cat(reserved)
    flat = torch.cat([s.double() for s in scores])
    ranked = torch.argsort(torch.where(free, flat, -torch.inf), descending=True, stable=True)[: int(free.sum())]
    ranked = ranked[torch.cumsum(weight[ranked], 0) <= budget + 1e-9]
    kept = torch.bincount(owner[ranked], minlength=len(groups)) + torch.stack([r.sum() for r in reserved])
    return {g.root: 1 - k / g.slots for g, k in zip(groups, kept.tolist())}


@ALLOCATIONS.register("global")
class GlobalRanking(Allocation):
    """All channels ranked together on scores divided by their group's mean score (edgebench's normalisation, see
    the module docstring); the lowest go until ``ratio`` of all filters are removed."""

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        return rank_globally(groups, [g.scores / g.scores.mean().clamp(min=1e-12) for g in groups], ratio)


@ALLOCATIONS.register("global_raw")
class RawGlobalRanking(Allocation):
    """All channels ranked together on the criterion's raw scores, each group keeping at least ``min_channels``.

    Args:
        min_channels: the per-layer safety floor (channels a group keeps whatever its scores).
    """

    def __init__(self, min_channels: int = 1) -> None:
        if min_channels < 1:
            raise ValueError(f"global_raw: min_channels must be at least 1, got {min_channels}")
        self.min_channels = min_channels
        self.round_to: int | None = None
        self._warned: set[str] = set()  # the unscored groups last warned about (ratios() runs at every step)

    def begin(self, spec: PruneSpec, workdir: Path | None = None) -> None:
        self.round_to = spec.round_to

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        floor = max(self.min_channels, self.round_to or 1)
        ranked = [g for g in groups if not g.fallback]
        apart = {g.root: ratio for g in groups if g.fallback}
        if apart and set(apart) != self._warned:
            self._warned = set(apart)
            log.warning("global_raw: the criterion cannot score %s (filters ranked by L1 norm), so each loses the "
                        "requested ratio of its own filters, not ranked against the criterion's scores; keep them "
                        "(pruning.keep) or choose a criterion that scores every layer to rank all together",
                        ", ".join(sorted(apart)))
        return {**apart, **(rank_globally(ranked, [g.scores for g in ranked], ratio, floor) if ranked else {})}
