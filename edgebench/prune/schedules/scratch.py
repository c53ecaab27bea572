"""Train the pruned architecture from scratch (Liu, Sun, Zhou, Huang and Darrell, "Rethinking the Value of Network
Pruning", ICLR 2019): the architecture comes from pruning the trained baseline, the weights do not.

The paper trains the small model two ways: *Scratch-E*, the same number of epochs as the large model, and
*Scratch-B*, the same computation budget - the large model's training FLOPs - which for a pruned model means more
epochs (``epochs x FLOPs_large / FLOPs_small``). The paper reports Scratch-B matching or beating fine-tuning for
every structured method it examined.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
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
    schedule_allocation,
)
from edgebench.train import train
from edgebench.variants import PruneSpec, TrainSpec

log = logging.getLogger(__name__)


def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh random weights (and BN statistics) for every layer, keeping the architecture."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def scratch_b_epochs(epochs: int, macs_large: int, macs_small: int) -> int:
    """Scratch-B's epochs: the large model's training computation spent on the small one,
    ``round(epochs * macs_large / macs_small)`` (at least ``epochs``)."""
    return max(epochs, round(epochs * macs_large / max(macs_small, 1)))


@SCHEDULES.register("scratch")
class ScratchE(Schedule):
    """Scratch-E: prune the trained baseline once to find the architecture, re-initialise it and train it for the
    baseline's epochs. Its training compute is the scratch run's alone."""

    counts_baseline = False
    #: Scratch-B's override: epochs of the scratch run given the baseline's epochs and both models' MACs
    budget_matched = False

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
            spec: PruneSpec, progress: Progress = None, workdir: Path | None = None) -> ScheduleResult:
        shape = tuple(splits.input_shape)
        original, macs_large = conv_filters(model), count_macs(model, shape)
        allocation = schedule_allocation(spec, workdir)
        removed = apply_prune(model, criterion, spec, spec.ratio, splits, original, macs_large, allocation,
                              seed=train_spec.seed)
        log.info("pruned at ratio %.2f of %s: %.1f%% of the filters removed", spec.ratio, spec.unit, 100 * removed)
        epochs = train_spec.epochs
        if self.budget_matched:
            epochs = scratch_b_epochs(train_spec.epochs, macs_large, count_macs(model, shape))
            log.info("Scratch-B: %d epochs instead of %d (MACs %d -> %d)", epochs, train_spec.epochs, macs_large,
                     count_macs(model, shape))
        reinitialise(model, train_spec.seed)
        result = train(model, splits, train_spec, epochs=epochs, progress=progress)
        return ScheduleResult(result.history, result.training_macs, result.val_accuracy, allocation_record(allocation))


@SCHEDULES.register("scratch_b")
class ScratchB(ScratchE):
    """Scratch-B: as Scratch-E, trained for the baseline's computation budget instead of its epochs
    (:func:`scratch_b_epochs`)."""

    budget_matched = True
