"""SNIP: single-shot network pruning at initialisation (Lee, Ajanthan and Torr, ICLR 2019).

On one mini-batch ``D`` of training data, before any training, each connection ``j`` gets the connection
sensitivity ``s_j = |g_j(w; D)| / sum_k |g_k(w; D)|`` with ``g_j = dL/dc_j`` the derivative of the loss with
respect to a multiplicative gate ``c_j`` on the connection at ``c = 1``, i.e. ``g_j = w_j * dL/dw_j``. The
``1 - sparsity`` highest-sensitivity connections of the whole network (ranked globally) are kept; the sparse
network is then trained as usual. Reported: extremely sparse networks (90-99 % of the weights removed) with
virtually the reference accuracy on MNIST, CIFAR-10 and Tiny-ImageNet.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import ScheduleResult
from edgebench.prune.sparse.base import SPARSE_METHODS, Progress, SparseMethod, first_batch
from edgebench.prune.sparse.masks import MaskedWeights, Masks, global_masks, prunable_layers
from edgebench.train import train
from edgebench.variants import TrainSpec


def connection_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``|w * dL/dw|`` of every conv/linear weight on the batch (x, y), normalised to sum to one overall.

    BatchNorm uses the batch's statistics (training mode), as at the first step of training; the model's
    running statistics are restored afterwards so scoring leaves the model unchanged.
    """
    layers = prunable_layers(model)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    was_training = model.training
    model.train()
    weights = [m.weight for m in layers.values()]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    model.train(was_training)
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
    scores = {n: (w.detach() * g).abs() for n, w, g in zip(layers, weights, grads)}
    total = sum(float(s.sum()) for s in scores.values())
    return {n: s / max(total, 1e-30) for n, s in scores.items()}


def snip_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sparsity: float) -> Masks:
    """The SNIP masks of ``model`` at ``sparsity`` from one batch."""
    return global_masks(connection_sensitivity(model, x, y), sparsity)


@SPARSE_METHODS.register("snip")
class SNIP(SparseMethod):
    """Prune the freshly initialised network once by connection sensitivity, then train the sparse network.

    Args:
        sparsity: fraction of all conv/linear weights removed (globally ranked).
        batch_size: size of the single scoring batch (default: the training batch size).
    """

    paper_allocation = "global"

    def __init__(self, sparsity: float, batch_size: int | None = None) -> None:
        super().__init__(sparsity)
        self.batch_size = batch_size

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None) -> ScheduleResult:
        x, y = first_batch(splits, self.batch_size or train_spec.batch_size, train_spec.seed)
        masks = snip_masks(model, x, y, self.sparsity)
        result = train(model, splits, train_spec, hooks=[MaskedWeights(masks)], progress=progress)
        return ScheduleResult(result.history, result.training_macs, result.val_accuracy)
