"""Prune a trained network, then finetune: once (Li et al. 2017, Han et al. 2015) or in steps (Molchanov et al.)."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from edgebench.data import DatasetSplits
from edgebench.models.cost import conv_filters, count_macs
from edgebench.prune.criteria import Criterion
from edgebench.prune.schedules.base import (
    FINETUNE_LR_FACTOR,
    SCHEDULES,
    Progress,
    Schedule,
    ScheduleResult,
    allocation_record,
    apply_prune,
    criterion_hooks,
    schedule_allocation,
)
from edgebench.train import TrainResult, evaluate, train
from edgebench.variants import PruneSpec, TrainSpec

log = logging.getLogger(__name__)


def finetune(model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion, epochs: int,
             progress: Progress) -> TrainResult | None:
    """Retrain a pruned network for ``epochs`` at a tenth of the learning rate (None when ``epochs`` is 0)."""
    if epochs == 0:
        return None
    spec = train_spec.model_copy(update={"lr": train_spec.lr * FINETUNE_LR_FACTOR})
    return train(model, splits, spec, hooks=criterion_hooks(criterion), epochs=epochs, progress=progress)


def prune_and_finetune(
    model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion, spec: PruneSpec,
    steps: int, progress: Progress = None, workdir: Path | None = None,
) -> ScheduleResult:
    """Prune a trained ``model`` in ``steps`` equal ratio steps, each followed by ``spec.finetune_epochs``.

    ``training_macs`` counts only the finetuning here. ``workdir``: where the spec's allocation may keep what it
    measures.
    """
    original, original_macs = conv_filters(model), count_macs(model, tuple(splits.input_shape))
    allocation = schedule_allocation(spec, workdir)
    history: list[dict] = []
    macs = 0
    for step in range(1, steps + 1):
        ratio = spec.ratio * step / steps
        removed = apply_prune(model, criterion, spec, ratio, splits, original, original_macs, allocation,
                              seed=train_spec.seed + step)
        log.info("pruning step %d: ratio %.2f of %s: %.1f%% of the filters removed", step, ratio, spec.unit,
                 100 * removed)
        result = finetune(model, splits, train_spec, criterion, spec.finetune_epochs, progress)
        if result is not None:
            history += [{**h, "step": step, "pruned_ratio": ratio, "filters_removed": removed} for h in result.history]
            macs += result.training_macs
    return ScheduleResult(history, macs, evaluate(model, splits.x_val, splits.y_val), allocation_record(allocation))


@SCHEDULES.register("oneshot_finetune")
class OneShotFinetune(Schedule):
    """Train -> prune once -> finetune ``finetune_epochs`` (Li et al. 2017)."""

    reads = frozenset({"finetune_epochs"})
    stage = "finetune"

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
            spec: PruneSpec, progress: Progress = None, workdir: Path | None = None) -> ScheduleResult:
        return prune_and_finetune(model, splits, train_spec, criterion, spec, 1, progress, workdir)


@SCHEDULES.register("iterative")
class Iterative(Schedule):
    """Train, then ``steps`` times: prune a further ``ratio / steps`` and finetune (Molchanov et al.'s iterative
    pruning; Han et al.'s prune/retrain cycles)."""

    reads = frozenset({"finetune_epochs", "steps"})
    stage = "finetune"

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
            spec: PruneSpec, progress: Progress = None, workdir: Path | None = None) -> ScheduleResult:
        return prune_and_finetune(model, splits, train_spec, criterion, spec, spec.steps, progress, workdir)
