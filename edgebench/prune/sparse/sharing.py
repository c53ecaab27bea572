"""Weight sharing by k-means, the second stage of Deep Compression (Han, Mao and Dally, ICLR 2016).

Per layer, the surviving (non-zero) weights are clustered into ``k = 2**bits`` centroids by one-dimensional
k-means with *linear* initialisation (centroids evenly spaced between the layer's smallest and largest
weight, the initialisation the paper found best), and every weight is replaced by its centroid, so a layer
stores ``bits``-bit indices plus a ``k``-entry codebook. During the following finetuning the paper updates
each centroid with the summed gradient of its weights; :class:`SharedWeights` re-projects after every
optimizer step instead - each cluster's weights are set to their mean, i.e. the centroid moves by the mean of
its weights' SGD updates - which keeps exactly ``k`` distinct values and the zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from edgebench.prune.sparse.masks import prunable_layers
from edgebench.train import TrainHook, TrainState

#: Lloyd iterations; 1-D k-means with linear initialisation converges in far fewer on weight distributions
KMEANS_ITERS = 50


def kmeans_1d(values: torch.Tensor, k: int, iters: int = KMEANS_ITERS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of a 1-D tensor with linear initialisation; returns (centroids, assignment per value).

    An empty cluster keeps its previous centroid.
    """
    v = values.detach().double().flatten()
    centroids = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    assign = torch.zeros(len(v), dtype=torch.long)
    for _ in range(iters):
        assign = torch.argmin((v[:, None] - centroids[None, :]).abs(), dim=1)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k).double()
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids, assign


class SharedWeights(TrainHook):
    """Clusters each layer's non-zero weights (``bits`` per index: one width for every layer, or a width per layer
    name, None leaving that layer unshared) and keeps them shared while training."""

    def __init__(self, model: nn.Module, bits: int | Mapping[str, int | None]) -> None:
        layers = prunable_layers(model)
        widths = dict.fromkeys(layers, bits) if isinstance(bits, int) else dict(bits)
        bad = [b for b in widths.values() if b is not None and not 1 <= b <= 16]
        if bad:
            raise ValueError(f"weight sharing bits must be between 1 and 16, got {bad[0]}")
        #: layer name -> codebook size
        self.sizes = {n: 2**b for n, b in widths.items() if b is not None}
        #: layer name -> (flat indices of the non-zero weights, their cluster per index)
        self.clusters: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for name, layer in layers.items():
                flat = layer.weight.view(-1)
                idx = torch.nonzero(flat, as_tuple=True)[0]
                if len(idx) == 0 or name not in self.sizes:
                    continue
                centroids, assign = kmeans_1d(flat[idx], self.sizes[name])
                flat[idx] = centroids[assign].to(flat.dtype)
                self.clusters[name] = (idx, assign)

    @torch.no_grad()
    def on_batch_end(self, state: TrainState) -> None:
        layers = prunable_layers(state.model)
        for name, (idx, assign) in self.clusters.items():
            flat = layers[name].weight.view(-1)
            k = self.sizes[name]
            sums = torch.zeros(k, dtype=flat.dtype).index_add_(0, assign, flat[idx])
            counts = torch.bincount(assign, minlength=k).clamp(min=1).to(flat.dtype)
            mask = torch.zeros_like(flat, dtype=torch.bool)
            mask[idx] = True
            flat.mul_(mask)  # pruned connections stay zero
            flat[idx] = (sums / counts)[assign]
