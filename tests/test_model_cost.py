"""Cost accounting against hand-computed counts."""

from __future__ import annotations

import torch
from layer_nets import AttentionNet
from torch import nn

from edgebench.models.cost import conv_filters, count_macs, count_params, layer_macs


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



class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.r, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.LSTM(8, 16, num_layers=2, batch_first=True), \
            nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.r(self.c(x).flatten(2).transpose(1, 2))[0][:, -1])


def test_attention_and_recurrent_layers_count_their_macs_by_hand() -> None:
    """MultiheadAttention (through F.multi_head_attention_forward, so its out_proj hook never fires) and LSTM
    counted 0: an attention model's MACs were 2.3x under. Known answers on 4x4 images (16 tokens of 8 channels)."""
    conv = 16 * 8 * 3 * 3 * 3
    # q, k, v projections 3 x 16 x 8 x 8, Q K^T and attention x V 2 x 16 x 16 x 8, out_proj 16 x 8 x 8
    assert layer_macs(AttentionNet(), (3, 4, 4)) == {"c": conv, "a": 3072 + 4096 + 1024, "fc": 32}
    # 16 steps x gates 4 x hidden 16 x (input + hidden): layer 1 (8 + 16), layer 2 (16 + 16)
    assert layer_macs(_Recurrent(), (3, 4, 4)) == {"c": conv, "r": 16 * 4 * 16 * (24 + 32), "fc": 64}
