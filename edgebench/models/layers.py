"""Building blocks shared by the zoo's models."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias: BN follows) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def scaled(channels: int, width: float) -> int:
    """Channel count multiplied by a width factor, at least 1."""
    return max(1, round(channels * width))
