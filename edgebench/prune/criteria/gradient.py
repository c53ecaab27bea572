"""Criteria from the loss's derivatives on training samples: first-order Taylor and SOSP-H."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.prune.criteria.base import CRITERIA, PreparedScores, ScoringData, require_data

_BN = nn.modules.batchnorm._BatchNorm


def _channel_sum(module: nn.Module, per_param: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum a per-parameter quantity over each output channel (conv weight rows, BN scale + shift)."""
    total = per_param["weight"].flatten(1).sum(1) if per_param["weight"].dim() > 1 else per_param["weight"].clone()
    if "bias" in per_param:
        total = total + per_param["bias"]
    return total


def _scored_params(model: nn.Module) -> dict[nn.Module, dict[str, nn.Parameter]]:
    return {
        m: {n: p for n, p in m.named_parameters(recurse=False) if n in ("weight", "bias")}
        for m in model.modules()
        if isinstance(m, nn.Conv2d | _BN) and getattr(m, "weight", None) is not None
    }


class _ParamCriterion(PreparedScores):
    needs_data = True
    roles = ("out", "bn")
    paper_allocation = "global_raw"


@CRITERIA.register("taylor")
class Taylor(_ParamCriterion):
    """First-order Taylor estimate of the loss change when a channel is removed (Molchanov et al., "Importance
    Estimation for Neural Network Pruning", CVPR 2019; the activation form is their ICLR 2017 criterion):
    ``s_j = mean_batches (sum_{i in channel j} g_i * theta_i)^2`` over the conv filter's weights and, where a
    BN follows, its scale and shift (``(g_gamma*gamma + g_beta*beta)^2``, their recommended variant)."""

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("taylor", data)
        params = _scored_params(model)
        sums: dict[nn.Module, torch.Tensor] = {}
        batches = 0
        model.eval()  # BN statistics stay frozen: scoring must not change the model
        for x, y in data.batches():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            for m, ps in params.items():
                gw = {n: (p.grad * p).detach() for n, p in ps.items() if p.grad is not None}
                if "weight" in gw:
                    value = _channel_sum(m, gw).double() ** 2
                    sums[m] = sums[m] + value if m in sums else value
            batches += 1
        model.zero_grad(set_to_none=True)
        self._scores = {m: s / batches for m, s in sums.items()}


@CRITERIA.register("sosp_h")
class SOSPH(_ParamCriterion):
    """SOSP-H (Nonnenmacher et al., "SOSP: Efficiently Capturing Global Correlations by Second-Order
    Structured Pruning", ICLR 2022): the second-order term of removing structure ``s`` measured against the
    *whole* network, ``s_j = |sum_{i in channel j} theta_i * (H theta)_i|``, with ``H`` the Hessian of the
    training loss. One Hessian-vector product per batch (double backprop) gives ``H theta`` for all channels
    at once, so correlations across all layers are included at first-order cost."""

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("sosp_h", data)
        params = _scored_params(model)
        theta = [p for p in model.parameters() if p.requires_grad]  # H theta over the whole network
        sums: dict[nn.Module, torch.Tensor] = {}
        model.eval()
        for x, y in data.batches():
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), theta, create_graph=True)
            dot = sum((g * p.detach()).sum() for g, p in zip(grads, theta))
            h_theta = {id(p): hv for p, hv in zip(theta, torch.autograd.grad(dot, theta, allow_unused=True))}
            for m, ps in params.items():
                product = {n: (h_theta[id(p)] * p).detach() for n, p in ps.items() if h_theta.get(id(p)) is not None}
                value = _channel_sum(m, product).double()
                sums[m] = sums[m] + value if m in sums else value
        self._scores = {m: s.abs() for m, s in sums.items()}
