"""**edgebench's reading** of neuron pruning guided by the spectral radius of the Hessian (Ebrahimi and Klabjan,
"Neuron-based Pruning of Deep Neural Networks with Better Generalization using Kronecker Factored Curvature
Approximation", 2021). Only the paper's abstract was available to us: the penalty and the score below are
edgebench's construction from it (the abstract's ingredients - K-FAC, the Hessian's spectral radius, training and
pruning at once - put together our way), not the paper's algorithm, and are labelled so in the report.

The paper trains and prunes at once (no pre-trained network), steering the parameters towards a flat minimum -
small Hessian spectral radius ``rho(H)`` - which generalises better, with the Hessian in Kronecker-factored
(K-FAC) form. For a layer ``z = W a`` (a conv: per output position, ``a`` the unfolded input patch), K-FAC
approximates its Hessian block by ``H_l ~ A_l (x) G_l`` with ``A_l = E[a a^T]`` (over samples and positions) and
``G_l = E_n[sum_t g_t g_t^T]``, ``g = dl_n/dz`` of each sample's own loss. Eigenvalues of a Kronecker product are
products, so ``rho(H_l) = rho(A_l) * rho(G_l)``, and the block of one output neuron ``j`` is ``A_l * G_l[j, j]``.

- **Regulariser** (the criterion's training hook): ``lam * sum_l rho(A_l) rho(G_l)`` on a training batch every
  ``every`` steps. Its gradient holds the top eigenvectors ``u`` of ``A_l`` and ``v`` of ``G_l`` fixed
  (``rho(A) = u^T A u = E[(u.a)^2]``, Danskin's theorem) and backpropagates twice through ``g``.
- **Score**: removing neuron ``j`` (zeroing its weights ``w_j``) raises the loss to second order by
  ``1/2 w_j^T H_jj w_j <= 1/2 rho(A_l) G_l[j, j] ||w_j||^2``; that upper bound is the score, so neurons the
  flat, regularised network barely depends on are removed first, physically, by the pruning schedule (use
  ``while_training`` to prune during the regularised run, as the paper does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.prune.criteria.base import CRITERIA, PreparedScores, ScoringData, require_data
from edgebench.train import TrainHook, TrainState

_LAYERS = (nn.Conv2d, nn.Linear)


def input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vectors ``a`` the layer multiplies by its weight matrix: unfolded patches (N*T, C/groups*kh*kw) for a
    conv (grouped convs: the first group's), the inputs for a linear layer; plus a constant 1 for a bias."""
    if isinstance(layer, nn.Conv2d):
        per_group = layer.in_channels // layer.groups
        patches = F.unfold(x[:, :per_group], layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    else:
        rows = x.reshape(-1, x.shape[-1])
    if layer.bias is not None:
        rows = torch.cat([rows, torch.ones(len(rows), 1, dtype=rows.dtype)], 1)
    return rows


def output_rows(g: torch.Tensor) -> torch.Tensor:
    """Per-position output gradients as rows (N*T, C)."""
    return g.transpose(1, -1).reshape(-1, g.shape[1]) if g.dim() > 2 else g


def layer_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: list[nn.Module],
                    create_graph: bool = False) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, (its input rows ``a``, its per-sample output gradients ``g`` as rows) on the batch (x, y)."""
    inputs: dict[nn.Module, torch.Tensor] = {}
    outputs: dict[nn.Module, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        inputs[module], outputs[module] = args[0], out

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        loss = F.cross_entropy(model(x), y, reduction="sum")  # sum: each sample's own loss gradient
    finally:
        for h in handles:
            h.remove()
    seen = [m for m in layers if m in outputs]
    grads = torch.autograd.grad(loss, [outputs[m] for m in seen], create_graph=create_graph)
    return {m: (input_rows(m, inputs[m]), output_rows(g)) for m, g in zip(seen, grads)}


def top_eigen(matrix: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Largest eigenvalue and its eigenvector of a symmetric matrix."""
    if not torch.isfinite(matrix).all():
        raise ValueError("hessian_radius: non-finite activations or gradients (the penalty diverged); lower lam")
    values, vectors = torch.linalg.eigh(matrix.double())
    return float(values[-1]), vectors[:, -1]


@dataclass
class KFACFactors:
    """Running sums for ``A = E[a a^T]`` (per row) and ``G = E_n[sum_t g g^T]`` (per sample) of one layer."""

    a: torch.Tensor | float = 0.0
    g: torch.Tensor | float = 0.0
    rows: int = 0
    samples: int = 0

    def add(self, a: torch.Tensor, g: torch.Tensor, samples: int) -> None:
        a, g = a.detach().double(), g.detach().double()
        self.a = self.a + a.T @ a
        self.g = self.g + g.T @ g
        self.rows += len(a)
        self.samples += samples

    @property
    def A(self) -> torch.Tensor:
        return self.a / max(self.rows, 1)

    @property
    def G(self) -> torch.Tensor:
        return self.g / max(self.samples, 1)

    def spectral_radius(self) -> float:
        """``rho(A) * rho(G)``: the spectral radius of the layer's K-FAC Hessian block."""
        return top_eigen(self.A)[0] * top_eigen(self.G)[0]


def kfac_factors(model: nn.Module, data: ScoringData) -> dict[nn.Module, KFACFactors]:
    """K-FAC factors of every conv/linear layer on ``data`` (BN in eval mode; the model is not changed)."""
    layers = [m for m in model.modules() if isinstance(m, _LAYERS)]
    factors = {m: KFACFactors() for m in layers}
    was_training = model.training
    model.eval()
    try:
        for x, y in data.batches():
            for m, (a, g) in layer_gradients(model, x, y, layers).items():
                factors[m].add(a, g, len(x))
    finally:
        model.train(was_training)
    return {m: f for m, f in factors.items() if f.samples}


class SpectralRadiusPenalty(TrainHook):
    """Adds the gradient of ``lam * sum_l rho(A_l) rho(G_l)`` (on a random training batch) every ``every`` steps."""

    def __init__(self, lam: float, every: int, batch_size: int, seed: int = 0) -> None:
        self.lam, self.every, self.batch_size = lam, every, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def after_backward(self, state: TrainState) -> None:
        if self.lam == 0 or state.step % self.every:
            return
        model = state.model
        idx = torch.randint(len(state.x_train), (self.batch_size,), generator=self.generator)
        x, y = state.x_train[idx], state.y_train[idx]
        layers = [m for m in model.modules() if isinstance(m, _LAYERS)]
        model.eval()  # the penalty is about the function the network computes, not batch statistics
        try:
            penalty = torch.zeros((), dtype=torch.float64)
            for a, g in layer_gradients(model, x, y, layers, create_graph=True).values():
                with torch.no_grad():
                    _, u = top_eigen(a.T @ a / len(a))
                    _, v = top_eigen(g.T @ g / len(x))
                rho_a = (a.double() @ u).pow(2).mean()
                rho_g = (g.double() @ v).pow(2).sum() / len(x)
                penalty = penalty + rho_a * rho_g
            (self.lam * penalty).backward()
        finally:
            model.train()


@CRITERIA.register("hessian_radius")
class HessianSpectralRadius(PreparedScores):
    """K-FAC bound of the loss increase of removing each neuron, trained with the spectral-radius penalty
    (edgebench's reading of Ebrahimi and Klabjan 2021; see the module docstring).

    Args:
        lam: weight of the spectral-radius penalty during training (0: scores only, no penalty).
        every: training steps between penalty evaluations (each costs a forward and a double backward).
        batch_size: samples the penalty is estimated on.
    """

    needs_data = True
    reading = "edgebench's reading of Ebrahimi & Klabjan 2021 (abstract only): penalty and bound are ours"

    def __init__(self, lam: float = 1e-2, every: int = 1, batch_size: int = 64) -> None:
        if lam < 0 or every < 1 or batch_size < 2:
            raise ValueError("hessian_radius: lam must be >= 0, every >= 1 and batch_size >= 2")
        super().__init__()
        self.lam, self.every, self.batch_size = lam, every, batch_size

    def training_hook(self) -> TrainHook | None:
        return SpectralRadiusPenalty(self.lam, self.every, self.batch_size) if self.lam > 0 else None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("hessian_radius", data)
        self._scores = {}
        for m, f in kfac_factors(model, data).items():
            if not isinstance(m, nn.Conv2d):
                continue
            w = m.weight.detach().double().flatten(1)
            if m.bias is not None:
                w = torch.cat([w, m.bias.detach().double()[:, None]], 1)
            rho_a = top_eigen(f.A)[0]
            self._scores[m] = 0.5 * rho_a * torch.diagonal(f.G) * w.pow(2).sum(1)
