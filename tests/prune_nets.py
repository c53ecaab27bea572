"""Small networks whose filters are constructed so each criterion's right answer is known."""

from __future__ import annotations

import torch
from torch import nn

from edgebench.prune import ScoringData

CHANNELS = 6


def downstream_net() -> nn.Sequential:
    """conv0 makes CHANNELS identical feature maps (ReLU of a positive input); conv1 uses channel j with
    weight j (so channel 0 is unused). Everything downstream-based ranks channels 0 < 1 < ... < 5."""
    net = nn.Sequential(
        nn.Conv2d(1, CHANNELS, 1),
        nn.ReLU(),
        nn.Conv2d(CHANNELS, 3, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 2),
    )
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.arange(CHANNELS, dtype=torch.float32).view(1, -1, 1, 1).repeat(3, 1, 1, 1))
        net[2].bias.zero_()
        net[5].weight.fill_(0.1)
    return net.eval()


def positive_data(n: int = 64) -> ScoringData:
    g = torch.Generator().manual_seed(0)
    return ScoringData(torch.rand(n, 1, 4, 4, generator=g) + 0.5, torch.randint(0, 2, (n,), generator=g), 32)


def bn_net(gamma: list[float], beta: list[float]) -> nn.Sequential:
    """conv -> BN with the given scale/shift -> ReLU -> conv -> classifier (zero conv weight: BN output = beta)."""
    c = len(gamma)
    net = nn.Sequential(
        nn.Conv2d(1, c, 1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, 2, 1),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 2),
    )
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(gamma))
        net[1].bias.copy_(torch.tensor(beta))
    return net.eval()


def chain_net(widths: tuple[int, ...]) -> nn.Sequential:
    """Plain 3x3 convs of the given widths (1 input channel) with ReLUs, pooled into a 3-class Linear: every conv is
    its own prunable group, so each one's kept width is the rounding of its own ``width x (1 - ratio)``."""
    layers: list[nn.Module] = []
    for cin, cout in zip((1, *widths), widths):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
    torch.manual_seed(0)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 3)).eval()
