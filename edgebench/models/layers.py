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


def image_size(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the images a factory is built for: edgebench passes ``input_size`` as one number for
    square images and as (height, width) otherwise."""
    if isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return int(height), int(width)


def scaled(channels: int, width: float) -> int:
    """Channel count multiplied by a width factor, at least 1."""
    return max(1, round(channels * width))
