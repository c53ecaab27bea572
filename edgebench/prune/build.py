"""The entry point the pipeline calls: turn a VariantSpec into a trained fp32 model - the baseline, or a
structured, sparse or low-rank variant of it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.models.cost import conv_filters, count_macs, count_nonzero_params, count_params
from edgebench.models.source import new_model
from edgebench.prune.allocation import ALLOCATIONS
from edgebench.prune.criteria import create_criterion
from edgebench.prune.lowrank import train_lowrank
from edgebench.prune.schedules import SCHEDULES, ScheduleResult, default_prune_epochs, schedule_allocation
from edgebench.prune.sparse import create_sparse_method
from edgebench.quantization.qat import QuantizationAwareTraining, default_start_epoch
from edgebench.train import TrainHook, train
from edgebench.variants import VariantSpec

log = logging.getLogger(__name__)

StageProgress = Callable[[str, int, int], None] | None


@dataclass
class BuiltModel:
    """A trained fp32 model with its costs: what every later stage (quantize, export, measure) starts from."""

    model: nn.Module  # fp32, eval mode, CPU, physically pruned
    params: int
    macs: int  # per sample
    training_macs: int  # whole schedule (baseline training included for oneshot/iterative)
    filters: dict[str, int]  # conv name -> out channels
    val_accuracy: float
    history: list[dict] = field(default_factory=list)
    #: parameters that are not exactly zero, and the MACs of non-zero weights (what a sparse kernel computes);
    #: None in cache entries written before they were recorded
    nonzero_params: int | None = None
    nonzero_macs: int | None = None
    #: what the per-layer allocation decided and measured (the latency allocation: budget, measured p50, whether
    #: it was met and why not); None without one that records anything
    allocation: dict[str, Any] | None = None
    #: Han et al.'s Deep Compression size of a magnitude-pruned model (pruned / shared / Huffman-coded bits and the
    #: compression ratios); None for other variants
    compression: dict[str, Any] | None = None
    #: what of the method is edgebench's reading rather than its paper's (criterion, allocation or sparse method);
    #: the report marks such series
    method_note: str | None = None


def _built(model: nn.Module, splits: DatasetSplits, training_macs: int, val: float, history: list[dict],
           allocation: dict[str, Any] | None = None, compression: dict[str, Any] | None = None,
           method_note: str | None = None) -> BuiltModel:
    model.eval()
    return BuiltModel(
        model=model,
        params=count_params(model),
        macs=count_macs(model, tuple(splits.input_shape)),
        training_macs=int(training_macs),
        filters=conv_filters(model),
        val_accuracy=val,
        history=history,
        nonzero_params=count_nonzero_params(model),
        nonzero_macs=count_macs(model, tuple(splits.input_shape), nonzero=True),
        allocation=allocation,
        compression=compression,
        method_note=method_note,
    )


def _stage(progress: StageProgress, name: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(name, done, total))


def train_baseline(
    spec: VariantSpec, splits: DatasetSplits, hooks: list[TrainHook] | None = None, progress: StageProgress = None
) -> BuiltModel:
    """Train the unpruned model of ``spec`` (``hooks``: e.g. a sparsity penalty)."""
    model = new_model(spec, splits)
    result = train(model, splits, spec.train, hooks=hooks or [], progress=_stage(progress, "train"))
    return _built(model, splits, result.training_macs, result.val_accuracy, result.history)


def starts_from_baseline(spec: VariantSpec) -> bool:
    """Whether building ``spec`` starts from the trained baseline, as its schedule or sparse method declares
    (``from_baseline``): what its build waits for. Low-rank training, pruning while training and sparse methods that
    train from scratch (SNIP, RigL) do not."""
    if spec.prune is not None:
        return SCHEDULES.get(spec.prune.schedule).from_baseline
    if spec.sparse is not None:
        return create_sparse_method(spec.sparse.method, spec.sparse.sparsity, **spec.sparse.kwargs).from_baseline
    return False


def build_fp32_model(
    spec: VariantSpec,
    splits: DatasetSplits,
    baseline: BuiltModel | None = None,
    progress: StageProgress = None,
    workdir: Path | None = None,
) -> BuiltModel:
    """Train the baseline, or run the prune schedule, sparse method or low-rank training of ``spec``.

    ``baseline`` (a trained unpruned BuiltModel of the same model/dataset/training) is reused - deep-copied,
    never mutated - by the schedules that start from it (``Schedule.from_baseline``) and by sparse methods that
    prune a trained network; it is trained here when missing. A criterion that needs a training-time term (bn_scale's
    L1 on BN scales) always trains its own sparsity-regularised baseline, as Network Slimming does. ``workdir``
    (the run's) is where a per-layer allocation keeps what it measures (the latency allocation's tables).
    """
    if spec.quant.qat is not None and not spec.hosts_qat:
        raise ValueError(f"{spec.label}: quantization-aware training joins a training run from scratch (the baseline "
                         "or while_training pruning), not this variant's")
    if spec.sparse is not None:
        return _build_sparse(spec, splits, baseline, progress)
    if spec.lowrank is not None:
        lr = spec.lowrank
        model = new_model(spec, splits)
        res = train_lowrank(model, splits, spec.train, lr.rank_ratio, lr.energy_transfer, lr.bn_rectification,
                            _stage(progress, "train"))
        return _built(model, splits, res.training_macs, res.val_accuracy, res.history)
    prune = spec.prune
    qat = _qat_hooks(spec)
    if prune is None:
        return train_baseline(spec, splits, hooks=qat, progress=progress)
    criterion = create_criterion(prune.criterion, **prune.criterion_kwargs)
    schedule = SCHEDULES.get(prune.schedule)()
    if schedule.from_baseline:
        hook = criterion.training_hook()
        if hook is not None or baseline is None:
            baseline = train_baseline(spec, splits, hooks=[hook] if hook else None, progress=progress)
        model = copy.deepcopy(baseline.model)
    else:
        model = new_model(spec, splits)
    joined = {"hooks": qat} if qat else {}  # quantization-aware training joins the schedule's own training run
    before = count_macs(model, tuple(splits.input_shape))
    res = schedule.run(model, splits, spec.train, criterion, prune, _stage(progress, schedule.stage), workdir, **joined)
    if not isinstance(res, ScheduleResult):  # a plug-in's: else an AttributeError below that names neither
        got = "None" if res is None else f"a {type(res).__name__} ({res!r:.60})"
        raise TypeError(f"schedule '{prune.schedule}' (class {type(schedule).__name__}) returned {got} from run(); "
                        "run() must return a ScheduleResult (edgebench.prune.schedules.base)")
    if prune.unit == "macs":
        _warn_macs_overshoot(prune.ratio, before, count_macs(model, tuple(splits.input_shape)))
    counted = baseline if schedule.counts_baseline and baseline is not None else None
    allocation = prune.allocation or ("global" if prune.scope == "global" else "uniform")
    note = "; ".join(r for r in (criterion.reading, ALLOCATIONS.get(allocation).reading) if r) or None
    return _built(model, splits, (counted.training_macs if counted else 0) + res.training_macs, res.val_accuracy,
                  (counted.history if counted else []) + res.history, res.allocation, method_note=note)


#: how far past the asked share of MACs (``unit: macs``) a pruned model may land before a warning says so
MACS_OVERSHOOT = 0.05


def _warn_macs_overshoot(ratio: float, before: int, after: int) -> None:
    """Warn where whole filters removed far more MACs than asked (few or grouped filters a layer: coarse steps);
    the run prints what workers warn."""
    removed = 1 - after / before
    if removed - ratio > MACS_OVERSHOOT:
        log.warning("asked to remove %.1f%% of the MACs, removed %.1f%%: whole filters are coarse steps at these "
                    "layer widths", 100 * ratio, 100 * removed)


def _qat_hooks(spec: VariantSpec) -> list[TrainHook]:
    """The quantization-aware-training hook of a QAT spec's training run (none for float specs): quantizers are
    inserted after the last pruning step, into the final architecture."""
    qat = spec.quant.qat
    if qat is None:
        return []
    prune_epochs = ()
    if spec.prune is not None and spec.prune.schedule == "while_training":
        prune_epochs = spec.prune.prune_epochs or default_prune_epochs(spec.train.epochs)
    start = qat.start_epoch if qat.start_epoch is not None else default_start_epoch(spec.train.epochs, prune_epochs)
    return [QuantizationAwareTraining(qat, start, max(prune_epochs) if prune_epochs else None)]


def prepare_allocation(spec: VariantSpec, splits: DatasetSplits, workdir: Path | None = None) -> None:
    """Run the ``prepare`` of ``spec``'s allocation on the unpruned model, before any training.

    For allocations that time models (``Allocation.timed``) the sweep runs this as a timed task, so their
    measurements hold the host alone; what they measure depends only on the architecture, so they keep it under
    ``workdir`` and the variant's build (and every other variant with the same allocation) reads it back.
    """
    if spec.prune is None or not spec.prune.allocation:
        return
    allocation = schedule_allocation(spec.prune, workdir)
    model = new_model(spec, splits).eval()
    allocation.prepare(model, torch.as_tensor(splits.x_train[:1]), None)
    allocation.release()


def _build_sparse(spec: VariantSpec, splits: DatasetSplits, baseline: BuiltModel | None,
                  progress: StageProgress) -> BuiltModel:
    """Train a sparse variant from scratch, or prune a copy of the trained baseline (Han et al.)."""
    method = create_sparse_method(spec.sparse.method, spec.sparse.sparsity, **spec.sparse.kwargs)
    if not method.from_baseline:
        model = new_model(spec, splits)
        res = method.run(model, splits, spec.train, _stage(progress, "train"))
        return _built(model, splits, res.training_macs, res.val_accuracy, res.history, method_note=method.reading)
    if baseline is None:
        baseline = train_baseline(spec, splits, progress=progress)
    model = copy.deepcopy(baseline.model)
    res = method.run(model, splits, spec.train, _stage(progress, "finetune"))
    return _built(model, splits, baseline.training_macs + res.training_macs, res.val_accuracy,
                  baseline.history + res.history, compression=res.compression, method_note=method.reading)
