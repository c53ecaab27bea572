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


def test_zoo_models_take_non_square_images_as_height_and_width(tmp_path) -> None:
    """edgebench passes ``input_size`` as (height, width) for non-square images (one number for square ones): a
    16x40 spectrogram-like input gives digits_cnn a 64 x 4 x 10 flatten, VGG-16 at 64x32 a 512 x 2 x 1 one."""
    import numpy as np

    from edgebench.data import load_dataset
    from edgebench.models.source import new_model
    from edgebench.variants import VariantSpec

    rng = np.random.default_rng(0)
    y = np.arange(40) % 3
    np.savez(tmp_path / "spec.npz", x_train=rng.random((40, 1, 16, 40), dtype=np.float32), y_train=y,
             x_test=rng.random((6, 1, 16, 40), dtype=np.float32), y_test=y[:6])
    splits = load_dataset("npz", path=str(tmp_path / "spec.npz"))
    model = new_model(VariantSpec(model="digits_cnn", dataset="npz"), splits).eval()
    assert model[-1].in_features == 64 * 4 * 10
    assert model(torch.zeros(2, 1, 16, 40)).shape == (2, 3)
    vgg = create_model("vgg16_cifar", num_classes=10, in_channels=3, width=0.125, input_size=(64, 32)).eval()
    assert vgg[-1].in_features == 64 * 2 * 1 and vgg(torch.zeros(1, 3, 64, 32)).shape == (1, 10)
