"""Model zoo (small CNNs for the bundled data and CIFAR-shaped inputs, all FX-traceable) and model cost (MACs, params).

Factories take ``num_classes`` and ``in_channels`` plus keyword options (``width``, ``input_size``...),
timm-style: ``create_model("vgg16_cifar", num_classes=10, in_channels=3, width=0.5)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from edgebench.registry import Registry

#: model modules register themselves when first looked up (they import this module: no import back)
MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", modules=("edgebench.models.cifar", "edgebench.models.digits_cnn"), group="edgebench.models")


def create_model(name: str, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with fresh (seed-dependent) weights."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, **kwargs)


def list_models() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


__all__ = ["MODELS", "create_model", "list_models"]
