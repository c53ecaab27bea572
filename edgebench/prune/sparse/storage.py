"""Deep Compression's storage format and its size (Han, Mao and Dally, "Deep Compression: Compressing Deep Neural
Networks with Pruning, Trained Quantization and Huffman Coding", ICLR 2016, sections 2-4).

A pruned layer is stored as its surviving weights in order plus, for each, the *difference* of its position from
the previous one in ``index_bits`` bits (8 for conv, 5 for fully connected layers in the paper); a gap larger than
``2**index_bits`` is bridged by a filler zero entry. With weight sharing each weight is a ``weight_bits`` index into
a per-layer codebook of 32-bit centroids. Finally both streams - the weight indices and the position differences -
are Huffman coded, their distributions being far from uniform. The compression ratio is the dense 32-bit size over
the compressed size, as the paper reports it (AlexNet 35x, VGG-16 49x).

Here the weight tensor is read in row-major order; biases are kept at 32 bits on both sides; the Huffman tables and
codebook layout beyond the 32-bit centroids are not counted.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgebench.prune.sparse.masks import prunable_layers

FLOAT_BITS = 32
#: the paper's bits for a position difference: conv layers 8, fully connected layers 5
INDEX_BITS = {"conv": 8, "fc": 5}
FILLER = "filler"


def huffman_code_lengths(counts: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """Code length of each symbol of a Huffman code for ``counts`` (a single symbol still takes one bit)."""
    symbols = [s for s, c in counts.items() if c > 0]
    if len(symbols) == 1:
        return {symbols[0]: 1}
    tie = itertools.count()
    heap = [(counts[s], next(tie), [s]) for s in symbols]
    heapq.heapify(heap)
    lengths = dict.fromkeys(symbols, 0)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, next(tie), s1 + s2))
    return lengths


def huffman_bits(stream: Iterable[Hashable]) -> int:
    """Bits of ``stream`` Huffman coded with the code of its own symbol counts."""
    counts = Counter(stream)
    return sum(counts[s] * n for s, n in huffman_code_lengths(counts).items())


def relative_positions(mask: torch.Tensor, index_bits: int) -> tuple[list[int], list[bool]]:
    """The stored entries of a flattened ``mask``: each entry's position difference (1..2**index_bits) from the
    previous entry, and whether it is a filler zero bridging a longer gap."""
    span = 2**index_bits
    gaps: list[int] = []
    filler: list[bool] = []
    previous = -1
    for position in torch.nonzero(mask.flatten(), as_tuple=True)[0].tolist():
        while position - previous > span:
            previous += span
            gaps.append(span)
            filler.append(True)
        gaps.append(position - previous)
        filler.append(False)
        previous = position
    return gaps, filler


@dataclass
class LayerStorage:
    """Bits of one layer at each stage of the pipeline."""

    weights: int
    entries: int  # stored weights including filler zeros
    pruned_bits: int  # 32-bit weights + fixed-width position differences
    shared_bits: int | None  # weight_bits indices + fixed-width differences + codebook (None: not shared)
    huffman_bits: int  # Huffman-coded weights (or 32-bit ones when not shared) and differences, + codebook


def layer_storage(weight: torch.Tensor, index_bits: int, weight_bits: int | None) -> LayerStorage:
    """Storage of one layer's (pruned, possibly shared) weight tensor; ``weight_bits`` None: not shared."""
    flat = weight.detach().flatten()
    gaps, filler = relative_positions(flat != 0, index_bits)
    values = iter(flat[flat != 0].tolist())
    stream = [FILLER if is_filler else next(values) for is_filler in filler]
    entries = len(stream)
    pruned = entries * (FLOAT_BITS + index_bits)
    index_huffman = huffman_bits(gaps)
    if weight_bits is None:
        return LayerStorage(flat.numel(), entries, pruned, None, entries * FLOAT_BITS + index_huffman)
    codebook = FLOAT_BITS * len(set(stream) - {FILLER})
    shared = entries * (weight_bits + index_bits) + codebook
    return LayerStorage(flat.numel(), entries, pruned, shared, huffman_bits(stream) + index_huffman + codebook)


def deep_compression_size(model: nn.Module, weight_bits: Mapping[str, int | None]) -> dict[str, object]:
    """Dense and compressed sizes of ``model``'s conv/linear layers (biases at 32 bits on both sides) and the
    compression ratio after each stage: pruning, weight sharing (layers named in ``weight_bits`` with a bit
    width), Huffman coding."""
    layers = {}
    biases = 0
    for name, layer in prunable_layers(model).items():
        kind = "fc" if isinstance(layer, nn.Linear) else "conv"
        layers[name] = layer_storage(layer.weight, INDEX_BITS[kind], weight_bits.get(name))
        biases += FLOAT_BITS * (layer.bias.numel() if layer.bias is not None else 0)
    dense = FLOAT_BITS * sum(s.weights for s in layers.values()) + biases
    pruned = sum(s.pruned_bits for s in layers.values()) + biases
    shared = sum(s.shared_bits if s.shared_bits is not None else s.pruned_bits for s in layers.values()) + biases
    huffman = sum(s.huffman_bits for s in layers.values()) + biases
    return {
        "dense_bits": dense, "pruned_bits": pruned, "shared_bits": shared, "huffman_bits": huffman,
        "ratio_pruned": dense / pruned, "ratio_shared": dense / shared, "ratio": dense / huffman,
        "layers": {n: asdict(s) for n, s in layers.items()},
    }
