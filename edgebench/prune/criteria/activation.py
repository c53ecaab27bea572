"""Criteria computed from feature maps on training samples: mean activation, Molchanov et al. 2017's Taylor
criterion on activations, CHIP, firing pattern."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.prune.criteria.base import (
    CRITERIA,
    PreparedScores,
    ResponseScores,
    ScoringData,
    record_outputs,
    require_data,
)

_BN = nn.modules.batchnorm._BatchNorm


def positions(activation: torch.Tensor) -> torch.Tensor:
    """``activation`` as (N, C, positions): a conv's (N, C, H, W) map, or the (N, C) features of a BatchNorm1d after
    pooling and flattening (one position), whose channels are a conv's when pruning couples them."""
    return activation.reshape(activation.shape[0], activation.shape[1], -1)


class _FeatureMapCriterion(ResponseScores):
    """Scores a channel from the feature map after ReLU: the BN output when the group has a BN, else the
    conv output (the ReLU is applied here, so the statistic is that of the activation map). Always a ReLU: a model
    whose activation is SiLU, LeakyReLU or Tanh is scored on ReLU of its responses, not on the map its next layer
    reads (the activation that follows is not hooked: it is often a functional call or one module shared by every
    layer)."""

    needs_data = True

    def statistic(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """Per-channel statistic of one batch's post-ReLU activations (N, C, H, W), or (N, C) features."""
        raise NotImplementedError

    def samples_used(self, activation: torch.Tensor) -> int:
        """How many of a batch's samples :meth:`statistic` averages over (all, unless a subclass samples)."""
        return len(activation)

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data(type(self).__name__, data)
        modules = [m for m in model.modules() if isinstance(m, nn.Conv2d | _BN)]
        self._scores = record_outputs(model, data, modules, lambda m, out: self.statistic(m, torch.relu(out)),
                                      used=self.samples_used)


@CRITERIA.register("mean_activation")
class MeanActivation(_FeatureMapCriterion):
    """Mean activation of each feature map after ReLU, ``s_j = mean_{n,h,w} relu(a_j[n,h,w])`` over training
    samples (Roy et al. 2020, seed 001; after Molchanov et al. 2017's activation criterion)."""

    def statistic(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        return positions(activation).mean(dim=(0, 2))


@CRITERIA.register("taylor_activation")
class TaylorActivation(_FeatureMapCriterion):
    """Taylor criterion on feature maps (Molchanov, Tyree, Karras, Aila and Kautz, "Pruning Convolutional Neural
    Networks for Resource Efficient Inference", ICLR 2017, eqs. 7-8): the first-order change of the cost when
    feature map ``z_j`` (after the non-linearity, M positions) is zeroed, per example ``n``,
    ``|1/M sum_m dC_n/dz_{j,m} z_{j,m}|``, averaged over the examples, then L2-normalised per layer,
    ``s_j = Theta_j / sqrt(sum_i Theta_i^2)``, so that layers can be ranked together (``global_raw``; the paper
    prunes the globally smallest). ``C_n`` is example ``n``'s own cross-entropy. The map is the BN output after
    ReLU (the conv output after ReLU in a group without BN), as for ``mean_activation``."""

    paper_allocation = "global_raw"

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("taylor_activation", data)
        modules = [m for m in model.modules() if isinstance(m, nn.Conv2d | _BN)]
        outputs: dict[nn.Module, torch.Tensor] = {}
        handles = [m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(mod, out)) for m in modules]
        sums: dict[nn.Module, torch.Tensor] = {}
        was_training = model.training
        model.eval()
        try:
            for x, y in data.batches():
                outputs.clear()
                loss = F.cross_entropy(model(x), y, reduction="sum")  # sum: each example's gradient is its own cost's
                mods = [m for m in modules if m in outputs and outputs[m].requires_grad]
                for m, g in zip(mods, torch.autograd.grad(loss, [outputs[m] for m in mods])):
                    per_example = positions(torch.relu(outputs[m].detach()) * g).mean(2).abs().sum(0).double()
                    sums[m] = sums[m] + per_example if m in sums else per_example
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        theta = {m: s / len(data.x) for m, s in sums.items()}
        self._scores = {m: t / (t.norm() + 1e-12) for m, t in theta.items()}


@CRITERIA.register("chip")
class ChannelIndependence(_FeatureMapCriterion):
    """CHIP (Sui et al., "CHIP: CHannel Independence-based Pruning", NeurIPS 2021): for each sample, the
    feature maps form a matrix ``A`` (C x HW); channel ``j``'s independence is the drop in nuclear norm when
    its row is zeroed, ``s_j = ||A||_* - ||A with row j = 0||_*``, averaged over samples. A channel that is
    (nearly) a linear combination of the others barely changes the nuclear norm and is removed first.

    Args:
        samples_per_batch: samples of each scoring batch whose SVDs are computed (cost: C SVDs each).
    """

    revision = 1  # 1: each batch weighted by the samples it scored, not by its size

    def __init__(self, samples_per_batch: int = 16) -> None:
        super().__init__()
        self.samples_per_batch = samples_per_batch

    def samples_used(self, activation: torch.Tensor) -> int:
        return min(len(activation), self.samples_per_batch)

    def statistic(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        a = positions(activation[: self.samples_per_batch]).double()  # (N, C, HW)
        c, hw = a.shape[1:]
        idx = torch.arange(c)
        # ||A||_* = sum of sqrt(eigenvalues) of the smaller Gram matrix; symmetric eigensolvers are much
        # faster than batched SVDs. Zeroing row j of A zeroes row/column j of A A^T, or subtracts
        # a_j a_j^T from A^T A.
        if hw >= c:
            gram = a @ a.transpose(1, 2)  # (N, C, C)
            masked = gram.unsqueeze(1).repeat(1, c, 1, 1)
            masked[:, idx, idx, :] = 0
            masked[:, idx, :, idx] = 0
        else:
            gram = a.transpose(1, 2) @ a  # (N, HW, HW)
            masked = gram.unsqueeze(1) - a.unsqueeze(-1) * a.unsqueeze(-2)  # (N, C, HW, HW)
        full = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().sum(-1)
        reduced = torch.linalg.eigvalsh(masked).clamp(min=0).sqrt().sum(-1)
        return (full[:, None] - reduced).mean(0)


@CRITERIA.register("firing")
class FiringPattern(PreparedScores):
    """Importance score of Neural Network Relief (Dekhovich et al., Machine Learning 2024; seed 000), lifted
    from connections to channels. A connection ``c -> k`` matters by its share of neuron ``k``'s input,
    ``r_ck = E|w_kc * x_c| / (sum_m E|w_km * x_m| + |b_k|)`` (for a conv, ``w_kc * x_c`` is channel ``c``'s
    partial convolution into output ``k``, averaged over positions). A channel's score is the total share it
    provides to the next layer, ``s_c = sum_k r_ck`` - channels that rarely fire into anything are pruned.
    The paper applies it iteratively (``schedule: iterative``), re-scoring after each finetuning step. The lift
    from connections to channels is **edgebench's reading** (the paper scores connections; only its abstract was
    available to us).
    """

    needs_data = True
    roles = ("in",)
    reading = "edgebench's reading of Dekhovich et al. 2024 (abstract only): connection scores lifted to channels"

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("firing", data)
        consumers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        self._scores = record_outputs(model, data, consumers, _input_shares, on_input=True)


def _input_shares(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Per input channel (or feature), the summed share ``sum_k r_ck`` of ``module``'s outputs it drives."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        # (K, F): E|w_kf x_f| = |w_kf| E|x_f|, over samples and (a Linear over a channels-last map) positions
        contrib = w.abs() * x.abs().reshape(-1, x.shape[-1]).mean(0)
    elif module.groups == 1:
        k, c = w.shape[:2]
        # Channel c's partial convolution into every output k, as one grouped conv: output index c*K + k.
        per_pair = w.transpose(0, 1).reshape(c * k, 1, *w.shape[2:])
        partial = F.conv2d(x, per_pair, None, module.stride, module.padding, module.dilation, groups=c)
        contrib = partial.abs().mean(dim=(0, 2, 3)).view(c, k).T  # (K, C)
    else:  # depthwise/grouped consumers: each output sees only its own group, shares are trivially 1
        return None
    bias = module.bias.detach().abs() if module.bias is not None else torch.zeros(contrib.shape[0])
    shares = contrib / (contrib.sum(1, keepdim=True) + bias[:, None]).clamp(min=1e-12)
    return shares.sum(0).double()
