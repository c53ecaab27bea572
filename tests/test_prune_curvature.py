"""Hessian spectral-radius criterion: the K-FAC factors, its neuron scores on a net with known downstream
use, and the penalty flattening the network during training."""

from __future__ import annotations

import torch
from prune_nets import CHANNELS, downstream_net, positive_data
from torch import nn
from torch.nn import functional as F

from edgebench.prune import create_criterion, score_groups
from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.criteria.curvature import SpectralRadiusPenalty, kfac_factors
from edgebench.train import TrainState

EXAMPLE = torch.ones(1, 1, 4, 4)


def test_scores_follow_the_downstream_use_squared() -> None:
    """conv1 reads channel j with weight j (all of conv0's filters are equal and active), so the gradient at
    channel j is j times a common signal: G_jj is proportional to j^2, and so is the score."""
    net, data = downstream_net(), positive_data()
    crit = create_criterion("hessian_radius")
    crit.prepare(net, EXAMPLE, data)
    scores = {g.root: g.scores for g in score_groups(net, crit, EXAMPLE)}["0"].double()
    crit.release()
    assert float(scores[0]) == 0.0
    j = torch.arange(CHANNELS, dtype=torch.float64)
    torch.testing.assert_close(scores / scores[1], j**2, rtol=1e-4, atol=1e-9)


def test_kfac_factors_match_per_sample_autograd() -> None:
    """A = E[a a^T] over samples, G = E[g g^T] with g each sample's own dl/dz, computed one sample at a time."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    factors = kfac_factors(net, ScoringData(x, y, 4))[net[2]]
    a_rows, g_rows = [], []
    for i in range(10):
        h = torch.tanh(net[0](x[i : i + 1]))
        z = net[2](h)
        g_rows.append(torch.autograd.grad(F.cross_entropy(z, y[i : i + 1]), z)[0])
        a_rows.append(torch.cat([h.detach(), torch.ones(1, 1)], 1))
    a, g = torch.cat(a_rows).double(), torch.cat(g_rows).double()
    torch.testing.assert_close(factors.A, a.T @ a / 10)
    torch.testing.assert_close(factors.G, g.T @ g / 10)
    kron = torch.kron(factors.A, factors.G)
    assert factors.spectral_radius() == torch.linalg.eigvalsh(kron).max().item() or abs(
        factors.spectral_radius() - torch.linalg.eigvalsh(kron).max().item()) < 1e-10


def test_penalty_lowers_the_spectral_radius() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    data = ScoringData(x, y, 128)

    def trained(lam: float) -> float:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 2))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        state = TrainState(net, opt, None, x, y, x, y, (1, 4, 4), epochs=1)
        hook = SpectralRadiusPenalty(lam, every=1, batch_size=32)
        for step in range(30):
            state.step = step
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            hook.after_backward(state)
            opt.step()
        return sum(f.spectral_radius() for f in kfac_factors(net, data).values())  # sum_l rho(A_l) rho(G_l)

    assert trained(0.5) < 0.7 * trained(0.0)
