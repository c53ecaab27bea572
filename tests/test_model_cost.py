"""Cost accounting against hand-computed counts."""

from __future__ import annotations

from torch import nn

from edgebench.models.cost import conv_filters, count_macs, count_params


def test_two_layer_net_macs_and_params_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    # conv: 8*8 outputs * 4 channels * (1 in * 3*3) = 2304; linear: 256 * 10 = 2560
    assert count_macs(net, (1, 8, 8)) == 2304 + 2560
    assert count_params(net) == (4 * 9 + 4) + (256 * 10 + 10)
    assert conv_filters(net) == {"0": 4}


def test_strided_grouped_conv_macs() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False))
    # 4x4 outputs * 8 channels * (4/2 in * 9)
    assert count_macs(net, (4, 8, 8)) == 16 * 8 * 2 * 9
