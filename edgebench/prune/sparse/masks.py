"""Binary weight masks stored *in* the weights: a masked weight is an exact zero, always.

Every unstructured method here keeps its pruned connections as zeros in the ordinary ``weight`` tensors
(never as a separate mask applied in ``forward``), so the trained module, its cache file and every exported
artifact (ONNX initialisers, TFLite buffers, hls4ml weight files) contain the zeros themselves. During
training :class:`MaskedWeights` keeps them at zero: it zeroes their gradients after ``backward`` and the
weights (and momentum) after each optimizer step, because weight decay and momentum would otherwise revive
them. Since the zeros are real, the gradient a masked weight receives is the *dense* gradient of the loss
with respect to that connection - what RigL's grow step needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from edgebench.train import TrainHook, TrainState

Masks = dict[str, torch.Tensor]  # weight-module name -> bool tensor (True = kept)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and linear layers whose weights unstructured methods prune, by module name (the classifier too:
    Han et al. and SNIP prune every layer)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def keep_count(total: int, sparsity: float) -> int:
    """Weights kept so that ``round(sparsity * total)`` are removed (at least one kept)."""
    return max(total - round(sparsity * total), 1)


def top_k_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the ``keep`` highest scores (ties broken by position, deterministically)."""
    flat = scores.detach().flatten().double()
    order = torch.argsort(flat, descending=True, stable=True)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:keep]] = True
    return mask.view(scores.shape)


def layerwise_masks(scores: Mapping[str, torch.Tensor], sparsity: float) -> Masks:
    """Per layer, keep the highest-scored weights so each layer reaches ``sparsity`` exactly (to one weight)."""
    return {name: top_k_mask(s, keep_count(s.numel(), sparsity)) for name, s in scores.items()}


def global_masks(scores: Mapping[str, torch.Tensor], sparsity: float) -> Masks:
    """Rank every weight of every layer together and keep the highest ``1 - sparsity`` of them all."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().double() for n in names])
    keep = top_k_mask(flat, keep_count(flat.numel(), sparsity))
    masks, start = {}, 0
    for n in names:
        size = scores[n].numel()
        masks[n] = keep[start : start + size].view(scores[n].shape)
        start += size
    return masks


def erk_densities(shapes: Mapping[str, torch.Size], sparsity: float) -> dict[str, float]:
    """Erdős-Rényi-Kernel layer densities (Evci et al. 2020, RigL): density of a layer is proportional to
    ``(sum of its dimensions) / (product of its dimensions)``, scaled so the whole network reaches ``1 - sparsity``;
    layers that would exceed density 1 are made dense and the scale is solved again for the rest."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    budget = (1 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        scale = (budget - sum(sizes[n] for n in dense)) / max(sum(raw[n] * sizes[n] for n in free), 1e-12)
        over = [n for n in free if raw[n] * scale > 1]
        if not over:
            return {n: 1.0 if n in dense else raw[n] * scale for n in shapes}
        dense.update(over)


def random_masks(shapes: Mapping[str, torch.Size], densities: Mapping[str, float], seed: int) -> Masks:
    """A uniformly random mask per layer with exactly ``round(density * size)`` kept weights (at least one)."""
    g = torch.Generator().manual_seed(seed)
    return {n: top_k_mask(torch.rand(s, generator=g), keep_count(math.prod(s), 1 - densities[n])) for n, s in shapes.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked weights of ``model`` in place."""
    layers = prunable_layers(model)
    for name, mask in masks.items():
        layers[name].weight.mul_(mask.to(layers[name].weight.dtype))


def sparsity_by_layer(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(zero weights, total weights) of every conv/linear layer: what the exported artifact will contain."""
    return {n: (int((m.weight == 0).sum()), m.weight.numel()) for n, m in prunable_layers(model).items()}


class MaskedWeights(TrainHook):
    """Keeps masked weights at exactly zero during training (see the module docstring).

    ``masks`` may be replaced between steps (RigL changes them); a grown connection starts at zero with
    zero momentum, as in RigL.
    """

    def __init__(self, masks: Masks) -> None:
        self.masks = masks

    def _pairs(self, state: TrainState) -> list[tuple[nn.Parameter, torch.Tensor]]:
        layers = prunable_layers(state.model)
        return [(layers[n].weight, m) for n, m in self.masks.items()]

    def on_train_start(self, state: TrainState) -> None:
        apply_masks(state.model, self.masks)

    def after_backward(self, state: TrainState) -> None:
        for weight, mask in self._pairs(state):
            if weight.grad is not None:
                weight.grad.mul_(mask)

    @torch.no_grad()
    def on_batch_end(self, state: TrainState) -> None:
        for weight, mask in self._pairs(state):
            weight.mul_(mask)
            buf = state.optimizer.state.get(weight, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(mask)
