"""Criteria from the loss's derivatives on training samples: Molchanov et al. 2019's first-order Taylor scores
(``taylor_weight``, ``taylor_bn``) and SOSP-H (second order, Gauss-Newton).

The Taylor scores follow the authors' public implementation (github.com/NVlabs/Taylor_pruning,
``pruning_engine.py``: methods 0 "Taylor_weight" and 22/31 "gate after BN"); ``tests/test_prune_papers.py`` checks
ours against its formulas on a small network to 1e-6.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, jvp
from torch.nn import functional as F

from edgebench.prune.criteria.base import CRITERIA, PreparedScores, ScoringData, require_data

_BN = nn.modules.batchnorm._BatchNorm


def _scored_params(model: nn.Module) -> dict[nn.Module, dict[str, nn.Parameter]]:
    """Per conv / BN module, its weight and bias parameters (the parameters of its output channels)."""
    return {
        m: {n: p for n, p in m.named_parameters(recurse=False) if n in ("weight", "bias")}
        for m in model.modules()
        if isinstance(m, nn.Conv2d | _BN) and getattr(m, "weight", None) is not None
    }


def per_channel(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of a per-parameter quantity over each output channel (a conv's filter rows; a BN's entries as they are)."""
    return tensor.flatten(1).sum(1) if tensor.dim() > 1 else tensor


class _TaylorFO(PreparedScores):
    """Batch-averaged first-order Taylor scores of one kind of parameter (see the subclasses)."""

    needs_data = True
    paper_allocation = "global_raw"
    revision = 2  # 1: ``taylor`` averaged the conv and BN forms; 2: a coupled group's layers summed, not averaged

    def batch_scores(self, module: nn.Module, params: dict[str, nn.Parameter]) -> torch.Tensor | None:
        """One mini-batch's per-channel score of ``module`` from its parameters' values and gradients."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data(type(self).__name__, data)
        params = _scored_params(model)
        sums: dict[nn.Module, torch.Tensor] = {}
        batches = 0
        model.eval()  # BN statistics stay frozen: scoring must not change the model
        for x, y in data.batches():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()  # the mini-batch's mean loss, as the reference trains on
            for m, ps in params.items():
                value = self.batch_scores(m, ps)
                if value is not None:
                    sums[m] = sums[m] + value.double() if m in sums else value.double()
            batches += 1
        model.zero_grad(set_to_none=True)
        self._scores = {m: s / batches for m, s in sums.items()}

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        """A structure's importance is the sum over its parameters (Molchanov et al. 2019, eq. 4), so the channels
        that a residual add couples, removed together from every partner conv (or BN), add up their scores."""
        mapped = self.layer_scores(group)
        return torch.stack(mapped).sum(0).float() if mapped else None


@CRITERIA.register("taylor_weight")
class TaylorWeight(_TaylorFO):
    """First-order Taylor importance on the weights (Molchanov, Mallya, Tyree, Frosio and Kautz, "Importance
    Estimation for Neural Network Pruning", CVPR 2019, eqs. 3-4): each weight's contribution ``(g_m w_m)^2``,
    summed over a filter's weights, ``s_j = sum_{m in filter j} (g_m w_m)^2``, per mini-batch (``g`` the gradient
    of the batch's mean loss) and averaged over the batches. The paper ranks all filters of the network together
    (``global_raw``): the scores "scale consistently across layers"."""

    roles = ("out",)

    def batch_scores(self, module: nn.Module, params: dict[str, nn.Parameter]) -> torch.Tensor | None:
        w = params["weight"]
        if isinstance(module, _BN) or w.grad is None:
            return None
        return per_channel((w.grad * w).detach() ** 2)


@CRITERIA.register("taylor_bn")
class TaylorBN(_TaylorFO):
    """First-order Taylor importance of a gate after BatchNorm (Molchanov et al. 2019, eq. 5 with the gate ``z``
    placed after BN - the variant the paper recommends): with ``z = 1``, ``dL/dz_j = gamma_j g_gamma_j +
    beta_j g_beta_j``, so ``s_j = (gamma_j g_gamma_j + beta_j g_beta_j)^2`` per mini-batch, averaged over the
    batches. A group without BN is scored by L1 norm (logged)."""

    roles = ("bn",)

    def batch_scores(self, module: nn.Module, params: dict[str, nn.Parameter]) -> torch.Tensor | None:
        if not isinstance(module, _BN) or params["weight"].grad is None:
            return None
        gate = sum(p.grad * p for p in params.values() if p.grad is not None)
        return gate.detach() ** 2


def gauss_newton_products(model: nn.Module, data: ScoringData) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Over ``data``: the gradient ``g`` of the mean cross-entropy and the Gauss-Newton product ``G theta`` with
    ``G = mean_n J_n^T H_n J_n`` (``J_n`` the Jacobian of sample ``n``'s logits w.r.t. all trainable parameters,
    ``H_n = diag(p_n) - p_n p_n^T`` the Hessian of its cross-entropy w.r.t. its logits), per parameter of
    ``model.parameters()``. ``J theta`` is one forward-mode product, ``J^T (H J theta)`` one backward pass: a
    Hessian-vector product at the cost of about two gradients."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    theta = tuple(p.detach() for p in params)
    grad = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    g_theta = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    total = len(data.x)
    model.eval()

    def logits_of(*values: torch.Tensor) -> torch.Tensor:
        return functional_call(model, dict(zip(names, values)), (x,))

    for x, y in data.batches():
        logits = model(x)
        weight = len(x) / total  # each batch's share of the mean over all samples
        for acc, g in zip(grad, torch.autograd.grad(F.cross_entropy(logits, y), params, retain_graph=True)):
            acc += weight * g.double()
        _, j_theta = jvp(logits_of, theta, theta)
        p = torch.softmax(logits.detach(), 1)
        h_j_theta = p * j_theta - p * (p * j_theta).sum(1, keepdim=True)
        for acc, v in zip(g_theta, torch.autograd.grad(logits, params, grad_outputs=h_j_theta / total)):
            acc += v.double()
    return grad, g_theta


@CRITERIA.register("sosp_h")
class SOSPH(PreparedScores):
    """SOSP-H (Nonnenmacher, Pfeil, Steinwart and Reeb, "SOSP: Efficiently Capturing Global Correlations by
    Second-Order Structured Pruning", ICLR 2022): the second-order estimate of the loss change when structure ``s``
    (a channel: its conv filter and bias, and the scale and shift of its BN) is removed, ``delta theta = -theta_s``,
    with the pairs ``theta_s^T H theta_s'`` summed over *all* structures rather than only the removed ones - which
    gives the whole network's ``H theta`` in one Hessian-vector product and keeps every cross-layer correlation:
    ``s_j = | -theta_s . g + 1/2 theta_s . (H theta)_s |`` over the channel's full parameter set. ``H`` is the
    Gauss-Newton approximation the paper uses (:func:`gauss_newton_products`); the first-order term is kept as the
    paper does (a trained network is not exactly at a minimum). Ranked globally (``global_raw``), as the paper
    prunes. The absolute value is taken of the whole estimate, first- and second-order terms together: that
    combination is edgebench's reading (the formula as printed in the paper was not at hand when this was written)."""

    needs_data = True
    roles = ("out", "bn")
    paper_allocation = "global_raw"
    revision = 1  # was |theta H theta| with the exact Hessian, conv and BN parts taken apart and averaged
    reading = "SOSP-H's Gauss-Newton saliency; one absolute value over both orders is edgebench's reading"

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("sosp_h", data)
        grad, g_theta = gauss_newton_products(model, data)
        index = {id(p): i for i, p in enumerate(p for p in model.parameters() if p.requires_grad)}
        self._scores = {}
        for m, ps in _scored_params(model).items():
            terms = [(-grad[index[id(p)]] + 0.5 * g_theta[index[id(p)]]) * p.detach().double()
                     for p in ps.values() if id(p) in index]
            if terms:  # signed per-channel estimate of this module's parameters
                self._scores[m] = sum(per_channel(t) for t in terms)

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        """The structure is the channel's conv filter(s) and BN together: their signed parts add up before the
        absolute value (a residual group's partners are one structure too)."""
        mapped = self.layer_scores(group)
        return torch.stack(mapped).sum(0).abs().float() if mapped else None
