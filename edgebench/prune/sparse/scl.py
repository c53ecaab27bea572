"""SCL: sparse connectivity learning (Tang et al., "Automatic Sparse Connectivity Learning for Neural
Networks", IEEE TNNLS 2022).

Each conv/linear weight is re-parameterised as ``w_eff = w * H(m)``: a trainable weight ``w`` times a binary
mask given by the unit step ``H(m) = [m > 0]`` of a trainable score ``m``. The step has no useful derivative, so
the backward pass uses the identity straight-through estimator, ``dH/dm := 1``, giving
``dL/dm = dL/dw_eff * w`` - the estimator the paper proves keeps mask variables converging. Mask gradients of
different features are very unbalanced, so each output feature's mask gradient is normalised (here: divided
by its root mean square), and the number of connections ``sum H(m)`` enters the objective as
``L + lam * sum H(m)``, whose straight-through gradient adds ``lam`` to every score's gradient.

The mask scores are not weights: they have their own optimizer, plain SGD at a constant rate (``score_lr_scale``
times the weights' initial rate) with neither momentum nor weight decay - decay would pull every score towards
the step's threshold at zero and switch connections off for no reason of the loss. (The paper's own optimizer for
the masks is not in its abstract; this choice is edgebench's reading.)

The paper lets ``lam`` pick the sparsity. edgebench compares methods at a requested sparsity, so during mask
learning (the first ``mask_fraction`` of the epochs) ``lam`` is multiplied by ``exp(gain * (sparsity - s_t))``
after every step, ``s_t`` being the learned sparsity (scores not positive). Masked weights stop learning, so the
learned sparsity tends to overshoot the target; at the end of mask learning the mask is fixed at exactly the
requested count - the connections with the highest learned scores - and the remaining epochs train the weights
under it. The history records the learned sparsity (``learned_sparsity``) before that cut.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import ScheduleResult
from edgebench.prune.sparse.base import SPARSE_METHODS, Progress, SparseMethod
from edgebench.prune.sparse.masks import MaskedWeights, global_masks, prunable_layers
from edgebench.train import TrainHook, TrainState, train
from edgebench.variants import TrainSpec


class StepMask(nn.Module):
    """Parametrisation ``w -> w * H(scores)`` with the identity straight-through estimator for ``H``."""

    def __init__(self, shape: torch.Size, init: float) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        hard = (self.scores > 0).to(weight.dtype)
        # value: hard; derivative w.r.t. scores: 1 (straight through)
        return weight * (hard + self.scores - self.scores.detach())


def attach_masks(model: nn.Module, init: float) -> dict[str, StepMask]:
    """Re-parameterise every conv/linear weight of ``model`` with a :class:`StepMask`."""
    masks = {}
    for name, layer in prunable_layers(model).items():
        masks[name] = StepMask(layer.weight.shape, init)
        parametrize.register_parametrization(layer, "weight", masks[name])
    return masks


def normalise_feature_grads(grad: torch.Tensor) -> torch.Tensor:
    """Each output feature's (row's) mask gradient divided by its root mean square."""
    rows = grad.flatten(1)
    rms = rows.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)
    return (rows / rms).view_as(grad)


class SparseConnectivityLearning(TrainHook):
    """Learns the masks, adapts ``lam`` towards the target, then fixes an exact mask (see the module docstring)."""

    def __init__(self, masks: dict[str, StepMask], sparsity: float, lam: float, gain: float, score_lr_scale: float,
                 mask_epochs: int) -> None:
        self.step_masks, self.sparsity = masks, sparsity
        self.lam, self.gain, self.score_lr_scale, self.mask_epochs = lam, gain, score_lr_scale, mask_epochs
        self.fixed: MaskedWeights | None = None
        self.learned_sparsity = 0.0
        self.score_optimizer: torch.optim.Optimizer | None = None

    def scores(self) -> list[nn.Parameter]:
        """The mask scores of every layer."""
        return [m.scores for m in self.step_masks.values()]

    def on_train_start(self, state: TrainState) -> None:
        """The weights' optimizer without the scores; the scores' own: SGD, no momentum, no weight decay."""
        ids = {id(p) for p in self.scores()}
        spec = state.spec
        state.optimizer = torch.optim.SGD([p for p in state.model.parameters() if id(p) not in ids], lr=state.lr,
                                          momentum=spec.momentum, weight_decay=spec.weight_decay)
        self.score_optimizer = torch.optim.SGD(self.scores(), lr=self.score_lr_scale * spec.lr, momentum=0.0,
                                               weight_decay=0.0)

    def current_sparsity(self) -> float:
        """Fraction of connections whose score is not positive."""
        off = sum(int((m.scores <= 0).sum()) for m in self.step_masks.values())
        return off / sum(m.scores.numel() for m in self.step_masks.values())

    def after_backward(self, state: TrainState) -> None:
        if self.fixed is not None:
            self.fixed.after_backward(state)
            return
        for m in self.step_masks.values():
            if m.scores.grad is not None:
                m.scores.grad.copy_(normalise_feature_grads(m.scores.grad) + self.lam)
        self.learned_sparsity = self.current_sparsity()
        self.lam *= math.exp(self.gain * (self.sparsity - self.learned_sparsity))

    def on_batch_end(self, state: TrainState) -> None:
        if self.fixed is not None:
            self.fixed.on_batch_end(state)
        elif self.score_optimizer is not None:
            # a constant rate: the cosine decay of the weights' rate would freeze the masks before the target
            self.score_optimizer.step()
            self.score_optimizer.zero_grad(set_to_none=True)

    def on_epoch_end(self, state: TrainState) -> None:
        state.history[-1]["learned_sparsity"] = self.current_sparsity() if self.fixed is None else self.learned_sparsity
        if self.fixed is None and state.epoch + 1 >= self.mask_epochs:
            self.fix(state)

    def fix(self, state: TrainState) -> None:
        """Keep exactly ``1 - sparsity`` of the connections, those with the highest scores, and stop learning masks."""
        self.learned_sparsity = self.current_sparsity()
        masks = global_masks({n: m.scores.detach() for n, m in self.step_masks.items()}, self.sparsity)
        for layer in prunable_layers(state.model).values():
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        self.fixed = MaskedWeights(masks)
        self.fixed.on_train_start(state)
        self.score_optimizer = None
        state.rebuild_optimizer()  # the scores are gone from the parameters


@SPARSE_METHODS.register("scl")
class SCL(SparseMethod):
    """Learn binary masks with the weights from scratch, then train under the exact requested mask.

    Args:
        sparsity: fraction of all conv/linear weights removed.
        lam: initial weight of the connection-count term.
        gain: adaptation rate of ``lam`` towards the sparsity target (per step, in log space).
        score_lr_scale: the scores' learning rate relative to the weights' initial one (kept constant).
        score_init: initial score (positive: every connection starts on).
        mask_fraction: fraction of the epochs spent learning masks.
    """

    revision = 1  # the scores on their own optimizer (they shared the weights' momentum and weight decay)
    reading = "edgebench's reading of Tang et al. 2022: adaptive lam for the requested sparsity, the mask optimizer"

    def __init__(self, sparsity: float, lam: float = 0.01, gain: float = 0.1, score_lr_scale: float = 0.02,
                 score_init: float = 0.05, mask_fraction: float = 0.75) -> None:
        super().__init__(sparsity)
        if score_init <= 0 or not 0 < mask_fraction <= 1:
            raise ValueError("scl: score_init must be > 0 and mask_fraction in (0, 1]")
        self.lam, self.gain, self.score_lr_scale = lam, gain, score_lr_scale
        self.score_init, self.mask_fraction = score_init, mask_fraction

    def run(self, model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, progress: Progress = None) -> ScheduleResult:
        mask_epochs = max(1, round(self.mask_fraction * train_spec.epochs))
        hook = SparseConnectivityLearning(attach_masks(model, self.score_init), self.sparsity, self.lam, self.gain,
                                          self.score_lr_scale, mask_epochs)
        result = train(model, splits, train_spec, hooks=[hook], progress=progress)
        return ScheduleResult(result.history, result.training_macs, result.val_accuracy)
