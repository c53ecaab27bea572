"""The ``gradient_bound`` allocation: each layer's share of the pruning follows the redundancy its gradient matrix
shows - edgebench's reading of Zhou, Lian, Yin and Wang, "Neural Network Compression via Effective Filter Analysis
and Hierarchical Pruning" (2022), built from the abstract only."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.prune.allocation.base import ALLOCATIONS, Allocation
from edgebench.prune.criteria.base import ScoringData, require_data
from edgebench.prune.groups import GroupScores

log = logging.getLogger(__name__)


def output_gradient_grams(model: nn.Module, data: ScoringData, convs: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Per named conv, ``G^T G`` of its gradient matrix ``G``: one row per (sample, position), one column per
    output channel, entries ``dL_n/dz[n, c, h, w]`` of each sample's own loss (BN in eval mode)."""
    grams: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out)) for n, m in convs.items()]
    was_training = model.training
    model.eval()
    try:
        for x, y in data.batches():
            outputs.clear()
            loss = F.cross_entropy(model(x), y, reduction="sum")  # sum: each row is one sample's own gradient
            names = list(outputs)
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])
            for n, g in zip(names, grads):
                rows = g.detach().double().transpose(0, 1).flatten(1)  # (C, N*H*W)
                grams[n] = grams[n] + rows @ rows.T if n in grams else rows @ rows.T
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return grams


def effective_rank(gram: torch.Tensor, energy: float) -> int:
    """Smallest ``r`` whose top-``r`` singular values of ``G`` hold ``energy`` of ``sum sigma^2`` (eigenvalues of
    ``G^T G``); at least 1."""
    eig = torch.linalg.eigvalsh(gram).clamp(min=0).flip(0)
    total = float(eig.sum())
    if total <= 0:
        return 1
    cumulative = torch.cumsum(eig, 0) / total
    return max(1, int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=cumulative.dtype)).item()) + 1)


@ALLOCATIONS.register("gradient_bound")
class GradientBound(Allocation):
    """Per-layer ratios from a gradient-matrix redundancy bound - **edgebench's reading** of Zhou et al. 2022
    (from its abstract: "a gradient-matrix singularity analysis estimates the maximum network redundancy", which
    then guides a layer-wise pruning). The paper's own algorithm, including its filter-wise stage, was not
    available to us; this construction is ours and is labelled so wherever it is shown.

    The construction: ``G`` stacks, for training samples and positions, the gradient of the loss with respect to
    the layer's ``n`` output channels. If the rest of the network only reads ``r < n`` directions of those
    channels, every row of ``G`` lies in an ``r``-dimensional subspace and ``rank(G) = r``. With ``r_eps`` the
    smallest number of singular values holding ``1 - eps`` of ``G``'s energy, the layer's maximum safe compression
    is ``b = 1 - r_eps / n``. The requested ratio is split in proportion to the bounds: group ``l`` loses
    ``min(t * b_l, 1 - 1/n_l)`` of its filters, ``t`` solved so all groups together lose ``ratio`` of the filters.
    ``t <= 1`` means no layer is cut beyond its bound; a request beyond the total bound is met anyway and logged as
    a warning: past ``t``'s reach (the layers with a bound down to one filter), every layer with filters left loses
    one common further share (:meth:`_spread`); a ratio that even one filter per layer cannot meet is warned with
    the share reached. All bounds zero (no redundancy found) falls back to uniform. Which filters go inside a layer is the
    criterion's choice (the paper's filter-wise stage is not reproduced).

    Args:
        eps: energy left out of the effective rank.
    """

    needs_data = True
    reading = "edgebench's reading of Zhou et al. 2022 (abstract only): gradient-rank bound per layer"

    def __init__(self, eps: float = 0.01) -> None:
        if not 0 <= eps < 1:
            raise ValueError(f"gradient_bound: eps must be in [0, 1), got {eps}")
        self.eps = eps
        self.bounds: dict[str, float] = {}
        self._model: nn.Module | None = None
        self._data: ScoringData | None = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        self._model, self._data = model, require_data("gradient_bound", data)
        self.bounds = {}  # the architecture may have changed since the last step

    def release(self) -> None:
        self._model, self._data = None, None

    def layer_bounds(self, roots: Sequence[str]) -> dict[str, float]:
        """Maximum safe compression ``1 - r_eps / n`` of each named conv."""
        if self._model is None or self._data is None:
            raise RuntimeError("gradient_bound: prepare() must run before the ratios are asked for")
        modules = dict(self._model.named_modules())
        grams = output_gradient_grams(self._model, self._data, {r: modules[r] for r in roots})
        return {r: 1 - effective_rank(g, 1 - self.eps) / g.shape[0] for r, g in grams.items()}

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        if not self.bounds or set(self.bounds) != {g.root for g in groups}:
            self.bounds = self.layer_bounds([g.root for g in groups])
        weights = {g.root: float(g.original * g.convs) for g in groups}
        caps = {g.root: 1 - 1 / g.original for g in groups}
        bounds = {r: min(b, caps[r]) for r, b in self.bounds.items()}
        total = sum(weights.values())
        if sum(weights[r] * b for r, b in bounds.items()) <= 0:
            log.warning("gradient_bound: no layer shows redundancy; allocating uniformly")
            return {g.root: ratio for g in groups}

        def removed(t: float) -> float:
            return sum(weights[r] * min(t * b, caps[r]) for r, b in bounds.items()) / total

        lo, hi = 0.0, 1.0
        while removed(hi) < ratio and hi < 1e6:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if removed(mid) < ratio else (lo, mid)
        if hi > 1 + 1e-9:
            log.warning("gradient_bound: ratio %.2f exceeds the estimated safe total %.2f; layers are cut beyond "
                        "their bounds", ratio, removed(1.0))
        shares = {r: min(hi * b, caps[r]) for r, b in bounds.items()}
        if removed(hi) < ratio - 1e-9:  # the layers with a bound are down to one filter: the rest must give too
            shares = self._spread(shares, caps, weights, ratio)
        return shares

    @staticmethod
    def _spread(shares: dict[str, float], caps: dict[str, float], weights: dict[str, float],
                ratio: float) -> dict[str, float]:
        """``shares`` raised by one common amount ``s`` (each at most its cap) so all groups together lose ``ratio``
        of the filters: what the bounds could not give comes from every layer that still has filters (widths 6/10/14
        with bounds 0/0/0.29 kept 6/10/1, 43 % removed, for a requested 50 % or 70 %). Where even every layer at one
        filter falls short, the caps are returned with a warning naming the share they reach."""
        total = sum(weights.values())

        def removed(s: float) -> float:
            return sum(weights[r] * min(b + s, caps[r]) for r, b in shares.items()) / total

        if removed(1.0) < ratio - 1e-9:
            log.warning("gradient_bound: ratio %.2f cannot be met with a filter left in every layer; %.2f of the "
                        "filters are removed (ask for a smaller ratio)", ratio, removed(1.0))
            return dict(caps)
        log.warning("gradient_bound: the layers with a bound cannot give ratio %.2f alone; the remainder is spread "
                    "evenly over the layers that still have filters", ratio)
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if removed(mid) < ratio else (lo, mid)
        return {r: min(b + hi, caps[r]) for r, b in shares.items()}
