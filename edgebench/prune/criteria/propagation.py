"""Criteria that judge a channel by its effect further down the network: ThiNet and NISP."""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from edgebench.prune.criteria.base import (
    CRITERIA,
    Criterion,
    PreparedScores,
    Role,
    ScoringData,
    item_role,
    require_data,
    run_hooked,
)

_BN = nn.modules.batchnorm._BatchNorm


def _sampled_contributions(module: nn.Module, x: torch.Tensor, rows: int, gen: torch.Generator) -> torch.Tensor | None:
    """ThiNet's training set: for ``rows`` random (sample, output unit, position) triples, the contribution of
    each input channel/feature to that output value, ``x_hat_c = sum_{kernel} w_kc * x_c``; shape (rows, C)."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        n_idx = torch.randint(len(x), (rows,), generator=gen)
        k_idx = torch.randint(w.shape[0], (rows,), generator=gen)
        return x[n_idx] * w[k_idx]
    if module.groups != 1:
        return None
    patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C*kk, L)
    n_idx = torch.randint(len(x), (rows,), generator=gen)
    l_idx = torch.randint(patches.shape[-1], (rows,), generator=gen)
    k_idx = torch.randint(w.shape[0], (rows,), generator=gen)
    c = w.shape[1]
    sampled = patches[n_idx, :, l_idx].view(rows, c, -1)
    return (sampled * w[k_idx].view(rows, c, -1)).sum(-1)


@CRITERIA.register("thinet")
class ThiNet(Criterion):
    """ThiNet (Luo et al., ICCV 2017): prune by the *next* layer's reconstruction. On sampled output values
    ``y = sum_c x_hat_c`` of the consuming layer(s), greedily grow the removed set ``T`` with the channel that
    keeps ``sum_rows (sum_{c in T} x_hat_c)^2`` smallest. The score of a channel is the greedy step at which
    it would be removed (0 = first), so pruning ``k`` channels removes exactly ThiNet's greedy ``T`` of size k.

    Args:
        rows_per_batch: sampled output values per scoring batch and consuming layer.
        seed: sampling seed.
    """

    needs_data = True

    def __init__(self, rows_per_batch: int = 128, seed: int = 0) -> None:
        self.rows_per_batch = rows_per_batch
        self.seed = seed
        self._rows: dict[nn.Module, torch.Tensor] = {}

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("thinet", data)
        gen = torch.Generator().manual_seed(self.seed)
        rows: dict[nn.Module, list[torch.Tensor]] = {}

        def hook(module: nn.Module, x: torch.Tensor) -> None:
            sample = _sampled_contributions(module, x, self.rows_per_batch, gen)
            if sample is not None:
                rows.setdefault(module, []).append(sample.double())

        consumers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        run_hooked(model, data, consumers, hook, on_input=True)
        self._rows = {m: torch.cat(r) for m, r in rows.items()}

    def release(self) -> None:
        self._rows = {}

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        raise NotImplementedError("ThiNet scores a whole group jointly")

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor:
        n_root = len(group[0].idxs)
        blocks = []
        for item in group:
            layer = item.dep.target.module
            if item_role(layer, item.dep.handler) != "in" or layer not in self._rows:
                continue
            idxs = torch.as_tensor([int(getattr(i, "idx", i)) for i in item.idxs], dtype=torch.long)
            root = torch.as_tensor(item.root_idxs, dtype=torch.long)
            contrib = self._rows[layer][:, idxs]
            # features of one channel (after flatten) add up to that channel's contribution
            blocks.append(torch.zeros(len(contrib), n_root, dtype=torch.float64).index_add_(1, root, contrib))
        if not blocks:
            raise ValueError("thinet: no consuming conv/linear layer found for this group")
        return _greedy_removal_order(torch.cat(blocks)).float()


def _greedy_removal_order(x: torch.Tensor) -> torch.Tensor:
    """Scores = ThiNet greedy step at which each column of ``x`` (rows, C) joins the removed set."""
    c = x.shape[1]
    order = torch.empty(c, dtype=torch.float64)
    removed = torch.zeros(c, dtype=torch.bool)
    running = torch.zeros(x.shape[0], dtype=torch.float64)
    for step in range(c):
        error = ((running[:, None] + x) ** 2).sum(0)
        error[removed] = float("inf")
        pick = int(torch.argmin(error))
        order[pick] = step
        removed[pick] = True
        running += x[:, pick]
    return order


@CRITERIA.register("nisp")
class NISP(PreparedScores):
    """NISP (Yu et al., "Neuron Importance Score Propagation", CVPR 2018): importance of the final response
    layer (the classifier's input) is propagated backwards through absolute weights, ``s_k = |W_{k+1}|^T s_{k+1}``.

    Implemented exactly as that linear propagation: on a copy of the network with every conv/linear weight
    replaced by ``|W|``, biases zeroed and each BN reduced to its scale ``|gamma| / sqrt(var + eps)``, fed an
    all-ones input, the gradient of the summed logits with respect to a per-channel offset added to each conv's
    output is ``s`` for that conv's channels (pooling routes it spatially). The final-response-layer scores are
    ``s_FRL = sum_o |W_cls[o, :]|`` (uniform class importance; the paper ranks FRL features with Inf-FS).
    Data-free.
    """

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        absnet = copy.deepcopy(model).eval()
        originals = dict(model.named_modules())
        probes: dict[str, torch.Tensor] = {}
        handles = []
        for name, m in absnet.named_modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.data.abs_()
                if m.bias is not None:
                    m.bias.data.zero_()
            if isinstance(m, _BN):
                scale = (m.weight.detach().abs() if m.weight is not None else 1) / torch.sqrt(m.running_var + m.eps)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.eps = 0.0
                m.weight = nn.Parameter(scale * torch.ones_like(m.running_var))
                m.bias = nn.Parameter(torch.zeros_like(m.running_var))
            if isinstance(m, nn.Conv2d):
                probes[name] = torch.zeros(m.out_channels, requires_grad=True)
                handles.append(m.register_forward_hook(lambda _m, _i, out, p=probes[name]: out + p.view(1, -1, 1, 1)))
        absnet(torch.ones_like(example_input[:1])).sum().backward()
        for h in handles:
            h.remove()
        self._scores = {originals[n]: p.grad.detach().double() for n, p in probes.items() if p.grad is not None}
