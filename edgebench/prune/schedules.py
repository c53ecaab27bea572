"""When filters are removed: pruning while training (a train hook), one-shot + finetune, iterative, scratch.

Each schedule returns the pruned model's training result including its whole training compute, so
the report can put the compute pruning-while-training saves next to train -> prune -> retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.models.cost import conv_filters, count_macs
from edgebench.prune.allocation import Allocation, create_allocation
from edgebench.prune.criteria import Criterion, ScoringData
from edgebench.prune.structured import prune_model
from edgebench.train import TrainHook, TrainResult, TrainState, evaluate, train
from edgebench.variants import PruneSpec, TrainSpec

log = logging.getLogger(__name__)

#: finetuning starts from a trained network, so it uses a smaller learning rate (Li et al. 2017 use 1/10)
FINETUNE_LR_FACTOR = 0.1
#: training samples a data-dependent criterion looks at per pruning step
SCORING_SAMPLES = 512

Progress = Callable[[int, int], None] | None


def default_prune_epochs(epochs: int) -> tuple[int, ...]:
    """Prune after ~25%, 50% and 75% of the run (0-based epoch indices), leaving training after the last."""
    last = max(epochs - 2, 0)
    picks = {min(max(round(epochs * f) - 1, 0), last) for f in (0.25, 0.5, 0.75)}
    return tuple(sorted(picks))


def schedule_allocation(spec: PruneSpec, workdir: Path | None = None) -> Allocation | None:
    """The spec's per-layer allocation, created once per schedule so that the steps of a ramp share what it
    decided (``workdir``: where it may keep what it measures)."""
    if not spec.allocation:
        return None
    allocation = create_allocation(spec.allocation, **spec.allocation_kwargs)
    allocation.begin(spec, workdir)
    return allocation


def scoring_data(x: torch.Tensor, y: torch.Tensor, seed: int, n: int = SCORING_SAMPLES) -> ScoringData:
    """A fixed-seed sample of the training split for data-dependent criteria."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return ScoringData(x[idx], y[idx])


class PruneWhileTraining(TrainHook):
    """Seed 001 (Roy et al. 2020): remove filters at the end of chosen epochs of the training run itself.

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
        apply_prune(state.model, self.criterion, self.spec, ratio, state, self._original, self._original_macs,
                    self.allocation)
        state.rebuild_optimizer()
        state.history[-1]["pruned_ratio"] = ratio
        unit = self.allocation.ratio_of if self.allocation is not None and self.allocation.ratio_of else self.spec.unit
        log.info("epoch %d: pruned to %.0f%% of %s", state.epoch, 100 * ratio, unit)


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
) -> None:
    """Prune ``model`` to ``ratio`` of its original filters/MACs, scoring on a training sample, split between
    layers by ``allocation`` (the spec's, from :func:`schedule_allocation`; None: ``spec.scope``)."""
    x = torch.as_tensor(state_or_splits.x_train)
    y = torch.as_tensor(state_or_splits.y_train)
    needs_data = criterion.needs_data or (allocation is not None and allocation.needs_data)
    data = scoring_data(x, y, seed) if needs_data else None
    prune_model(
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
        allocation=allocation,
    )


@dataclass
class ScheduleResult:
    """The pruned model's history and its whole schedule's training compute."""

    history: list[dict]
    training_macs: int
    val_accuracy: float
    allocation: dict[str, Any] | None = None  # what the per-layer allocation decided and measured


def _hooks(criterion: Criterion) -> list[TrainHook]:
    hook = criterion.training_hook()
    return [hook] if hook is not None else []


def _record(allocation: Allocation | None) -> dict[str, Any] | None:
    return allocation.record() if allocation is not None else None


def while_training(
    model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion, spec: PruneSpec,
    progress: Progress = None, workdir: Path | None = None, hooks: Sequence[TrainHook] = (),
) -> ScheduleResult:
    """Train from scratch, removing filters at ``spec.prune_epochs`` (default: ~25/50/75% of the run);
    ``workdir``: where the spec's allocation may keep what it measures; ``hooks``: more of the same run's hooks,
    called after the pruning step (quantization-aware training joins here)."""
    epochs = spec.prune_epochs or default_prune_epochs(train_spec.epochs)
    hook = PruneWhileTraining(criterion, spec, epochs, workdir)
    result = train(model, splits, train_spec, hooks=[*_hooks(criterion), hook, *hooks], progress=progress)
    return ScheduleResult(result.history, result.training_macs, result.val_accuracy, _record(hook.allocation))


def _finetune(model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion,
              epochs: int, progress: Progress) -> TrainResult | None:
    if epochs == 0:
        return None
    spec = train_spec.model_copy(update={"lr": train_spec.lr * FINETUNE_LR_FACTOR})
    return train(model, splits, spec, hooks=_hooks(criterion), epochs=epochs, progress=progress)


def prune_and_finetune(
    model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, criterion: Criterion, spec: PruneSpec,
    steps: int, progress: Progress = None, workdir: Path | None = None,
) -> ScheduleResult:
    """Prune a trained ``model`` in ``steps`` equal ratio steps, each followed by ``spec.finetune_epochs``.

    ``steps=1`` is train -> prune once -> finetune (Li et al., Han et al.); more steps is Molchanov's
    iterative prune/finetune. ``training_macs`` counts only the finetuning here. ``workdir``: where the spec's
    allocation may keep what it measures.
    """
    original, original_macs = conv_filters(model), count_macs(model, tuple(splits.input_shape))
    allocation = schedule_allocation(spec, workdir)
    history: list[dict] = []
    macs = 0
    for step in range(1, steps + 1):
        ratio = spec.ratio * step / steps
        apply_prune(model, criterion, spec, ratio, splits, original, original_macs, allocation,
                    seed=train_spec.seed + step)
        result = _finetune(model, splits, train_spec, criterion, spec.finetune_epochs, progress)
        if result is not None:
            history += [{**h, "step": step, "pruned_ratio": ratio} for h in result.history]
            macs += result.training_macs
    return ScheduleResult(history, macs, evaluate(model, splits.x_val, splits.y_val), _record(allocation))


def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh random weights (and BN statistics) for every layer, keeping the architecture."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def scratch(
    pruned_arch: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None
) -> ScheduleResult:
    """Liu et al. 2019 ("Rethinking the Value of Network Pruning"): re-initialise the pruned architecture in
    place and train it with the baseline's epoch budget."""
    reinitialise(pruned_arch, train_spec.seed)
    result = train(pruned_arch, splits, train_spec, progress=progress)
    return ScheduleResult(result.history, result.training_macs, result.val_accuracy)
