"""Inference cost of a model: parameter count and multiply-accumulates (MACs) per sample.

MACs count only the layers that dominate compute on every target: convolutions
(out_elements * in_channels / groups * kh * kw) and linear layers (in * out). Pooling, BN
(foldable into the conv) and activations are not counted.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Conv and linear MACs per layer (module path) of one forward pass of a single sample of ``input_shape``.

    A module called more than once (shared weights) counts every call.
    """
    names = {m: n for n, m in model.named_modules()}
    macs: dict[str, int] = {}

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            n = output[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            n = output[0].numel() * module.in_features
        macs[names[module]] = macs.get(names[module], 0) + int(n)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        weight = next(model.parameters())  # fp16 modules take fp16 inputs
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=weight.device, dtype=weight.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv + linear MACs of one forward pass of a single sample of shape ``input_shape`` (C, H, W)."""
    return sum(layer_macs(model, input_shape).values())


def conv_filters(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv layer, by module name."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
