"""LRPET: low-rank projection with energy transfer (Guo, Lin et al., "Compact Model Training by Low-Rank
Projection with Energy Transfer", IEEE TNNLS 2024; arXiv 2204.05566).

A conv layer's weight is the matrix ``W`` (``out x in*kh*kw``; a linear layer's is ``out x in``). Training
alternates ordinary SGD in the full (Euclidean) weight space with a projection of every ``W`` onto the
rank-``r`` manifold, once per epoch: with ``W = U diag(s) V^T``, the projection keeps ``s_1..s_r`` and zeroes the
rest. The projection removes matrix energy ``sum_{i>r} s_i^2``; *energy transfer* gives it back uniformly to
the kept singular values, ``s_i <- s_i * sqrt(sum_i s_i^2 / sum_{i<=r} s_i^2)`` for ``i <= r``, so ``||W||_F`` is
unchanged (the paper shows this eases the vanishing gradients the projection causes). *BN rectification*: when a
BatchNorm follows the layer, the matrix the network applies is ``diag(a) W`` with ``a = gamma / sqrt(var + eps)``,
so that product is projected and the scale divided out again (by the regularised inverse ``a / (a^2 + 1e-5)``,
as the authors do, so a near-zero scale cannot blow up).

After the last epoch's projection each layer is exactly rank ``r`` and is replaced by two dense layers that
compute the same function: a conv ``kh x kw`` with ``r`` filters (``sqrt(s) V^T``, the layer's stride/padding, no
bias) followed by a ``1 x 1`` conv with the original outputs (``U sqrt(s)``, the original bias); a linear layer
becomes ``in -> r -> out``. ``rank_ratio`` is the kept fraction of each layer's full rank ``min(out, in*kh*kw)``;
a layer whose two factors would not have fewer weights (and MACs) than itself, a grouped conv and the final
classifier (its outputs are the classes; the authors factorise convolutions only) stay dense and unconstrained.
Reported: low-rank networks trained from scratch that are competitive with recent pruning methods on CIFAR-10
and ImageNet (the authors' ResNet-56 settings remove 51-79 % of the FLOPs).
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn

from edgebench.data import DatasetSplits
from edgebench.prune.schedules import Progress, ScheduleResult
from edgebench.prune.structured import default_ignored
from edgebench.train import TrainHook, TrainState, evaluate, train
from edgebench.variants import TrainSpec

log = logging.getLogger(__name__)

_BN = nn.modules.batchnorm._BatchNorm
#: the authors' regulariser of the inverse BN scale
BN_INVERSE_EPS = 1e-5


def weight_matrix(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """The layer's weight as an ``out x (in * kh * kw)`` matrix (a view)."""
    return layer.weight.view(layer.weight.shape[0], -1)


def full_rank(layer: nn.Conv2d | nn.Linear) -> int:
    """The largest rank the layer's weight matrix can have."""
    return min(weight_matrix(layer).shape)


def factorisable_ranks(model: nn.Module, rank_ratio: float) -> dict[str, int]:
    """Rank per conv/linear layer for ``rank_ratio`` of its full rank, for the layers whose two factors have
    fewer weights than the layer (``r * (in*kh*kw + out) < out * in*kh*kw``); grouped convs and the final
    classifier are left out."""
    if not 0 < rank_ratio < 1:
        raise ValueError(f"rank_ratio must be strictly between 0 and 1, got {rank_ratio}")
    classifier = default_ignored(model)
    ranks = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, nn.Conv2d | nn.Linear) or getattr(layer, "groups", 1) != 1 or layer in classifier:
            continue
        out, d = weight_matrix(layer).shape
        rank = max(1, round(rank_ratio * full_rank(layer)))
        if rank * (d + out) < out * d:
            ranks[name] = rank
        else:
            log.info("low rank: %s stays dense (rank %d of %d x %d saves nothing)", name, rank, out, d)
    return ranks


def project(matrix: torch.Tensor, rank: int, energy_transfer: bool = True) -> torch.Tensor:
    """The rank-``rank`` truncated SVD of ``matrix``, with the pruned energy moved to the kept singular values."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    kept = s[:rank]
    if energy_transfer:
        kept_energy = kept.pow(2).sum()
        if kept_energy > 0:
            kept = kept * torch.sqrt(s.pow(2).sum() / kept_energy)
    return ((u[:, :rank] * kept) @ vh[:rank]).to(matrix.dtype)


def following_batchnorms(model: nn.Module) -> dict[str, _BN]:
    """Layer name -> the BatchNorm applied directly (and only) to its output, found by tracing the model."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # an untraceable model just gets no BN rectification
        log.warning("low rank: cannot trace the model (%s); projecting without BN rectification", exc)
        return {}
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv2d | nn.Linear):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(users[0].target), _BN):
            pairs[node.target] = modules[users[0].target]
    return pairs


@torch.no_grad()
def project_layers(model: nn.Module, ranks: dict[str, int], batchnorms: dict[str, _BN], energy_transfer: bool = True) -> None:
    """Project every layer of ``ranks`` onto its rank in place (BN-rectified where ``batchnorms`` has its BN)."""
    for name, rank in ranks.items():
        layer = model.get_submodule(name)
        matrix = weight_matrix(layer)
        bn = batchnorms.get(name)
        if bn is None or bn.weight is None:
            matrix.copy_(project(matrix, rank, energy_transfer))
            continue
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps))[:, None]
        merged = project(matrix * scale, rank, energy_transfer)
        matrix.copy_(merged * scale / (scale.pow(2) + BN_INVERSE_EPS))


class LowRankProjection(TrainHook):
    """Projects the layers of ``ranks`` after every epoch (the alternation of LRPET)."""

    def __init__(self, ranks: dict[str, int], energy_transfer: bool = True, bn_rectification: bool = True) -> None:
        self.ranks, self.energy_transfer, self.bn_rectification = ranks, energy_transfer, bn_rectification

    def on_epoch_end(self, state: TrainState) -> None:
        batchnorms = following_batchnorms(state.model) if self.bn_rectification else {}
        project_layers(state.model, self.ranks, batchnorms, self.energy_transfer)


def two_layers(layer: nn.Conv2d | nn.Linear, rank: int) -> nn.Sequential:
    """The two dense layers whose composition equals ``layer``'s best rank-``rank`` approximation."""
    matrix = weight_matrix(layer).detach().double()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).float()  # r x d
    second_w = (u[:, :rank] * root).float()  # out x r
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features, bias=has_bias)
        first.weight.data.copy_(first_w)
        second.weight.data.copy_(second_w)
    else:
        first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                          bias=False, padding_mode=layer.padding_mode)
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias)
        first.weight.data.copy_(first_w.view(rank, *layer.weight.shape[1:]))
        second.weight.data.copy_(second_w.view(layer.out_channels, rank, 1, 1))
    if has_bias:
        second.bias.data.copy_(layer.bias.detach())
    return nn.Sequential(first, second)


def factorise(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace every layer of ``ranks`` in ``model`` by its two-layer factorisation (in place)."""
    for name, rank in ranks.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, two_layers(model.get_submodule(name), rank))


def train_lowrank(model: nn.Module, splits: DatasetSplits, train_spec: TrainSpec, rank_ratio: float,
                  energy_transfer: bool = True, bn_rectification: bool = True,
                  progress: Progress = None) -> ScheduleResult:
    """Train ``model`` from scratch with LRPET at ``rank_ratio`` and factorise it in place."""
    ranks = factorisable_ranks(model, rank_ratio)
    result = train(model, splits, train_spec, hooks=[LowRankProjection(ranks, energy_transfer, bn_rectification)],
                   progress=progress)
    factorise(model, ranks)
    history = [{**h, "rank_ratio": rank_ratio} for h in result.history]
    return ScheduleResult(history, result.training_macs, evaluate(model.eval(), splits.x_val, splits.y_val))
