"""The team's network: a ResNet-18-style classifier for 3x64x64 images, defined here and not in edgebench's zoo.

Four stages of two basic residual blocks (He et al. 2016), widths w, 2w, 4w, 8w (ResNet-18 is w = 64; the
example trains w = 8: 176k parameters and 2.4 M multiply-accumulates per 3x64x64 image, so a 2-core machine finishes
in minutes). The stem is a stride-2 3x3 convolution and a 2x2
max pool (ImageNet's ResNet-18 has a 7x7 convolution there), so the stages see 16x16 ... 2x2 feature maps.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the identity (a 1x1 projection where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """Stem, four stages of two blocks (stride 1, 2, 2, 2), global average pooling, a linear classifier."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, channels = [], width
        for i, out_channels in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(channels, out_channels, stride), BasicBlock(out_channels, out_channels, 1)]
            channels = out_channels
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def build_resnet18(num_classes: int = 6, in_channels: int = 3, width: int = 8) -> nn.Module:
    """The factory the experiment names (edgebench passes num_classes and in_channels from the data)."""
    return ResNet18(num_classes, in_channels, width)
