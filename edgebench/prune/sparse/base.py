"""The unstructured-sparsity method interface and its registry.

A method turns a model into a trained sparse one whose zeros are stored in its weights (``masks.py``); the
pipeline then caches, exports and measures it like any other variant. Training compute is accounted as the
dense kernels PyTorch actually ran (``train.py``), not as the theoretical sparse FLOPs: on CPU, masked
training costs what dense training costs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import FINETUNE_LR_FACTOR, Progress, ScheduleResult
from edgebench.registry import Registry
from edgebench.train import TrainHook, TrainResult, train
from edgebench.variants import TrainSpec


class SparseMethod(ABC):
    """Produces a model with ``sparsity`` of its conv/linear weights exactly zero.

    Args:
        sparsity: fraction of conv/linear weights removed, strictly between 0 and 1.
    """

    #: True when the method prunes a trained dense network (Han et al.); False when it trains from scratch
    from_baseline: bool = False
    #: how the paper spreads the sparsity over layers (documentation; the method's own options pick another)
    paper_allocation: ClassVar[str] = "global"
    #: bumped when what the method builds changes, so variants built with the old definition get new ids
    revision: ClassVar[int] = 0
    #: set when (part of) the method is edgebench's construction rather than the paper's (shown in the report)
    reading: ClassVar[str | None] = None

    def __init__(self, sparsity: float) -> None:
        if not 0 < sparsity < 1:
            raise ValueError(f"sparsity must be strictly between 0 and 1, got {sparsity}")
        self.sparsity = float(sparsity)

    @abstractmethod
    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None) -> ScheduleResult:
        """Make ``model`` sparse in place (a fresh model, or a copy of the trained baseline when
        ``from_baseline``) and return its training history and compute."""


SPARSE_METHODS: Registry[type[SparseMethod]] = Registry("sparse method", group="edgebench.sparse_methods",
                                                               base=SparseMethod)


def create_sparse_method(name: str, sparsity: float, **kwargs: object) -> SparseMethod:
    """Instantiate the registered sparse method ``name`` at ``sparsity`` with its keyword options."""
    return SPARSE_METHODS.get(name)(sparsity, **kwargs)


def finetune(model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, hooks: list[TrainHook], epochs: int,
             progress: Progress = None) -> TrainResult:
    """Retrain a pruned trained network at a tenth of the learning rate (as structured finetuning does)."""
    spec = train_spec.model_copy(update={"lr": train_spec.lr * FINETUNE_LR_FACTOR})
    return train(model, splits, spec, hooks=hooks, epochs=epochs, progress=progress)


def first_batch(splits: DatasetSplits, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed-seed batch of the training split (SNIP's single batch)."""
    x, y = torch.as_tensor(splits.x_train), torch.as_tensor(splits.y_train)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:batch_size]
    return x[idx], y[idx]
