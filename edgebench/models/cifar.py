"""CIFAR-shaped (3x32x32) models: VGG-16, ResNet-56 and a MobileNet-style depthwise-separable net.

The CIFAR VGG-16 (Li et al. 2017, Roy et al. 2020) has 13 conv layers and one classifier; ResNet-56
uses 1x1-conv projection shortcuts so every block is a plain residual add the dependency graph can prune.
"""

from __future__ import annotations

import torch
from torch import nn

from edgebench.models import MODELS
from edgebench.models.layers import conv_bn_relu, image_size, scaled

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@MODELS.register("vgg16_cifar")
def vgg16_cifar(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                input_size: int | tuple[int, int] = 32) -> nn.Sequential:
    """VGG-16 with BatchNorm, five max-pools and a single linear classifier."""
    layers: list[nn.Module] = []
    cin, (height, width_px) = in_channels, image_size(input_size)
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            height, width_px = height // 2, width_px // 2
        else:
            cout = scaled(int(item), width)
            layers.append(conv_bn_relu(cin, cout))
            cin = cout
    layers += [nn.Flatten(), nn.Linear(cin * height * width_px, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with a residual add; a 1x1 projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (He et al. 2016, section 4.2): 3 stages of ``(depth - 2) / 6`` blocks."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, 110...), got {depth}")
        blocks = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.stem = conv_bn_relu(in_channels, widths[0])
        stages: list[nn.Module] = []
        cin = widths[0]
        for i, cout in enumerate(widths):
            for b in range(blocks):
                stages.append(BasicBlock(cin, cout, stride=2 if (i > 0 and b == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


@MODELS.register("resnet56_cifar")
def resnet56_cifar(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, depth: int = 56) -> CifarResNet:
    """ResNet-56 (``depth`` selects other 6n+2 depths, e.g. 8 for tests)."""
    return CifarResNet(depth, num_classes, in_channels, width)


_MOBILENET = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (1024, 2))


@MODELS.register("mobilenet_cifar")
def mobilenet_cifar(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Sequential:
    """MobileNet-v1-style: a 3x3 stem then depthwise 3x3 + pointwise 1x1 blocks, global average pool."""
    cin = scaled(32, width)
    layers: list[nn.Module] = [conv_bn_relu(in_channels, cin)]
    for channels, stride in _MOBILENET:
        cout = scaled(channels, width)
        layers += [conv_bn_relu(cin, cin, stride=stride, groups=cin), conv_bn_relu(cin, cout, kernel=1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
