"""Magnitude pruning with retraining (Han et al., "Learning both Weights and Connections for Efficient
Neural Networks", NeurIPS 2015), optionally followed by weight sharing (Deep Compression, ICLR 2016).

Three steps: train the dense network (the pipeline's baseline), remove the connections of smallest
magnitude, retrain the rest with the removed ones held at zero - iterated, so the sparsity grows
``sparsity * k / steps`` at step ``k``. A weight ``w`` of layer ``l`` is kept when ``|w| > t_l``. The paper sets
``t_l`` to a quality parameter times the standard deviation of the layer's weights; edgebench sets it to the
magnitude quantile that removes exactly ``round(s * n_l)`` of the layer's ``n_l`` weights, so variants compare
at equal, known sparsity. Weights pruned at one step are the smallest (zero) at the next, so the masks only grow.
Reported: 9x fewer parameters on AlexNet and 13x on VGG-16 (ImageNet) without accuracy loss.
"""

from __future__ import annotations

from torch import nn

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import ScheduleResult
from edgebench.prune.sparse.base import SPARSE_METHODS, Progress, SparseMethod, finetune
from edgebench.prune.sparse.masks import MaskedWeights, Masks, apply_masks, layerwise_masks, prunable_layers
from edgebench.prune.sparse.sharing import SharedWeights
from edgebench.train import evaluate
from edgebench.variants import TrainSpec


def magnitude_masks(model: nn.Module, sparsity: float) -> Masks:
    """Per layer, keep the largest-magnitude weights so each layer has ``sparsity`` of its weights removed."""
    return layerwise_masks({n: m.weight.detach().abs() for n, m in prunable_layers(model).items()}, sparsity)


@SPARSE_METHODS.register("magnitude")
class IterativeMagnitude(SparseMethod):
    """Han et al.'s iterative magnitude pruning of a trained network.

    Args:
        sparsity: fraction of every conv/linear layer's weights removed.
        steps: prune/retrain iterations (the sparsity ramps to the target).
        finetune_epochs: retraining epochs after each step (at a tenth of the learning rate).
        share_bits: when set, Deep Compression's weight sharing: ``2**share_bits`` shared values per layer,
            then ``finetune_epochs`` more epochs training the shared values.
    """

    from_baseline = True

    def __init__(self, sparsity: float, steps: int = 3, finetune_epochs: int = 2, share_bits: int | None = None) -> None:
        super().__init__(sparsity)
        if steps < 1 or finetune_epochs < 0:
            raise ValueError("magnitude: steps must be >= 1 and finetune_epochs >= 0")
        self.steps, self.finetune_epochs, self.share_bits = steps, finetune_epochs, share_bits

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None) -> ScheduleResult:
        history: list[dict] = []
        macs = 0
        masks: Masks = {}
        for step in range(1, self.steps + 1):
            ratio = self.sparsity * step / self.steps
            masks = magnitude_masks(model, ratio)
            apply_masks(model, masks)
            if self.finetune_epochs:
                result = finetune(model, splits, train_spec, [MaskedWeights(masks)], self.finetune_epochs, progress)
                history += [{**h, "step": step, "sparsity": ratio} for h in result.history]
                macs += result.training_macs
        if self.share_bits is not None:
            sharing = SharedWeights(model, self.share_bits)
            if self.finetune_epochs:
                result = finetune(model, splits, train_spec, [sharing], self.finetune_epochs, progress)
                history += [{**h, "step": "share", "share_bits": self.share_bits} for h in result.history]
                macs += result.training_macs
        return ScheduleResult(history, macs, evaluate(model, splits.x_val, splits.y_val))
