"""The schedule interface and its registry, and what every schedule shares: one pruning step, its scoring sample,
the spec's allocation and the result.

A schedule says *when* filters are removed (during training, once after it, in steps, or before training again
from scratch). Each registers with ``@SCHEDULES.register("name")`` on a :class:`Schedule` subclass; ``build.py``
asks it whether it starts from the trained baseline and hands it the model. Each returns the pruned model's
training result including its whole training compute, so the report can put the compute pruning while training
saves next to train -> prune -> retrain.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.prune.allocation.base import Allocation, create_allocation
from edgebench.prune.criteria import Criterion, ScoringData
from edgebench.prune.structured import kept_layers, prune_model
from edgebench.registry import Registry
from edgebench.train import TrainHook, TrainState
from edgebench.variants import PruneSpec, TrainSpec

log = logging.getLogger(__name__)

#: finetuning starts from a trained network, so it uses a smaller learning rate (Li et al. 2017 use 1/10)
FINETUNE_LR_FACTOR = 0.1
#: training samples a data-dependent criterion looks at per pruning step
SCORING_SAMPLES = 512

Progress = Callable[[int, int], None] | None


@dataclass
class ScheduleResult:
    """The pruned model's history and its whole schedule's training compute."""

    history: list[dict]
    training_macs: int
    val_accuracy: float
    allocation: dict[str, Any] | None = None  # what the per-layer allocation decided and measured
    compression: dict[str, Any] | None = None  # Deep Compression's storage of a sparse model (sizes, ratios)


class Schedule(ABC):
    """When filters are removed. Subclasses implement :meth:`run`."""

    #: True when the schedule prunes a copy of the trained baseline; False: a freshly initialised model
    from_baseline: ClassVar[bool] = True
    #: True when the baseline's training belongs to this variant's training compute and history
    counts_baseline: ClassVar[bool] = True
    #: the ``PruneSpec`` fields this schedule reads; the plan leaves the others at their defaults so that a setting
    #: the schedule ignores does not change the variant's id
    reads: ClassVar[frozenset[str]] = frozenset()
    #: the progress bar's stage name
    stage: ClassVar[str] = "train"

    @abstractmethod
    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
            spec: PruneSpec, progress: Progress = None, workdir: Path | None = None) -> ScheduleResult:
        """Prune ``model`` in place (a copy of the trained baseline, or a fresh model: :attr:`from_baseline`) and
        train it as the schedule says; ``workdir``: where the spec's allocation may keep what it measures."""


SCHEDULES: Registry[type[Schedule]] = Registry("schedule", group="edgebench.schedules", base=Schedule)


def schedule_allocation(spec: PruneSpec, workdir: Path | None = None) -> Allocation | None:
    """The spec's per-layer allocation, created once per schedule so that the steps of a ramp share what it
    decided (``workdir``: where it may keep what it measures); None: ``spec.scope`` decides."""
    if not spec.allocation:
        return None
    allocation = create_allocation(spec.allocation, **spec.allocation_kwargs)
    allocation.begin(spec, workdir)
    return allocation


def scoring_data(x: torch.Tensor, y: torch.Tensor, seed: int, n: int = SCORING_SAMPLES,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None) -> ScoringData:
    """A fixed-seed sample of the training split for data-dependent criteria (and the validation split, for
    allocations that read accuracy)."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    x_val, y_val = val if val is not None else (None, None)
    return ScoringData(x[idx], y[idx], x_val=x_val, y_val=y_val)


def apply_prune(
    model: nn.Module,
    criterion: Criterion,
    spec: PruneSpec,
    ratio: float,
    state_or_splits: TrainState | DatasetSplits,
    original: dict[str, int],
    original_macs: int,
    allocation: Allocation | None,
    seed: int = 0,
) -> float:
    """Prune ``model`` to ``ratio`` of its original filters/MACs, scoring on a training sample, split between
    layers by ``allocation`` (the spec's, from :func:`schedule_allocation`; None: ``spec.scope``). Returns the share
    of the model's conv filters removed in all, from the widths: ``ratio`` as achieved in whole filters (and
    ``round_to``), with those no group could cut kept, the figure to report as "removed"."""
    x = torch.as_tensor(state_or_splits.x_train)
    y = torch.as_tensor(state_or_splits.y_train)
    needs_data = criterion.needs_data or (allocation is not None and allocation.needs_data)
    val = (torch.as_tensor(state_or_splits.x_val), torch.as_tensor(state_or_splits.y_val))
    data = scoring_data(x, y, seed, val=val) if needs_data else None
    return prune_model(
        model,
        criterion,
        ratio,
        x[:1],
        data=data,
        original=original,
        unit=spec.unit,
        scope=spec.scope,
        round_to=spec.round_to,
        original_macs=original_macs,
        ignored=kept_layers(model, spec.keep),
        allocation=allocation,
    ).filters_removed


def criterion_hooks(criterion: Criterion) -> list[TrainHook]:
    """The training hook the criterion needs (Network Slimming's L1 on BN scales), as a list."""
    hook = criterion.training_hook()
    return [hook] if hook is not None else []


def allocation_record(allocation: Allocation | None) -> dict[str, Any] | None:
    """What the allocation decided, as the JSON kept with the built variant."""
    record = allocation.record() if allocation is not None else None
    return record.model_dump(mode="json") if record is not None else None
