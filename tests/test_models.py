"""Model zoo: shapes, FX-traceability, parameter counts from the literature, hls4ml-friendly default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.models import create_model, list_models
from edgebench.models.cost import count_params

CASES = [
    ("digits_cnn", 1, 8, {}),
    ("vgg16_cifar", 3, 32, {"width": 0.25}),
    ("resnet56_cifar", 3, 32, {"depth": 8}),
    ("mobilenet_cifar", 3, 32, {"width": 0.25}),
]


@pytest.mark.parametrize(("name", "channels", "size", "kwargs"), CASES)
def test_models_run_and_trace(name: str, channels: int, size: int, kwargs: dict) -> None:
    model = create_model(name, num_classes=7, in_channels=channels, **kwargs).eval()
    x = torch.randn(3, channels, size, size)
    traced = torch.fx.symbolic_trace(model)
    assert model(x).shape == (3, 7)
    torch.testing.assert_close(traced(x), model(x))


def test_registry_and_literature_sizes() -> None:
    assert set(list_models()) == {"digits_cnn", "vgg16_cifar", "resnet56_cifar", "mobilenet_cifar"}
    # ResNet-56 for CIFAR-10 has ~0.85M parameters (He et al. 2016, Table 6); VGG-16 (CIFAR) ~14.7M
    assert 0.84e6 < count_params(create_model("resnet56_cifar", 10, 3)) < 0.87e6
    assert 14.6e6 < count_params(create_model("vgg16_cifar", 10, 3)) < 14.8e6
    with pytest.raises(KeyError, match="digits_cnn"):
        create_model("nope", 10, 1)


def test_default_model_uses_only_fpga_friendly_layers() -> None:
    allowed = (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear)
    model = create_model("digits_cnn", 10, 1)
    assert all(isinstance(m, allowed) for m in model.modules())
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64]
