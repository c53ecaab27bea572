"""The per-layer allocation interface and its registry.

An allocation turns the network-wide pruning ratio into a ratio per prunable group (named by its root conv), and
``select_channels`` then removes each group's lowest-scored channels - so every allocation composes with every
criterion and schedule. Each criterion declares the allocation its paper uses (``Criterion.paper_allocation``);
``allocation: paper`` (the default when an experiment names neither an allocation nor a scope) picks it.

Another allocation registers with ``@ALLOCATIONS.register("name")`` on an :class:`Allocation` subclass in a module
listed in ``ALLOCATIONS``'s modules (or imported before the experiment loads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.groups import GroupScores
from edgebench.registry import Registry

if TYPE_CHECKING:
    from edgebench.variants import PruneSpec

#: the experiment value that means "the allocation of the criterion's own paper"
PAPER = "paper"


class AllocationRecord(BaseModel):
    """What an allocation decided and measured, kept (as JSON) with the built variant."""

    model_config = ConfigDict(extra="allow")

    allocation: str

    def summary(self) -> str | None:
        """One line for the run's summary when the user should hear about this decision (None: nothing to say)."""
        return None


class Allocation:
    """Base allocation: override :meth:`ratios`; data-dependent ones also :meth:`prepare`."""

    #: True when :meth:`prepare` needs ``ScoringData``
    needs_data: bool = False
    #: True when the allocation times models on a target: a sweep runs :meth:`prepare` on the unpruned model
    #: first as a timed task holding this host's cores (no build or export shares them while it measures)
    timed: ClassVar[bool] = False
    #: what the experiment's ratios are fractions of, for an allocation that decides it (None: ``pruning.unit``)
    ratio_of: ClassVar[str | None] = None
    #: the type its :meth:`record` returns (read back from a stored variant by :func:`record_summary`)
    record_type: ClassVar[type[AllocationRecord]] = AllocationRecord
    #: set when the allocation is edgebench's construction where its paper gives none (shown in the report)
    reading: ClassVar[str | None] = None

    def begin(self, spec: PruneSpec, workdir: Path | None = None) -> None:
        """Called once before a schedule's first step: ramped schedules (while_training, iterative) then ask
        :meth:`ratios` for ratios growing to ``spec.ratio``; ``workdir`` is where an allocation may keep what it
        measured (None: the user cache)."""

    def record(self) -> AllocationRecord | None:
        """What the allocation decided and measured, kept with the built variant (None: nothing to keep)."""
        return None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        """Collect what the allocation needs from ``model`` (called after the groups are scored)."""

    def release(self) -> None:
        """Drop collected statistics."""

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        """Fraction of its original channels each group (by root name) loses so the network loses ``ratio``."""
        raise NotImplementedError


ALLOCATIONS: Registry[type[Allocation]] = Registry("allocation", modules=(
    "edgebench.prune.allocation.uniform",
    "edgebench.prune.allocation.ranking",
    "edgebench.prune.allocation.gradient_bound",
    "edgebench.prune.allocation.sensitivity",
    "edgebench.prune.allocation.latency.budget",
), group="edgebench.allocations", base=Allocation)


def create_allocation(name: str, **kwargs: object) -> Allocation:
    """Instantiate the registered allocation ``name`` with its keyword options."""
    return ALLOCATIONS.get(name)(**kwargs)


def record_summary(record: dict[str, Any] | None) -> str | None:
    """The summary line of an allocation record as a built variant kept it (None: nothing to say)."""
    if not record or record.get("allocation") not in ALLOCATIONS:
        return None
    return ALLOCATIONS.get(record["allocation"]).record_type.model_validate(record).summary()


def filters_removed(groups: Sequence[GroupScores], ratios: dict[str, float]) -> float:
    """Fraction of all the groups' original filters that ``ratios`` removes (a slot of a group spanning several
    convs or slices stands for that many filters)."""
    total = sum(g.slots * g.filter_weight for g in groups)
    return sum(g.slots * g.filter_weight * ratios[g.root] for g in groups) / max(total, 1)
