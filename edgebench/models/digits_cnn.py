"""The default model: a small VGG-style CNN for 8x8 digits.

Only Conv2d / BatchNorm2d / ReLU / MaxPool2d / Flatten / Linear, no adaptive pooling, so the FPGA
(hls4ml) path can take it; the flattened size is computed from ``input_size``.
"""

from __future__ import annotations

from torch import nn

from edgebench.models import MODELS
from edgebench.models.layers import conv_bn_relu, image_size, scaled


@MODELS.register("digits_cnn")
def digits_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
               input_size: int | tuple[int, int] = 8) -> nn.Sequential:
    """conv16 - conv32 - pool - conv64 - pool - fc (channels times ``width``)."""
    c1, c2, c3 = scaled(16, width), scaled(32, width), scaled(64, width)
    height, width_px = image_size(input_size)
    return nn.Sequential(
        conv_bn_relu(in_channels, c1),
        conv_bn_relu(c1, c2),
        nn.MaxPool2d(2),
        conv_bn_relu(c2, c3),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c3 * (height // 4) * (width_px // 4), num_classes),
    )
