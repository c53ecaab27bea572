"""Magnitude pruning with retraining (Han, Pool, Tran and Dally, "Learning both Weights and Connections for
Efficient Neural Networks", NeurIPS 2015), optionally followed by Deep Compression's weight sharing and Huffman
coding (Han, Mao and Dally, ICLR 2016).

Three steps: train the dense network (the pipeline's baseline), remove the connections of small magnitude, retrain
the rest with the removed ones held at zero - iterated, the sparsity growing ``sparsity * k / steps`` at step ``k``.
Each layer ``l`` has its own threshold, a quality parameter ``q`` times the standard deviation ``sigma_l`` of the
layer's weights (of the trained dense network): a weight is removed when ``|w| < q sigma_l``. The threshold scales
with the layer, so how widely its weights spread does not decide what it loses (scaling a layer's weights scales
``q sigma_l`` alike); the shape of its distribution does: a layer with many weights near zero and a few large ones
(heavy tails, which inflate ``sigma_l``) loses more than one of Gaussian weights, and the per-layer sparsity
pattern of the paper emerges from those shapes. edgebench compares
methods at a requested overall sparsity, so ``q`` is solved for it: pruning ``|w| < q sigma_l`` in every layer is
ranking all weights by ``|w| / sigma_l`` and removing the lowest, so the solved ``q`` is exact (to one weight) and is
recorded. Weights pruned at one step rank lowest at the next, so the masks only grow. ``thresholds: uniform`` gives
every layer the same sparsity instead (edgebench's earlier form).

After sharing, the model's Deep Compression size - pruned, shared and Huffman coded (``storage.py``) - is kept with
the variant as ``compression``. Reported: 9x fewer parameters on AlexNet and 13x on VGG-16 (ImageNet) without
accuracy loss; with sharing and Huffman coding 35x and 49x smaller.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import ScheduleResult
from edgebench.prune.sparse.base import SPARSE_METHODS, Progress, SparseMethod, finetune
from edgebench.prune.sparse.masks import (
    MaskedWeights,
    Masks,
    apply_masks,
    global_masks,
    layerwise_masks,
    prunable_layers,
)
from edgebench.prune.sparse.sharing import SharedWeights
from edgebench.prune.sparse.storage import deep_compression_size
from edgebench.train import evaluate
from edgebench.variants import TrainSpec


def magnitude_masks(model: nn.Module, sparsity: float) -> Masks:
    """Per layer, keep the largest-magnitude weights so each layer has ``sparsity`` of its weights removed."""
    return layerwise_masks({n: m.weight.detach().abs() for n, m in prunable_layers(model).items()}, sparsity)


def layer_stds(model: nn.Module) -> dict[str, float]:
    """Standard deviation of each conv/linear layer's weights."""
    return {n: float(m.weight.detach().double().std()) for n, m in prunable_layers(model).items()}


def quality_masks(model: nn.Module, sparsity: float, stds: dict[str, float]) -> tuple[Masks, float]:
    """Han et al.'s per-layer thresholds ``q sigma_l`` with ``q`` solved so ``sparsity`` of all weights go; returns
    the masks and ``q`` (the smallest kept ``|w| / sigma_l``)."""
    scores = {n: m.weight.detach().abs().double() / max(stds[n], 1e-30) for n, m in prunable_layers(model).items()}
    masks = global_masks(scores, sparsity)
    quality = min(float(s[masks[n]].min()) for n, s in scores.items() if masks[n].any())
    return masks, quality


@SPARSE_METHODS.register("magnitude")
class IterativeMagnitude(SparseMethod):
    """Han et al.'s iterative magnitude pruning of a trained network (see the module docstring).

    Args:
        sparsity: fraction of all conv/linear weights removed.
        steps: prune/retrain iterations (the sparsity ramps to the target).
        finetune_epochs: retraining epochs after each step (at a tenth of the learning rate).
        thresholds: ``quality_std`` (the paper's per-layer ``q x std``) or ``uniform`` (each layer at ``sparsity``).
        share_bits: when set, Deep Compression's weight sharing: ``2**share_bits`` shared values per conv layer
            (the paper: 8), then ``finetune_epochs`` more epochs training the shared values.
        fc_share_bits: bits of the fully connected layers' codebooks (the paper: 5; default ``share_bits``).
    """

    from_baseline = True
    paper_allocation = "quality_std"
    revision = 1  # per-layer q x std thresholds (was the same sparsity in every layer); compression recorded

    def __init__(self, sparsity: float, steps: int = 3, finetune_epochs: int = 2,
                 thresholds: Literal["quality_std", "uniform"] = "quality_std", share_bits: int | None = None,
                 fc_share_bits: int | None = None) -> None:
        super().__init__(sparsity)
        if steps < 1 or finetune_epochs < 0:
            raise ValueError("magnitude: steps must be >= 1 and finetune_epochs >= 0")
        if thresholds not in ("quality_std", "uniform"):
            raise ValueError(f"magnitude: thresholds must be 'quality_std' or 'uniform', got '{thresholds}'")
        if fc_share_bits is not None and share_bits is None:
            raise ValueError("magnitude: fc_share_bits needs share_bits (weight sharing) set too")
        self.steps, self.finetune_epochs, self.thresholds = steps, finetune_epochs, thresholds
        self.share_bits, self.fc_share_bits = share_bits, fc_share_bits
        self.qualities: list[float] = []

    def masks(self, model: nn.Module, sparsity: float, stds: dict[str, float]) -> Masks:
        """The step's masks (and the solved quality parameter, recorded in :attr:`qualities`)."""
        if self.thresholds == "uniform":
            return magnitude_masks(model, sparsity)
        masks, quality = quality_masks(model, sparsity, stds)
        self.qualities.append(quality)
        return masks

    def share_widths(self, model: nn.Module) -> dict[str, int | None]:
        """Codebook bits per layer: ``fc_share_bits`` for linear layers, ``share_bits`` for the others."""
        fc = self.fc_share_bits if self.fc_share_bits is not None else self.share_bits
        return {n: fc if isinstance(m, nn.Linear) else self.share_bits for n, m in prunable_layers(model).items()}

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None) -> ScheduleResult:
        history: list[dict] = []
        macs = 0
        stds = layer_stds(model)  # of the trained dense network: the thresholds' scale per layer
        for step in range(1, self.steps + 1):
            ratio = self.sparsity * step / self.steps
            masks = self.masks(model, ratio, stds)
            apply_masks(model, masks)
            if self.finetune_epochs:
                result = finetune(model, splits, train_spec, [MaskedWeights(masks)], self.finetune_epochs, progress)
                history += [{**h, "step": step, "sparsity": ratio} for h in result.history]
                macs += result.training_macs
        widths = self.share_widths(model) if self.share_bits is not None else {}
        if widths:
            sharing = SharedWeights(model, widths)
            if self.finetune_epochs:
                result = finetune(model, splits, train_spec, [sharing], self.finetune_epochs, progress)
                history += [{**h, "step": "share", "share_bits": self.share_bits} for h in result.history]
                macs += result.training_macs
        with torch.no_grad():
            compression = deep_compression_size(model, widths)
        compression["quality"] = self.qualities[-1] if self.qualities else None
        return ScheduleResult(history, macs, evaluate(model, splits.x_val, splits.y_val), compression=compression)
