"""Criteria computed from the weights alone (no data): L1 norm, BN scale, BN statistics, random."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgebench.prune.criteria.base import CRITERIA, Criterion, PreparedScores, Role, ScoringData
from edgebench.train import TrainHook, TrainState

_BN = nn.modules.batchnorm._BatchNorm


@CRITERIA.register("l1")
class L1Norm(Criterion):
    """L1 norm of each filter, ``s_j = sum_{c,k,l} |W[j, c, k, l]|`` (Li et al., "Pruning Filters for
    Efficient ConvNets", ICLR 2017). Filters with small weights produce weak feature maps. Its paper allocation is
    the paper's per-layer sensitivity analysis (``allocation/sensitivity.py``)."""

    paper_allocation = "sensitivity"

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        if role != "out":
            return None
        return module.weight.detach().abs().flatten(1).sum(1)


@CRITERIA.register("random")
class RandomScore(PreparedScores):
    """Uniform random scores, ``s_j ~ U(0, 1)`` - the control criterion of Roy et al. 2020 (seed 001).

    Deterministic for ``seed``; each call to :meth:`prepare` draws fresh scores from the same stream,
    so repeated pruning steps remove different filters.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        self._scores = {
            m: torch.rand(m.out_channels, generator=self.generator)
            for m in model.modules()
            if isinstance(m, nn.Conv2d)
        }


class BNL1Penalty(TrainHook):
    """Network Slimming's sparsity term: adds the subgradient of ``lam * sum |gamma|`` to every BN scale's grad."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def after_backward(self, state: TrainState) -> None:
        for m in state.model.modules():
            if isinstance(m, _BN) and m.weight is not None and m.weight.grad is not None:
                m.weight.grad.add_(self.lam * torch.sign(m.weight.detach()))


@CRITERIA.register("bn_scale")
class BNScale(Criterion):
    """Network Slimming (Liu et al., ICCV 2017): ``s_j = |gamma_j|`` of the BN following the conv, trained
    with the L1 penalty ``lam * sum |gamma|`` (the :meth:`training_hook`) so unimportant channels' scales
    are driven towards zero. The paper prunes with one global threshold on the raw scales (``global_raw``)."""

    paper_allocation = "global_raw"

    def __init__(self, lam: float = 1e-4) -> None:
        self.lam = lam

    def training_hook(self) -> TrainHook:
        return BNL1Penalty(self.lam)

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        if role != "bn" or module.weight is None:
            return None
        return module.weight.detach().abs()


@CRITERIA.register("bn_stats")
class BNStatistics(Criterion):
    """Data-free criterion from the BN parameters (Oh et al., "Batch Normalization Tells You Which Filter is
    Important", WACV 2022): after BN a channel's pre-activation is modelled as ``N(beta, gamma^2)``, and
    its score is the expected ReLU output ``E[max(0, z)] = beta * Phi(beta/|gamma|) + |gamma| * phi(beta/|gamma|)``.
    Channels whose activations are almost always zero after ReLU carry little information. The closed form is
    **edgebench's reading** of the paper's abstract ("BN parameters estimate the activation's distribution")."""

    reading = "edgebench's reading of Oh et al. 2022 (abstract only): E[ReLU(N(beta, gamma^2))]"

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        if role != "bn" or module.weight is None:
            return None
        gamma = module.weight.detach().abs().double().clamp(min=1e-12)
        beta = module.bias.detach().double()
        t = beta / gamma
        pdf = torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + torch.erf(t / math.sqrt(2)))
        return beta * cdf + gamma * pdf
