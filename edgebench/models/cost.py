"""Inference cost of a model: parameter count and multiply-accumulates (MACs) per sample.

MACs count only the layers that dominate compute on every target: convolutions
(out_elements * in_channels / groups * kh * kw) and linear layers (in * out). Pooling, BN
(foldable into the conv) and activations are not counted. Dense runtimes execute every MAC, zero weights
included; ``nonzero=True`` counts only the MACs of non-zero weights - what a sparse kernel, or hls4ml's
firmware at reuse factor 1, has to compute.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    """Parameters of ``model`` that are not exactly zero (weights, biases, BN affine parameters)."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...], nonzero: bool = False) -> int:
    """Conv + linear MACs of one forward pass of a single sample of shape ``input_shape`` (C, H, W).

    Each weight is used once per output position, so a layer costs ``positions * weights``; ``nonzero``
    counts only its non-zero weights.
    """
    total = 0

    def hook(module: nn.Conv2d | nn.Linear, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        positions = output[0].numel() // channels
        weights = int(torch.count_nonzero(module.weight)) if nonzero else module.weight.numel()
        total += positions * weights

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)


def conv_filters(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv layer, by module name."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
