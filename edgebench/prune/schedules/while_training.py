"""Pruning while training (Roy, Panda, Srinivasan and Raghunathan, 2020; seed 001): filters are removed at the end
of chosen epochs of the training run itself, the ratio ramping to the target, with no separate retraining."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from edgebench.data import DatasetSplits
from edgebench.models.cost import conv_filters, count_macs
from edgebench.prune.criteria import Criterion
from edgebench.prune.schedules.base import (
    SCHEDULES,
    Progress,
    Schedule,
    ScheduleResult,
    allocation_record,
    apply_prune,
    criterion_hooks,
    schedule_allocation,
)
from edgebench.train import TrainHook, TrainState, train
from edgebench.variants import PruneSpec, TrainSpec

log = logging.getLogger(__name__)


def default_prune_epochs(epochs: int) -> tuple[int, ...]:
    """Prune after ~25%, 50% and 75% of the run (0-based epoch indices), leaving training after the last."""
    last = max(epochs - 2, 0)
    picks = {min(max(round(epochs * f) - 1, 0), last) for f in (0.25, 0.5, 0.75)}
    return tuple(sorted(picks))


class PruneWhileTraining(TrainHook):
    """Remove filters at the end of chosen epochs of the training run itself.

    After step ``k`` of ``n`` the network has lost ``ratio * k / n`` of its original filters (or MACs),
    so the ratio ramps to the target and no separate retraining follows. The optimizer is rebuilt after
    each removal because the parameter tensors changed. ``workdir``: where the spec's allocation may keep what
    it measures.
    """

    def __init__(self, criterion: Criterion, spec: PruneSpec, prune_epochs: Sequence[int],
                 workdir: Path | None = None) -> None:
        self.criterion = criterion
        self.spec = spec
        self.prune_epochs = tuple(sorted(set(prune_epochs)))
        self.allocation = schedule_allocation(spec, workdir)
        self._original: dict[str, int] = {}
        self._original_macs = 0

    def on_train_start(self, state: TrainState) -> None:
        bad = [e for e in self.prune_epochs if not 0 <= e < state.epochs]
        if bad:
            raise ValueError(f"prune_epochs {bad} outside the run's epochs 0..{state.epochs - 1}")
        self._original = conv_filters(state.model)
        self._original_macs = count_macs(state.model, state.input_shape)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch not in self.prune_epochs:
            return
        step = self.prune_epochs.index(state.epoch) + 1
        ratio = self.spec.ratio * step / len(self.prune_epochs)
        removed = apply_prune(state.model, self.criterion, self.spec, ratio, state, self._original,
                              self._original_macs, self.allocation)
        state.rebuild_optimizer()
        state.history[-1].update(pruned_ratio=ratio, filters_removed=removed)
        unit = self.allocation.ratio_of if self.allocation is not None and self.allocation.ratio_of else self.spec.unit
        log.info("epoch %d: pruned at ratio %.2f of %s: %.1f%% of the filters removed", state.epoch, ratio, unit,
                 100 * removed)


@SCHEDULES.register("while_training")
class WhileTraining(Schedule):
    """Train from scratch, removing filters at ``spec.prune_epochs`` (default: ~25/50/75% of the run)."""

    from_baseline = False
    counts_baseline = False
    reads = frozenset({"prune_epochs"})

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
            spec: PruneSpec, progress: Progress = None, workdir: Path | None = None,
            hooks: Sequence[TrainHook] = ()) -> ScheduleResult:
        """``hooks``: more of the same run's hooks, called after the pruning step (quantization-aware training
        joins here, after the last pruning step)."""
        epochs = spec.prune_epochs or default_prune_epochs(train_spec.epochs)
        hook = PruneWhileTraining(criterion, spec, epochs, workdir)
        result = train(model, splits, train_spec, hooks=[*criterion_hooks(criterion), hook, *hooks], progress=progress)
        return ScheduleResult(result.history, result.training_macs, result.val_accuracy,
                              allocation_record(hook.allocation))
