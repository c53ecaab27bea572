"""Criteria that judge a channel by its effect further down the network: ThiNet and NISP."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from edgebench.prune.criteria.base import (
    CRITERIA,
    Criterion,
    ResponseScores,
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
        x = x.reshape(-1, x.shape[-1])  # a Linear over a channels-last map: each position is a sample
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


@dataclass
class _ConsumerRows:
    """One consuming layer of the group being scored: its sampled per-channel contributions (rows x root channels)
    and, per root channel, the consumer's input columns that read it."""

    layer: nn.Module
    contributions: torch.Tensor
    columns: dict[int, list[int]]


@CRITERIA.register("thinet")
class ThiNet(Criterion):
    """ThiNet (Luo, Wu and Lin, "ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression", ICCV
    2017): prune a layer by its *next* layer's reconstruction, layer by layer.

    For layer ``i``, sampled output values of the consuming layer(s) are written as sums of per-channel
    contributions, ``y = sum_c x_hat_c`` (the bias left out). The removed set ``T`` grows greedily by the channel
    that keeps ``sum_rows (sum_{c in T} x_hat_c)^2`` smallest (the paper's Algorithm 1); the score of a channel is
    the greedy step at which it would be removed (0 = first), so removing ``k`` channels removes exactly ThiNet's
    greedy ``T``. Then the kept channels are weighted by least squares (eq. 6),
    ``w_hat = argmin_w sum_rows (y_hat - sum_{c kept} w_c x_hat_c)^2`` with ``y_hat`` the group's contribution
    before pruning, and the consumer's input weights of kept channel ``c`` are multiplied by ``w_hat_c``. Layers are
    pruned one at a time in network order, each on statistics sampled from the network as pruned so far
    (``layer_by_layer``). The paper fine-tunes one epoch after each layer; edgebench finetunes as the schedule says
    (``oneshot_finetune``: after all layers). Every layer loses the same share (``uniform``), as in the paper.

    Args:
        rows_per_batch: sampled output values per scoring batch and consuming layer.
        seed: sampling seed.
        rescale: apply the least-squares weights (the paper's step; False reproduces selection alone).
    """

    needs_data = True
    layer_by_layer = True
    revision = 1  # was selection alone, all layers at once, no rescaling

    def __init__(self, rows_per_batch: int = 128, seed: int = 0, rescale: bool = True) -> None:
        self.rows_per_batch = rows_per_batch
        self.seed = seed
        self.rescale = rescale
        self._rows: dict[nn.Module, torch.Tensor] = {}
        self._scored: list[_ConsumerRows] = []

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
        self._rows, self._scored = {}, []

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        raise NotImplementedError("ThiNet scores a whole group jointly")

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        n_root = len(group[0].idxs)
        self._scored = []
        for item in group:
            layer = item.dep.target.module
            if item_role(layer, item.dep.handler) != "in" or layer not in self._rows:
                continue
            idxs = [int(getattr(i, "idx", i)) for i in item.idxs]
            root = [int(r) for r in item.root_idxs]
            contrib = self._rows[layer][:, idxs]
            # features of one channel (after flatten) add up to that channel's contribution
            per_root = torch.zeros(len(contrib), n_root, dtype=torch.float64).index_add_(
                1, torch.as_tensor(root, dtype=torch.long), contrib)
            columns: dict[int, list[int]] = {}
            for column, channel in zip(idxs, root):
                columns.setdefault(channel, []).append(column)
            self._scored.append(_ConsumerRows(layer, per_root, columns))
        if not self._scored:  # read only by layers ThiNet cannot sample (grouped convs, transposed convs)
            return None
        return _greedy_removal_order(torch.cat([c.contributions for c in self._scored])).float()

    @torch.no_grad()
    def after_removal(self, model: nn.Module, root: str, removed: list[int]) -> None:
        """Multiply each consumer's input weights of the kept channels by their least-squares weight."""
        if not self.rescale:
            return
        gone = set(removed)
        for consumer in self._scored:
            kept = [c for c in range(consumer.contributions.shape[1]) if c not in gone]
            w_hat = least_squares_weights(consumer.contributions, kept)
            removed_columns = sorted(col for c in gone for col in consumer.columns.get(c, []))
            weight = consumer.layer.weight
            for channel, scale in zip(kept, w_hat.tolist()):
                for column in consumer.columns.get(channel, []):
                    new = column - sum(1 for r in removed_columns if r < column)  # its index after the removal
                    weight[:, new] *= scale


def least_squares_weights(contributions: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """ThiNet's eq. 6: the weights ``w`` of the kept channels minimising ``||y_hat - X_kept w||^2``, with
    ``y_hat`` the sum of all channels' contributions (rows) and ``X_kept`` the kept channels' columns."""
    target = contributions.sum(1, keepdim=True)
    return torch.linalg.lstsq(contributions[:, kept], target).solution.flatten()


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


def spearman_matrix(x: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between the columns of ``x`` (samples x features): Pearson's correlation of the
    columns' ranks, ties given their average rank; a constant column correlates 0 with everything."""
    from scipy.stats import rankdata  # here, not at the top: scipy.stats costs every build process a second

    ranks = torch.as_tensor(rankdata(x.double().numpy(), axis=0), dtype=torch.float64)
    centred = ranks - ranks.mean(0)
    norms = centred.norm(dim=0)
    corr = (centred.T @ centred) / torch.outer(norms, norms)
    return torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


def inf_fs(x: torch.Tensor, alpha: float = 0.5, factor: float = 0.9) -> torch.Tensor:
    """Infinite Feature Selection (Roffo, Melzi and Cristani, ICCV 2015): energy scores of the columns of ``x``
    (samples x features), higher = more important.

    Features are the nodes of a graph weighted ``a_ij = alpha sigma_ij + (1 - alpha) c_ij``, with
    ``sigma_ij = max(std_i, std_j)`` (scaled to [0, 1] over the matrix, as the authors' code does) and
    ``c_ij = 1 - |Spearman(f_i, f_j)|``; summing the weights of all paths of every length,
    ``S = sum_{l >= 1} (r A)^l = (I - r A)^{-1} - I`` with ``r = factor / rho(A)``, gives each feature's score
    ``s_i = sum_j S_ij``. Defaults are the paper's (``alpha = 0.5``, ``r = 0.9 / rho(A)``); the authors' MATLAB
    code uses 0.99."""
    std = x.double().std(0)
    pair = torch.maximum(std[:, None], std[None, :])
    spread = pair.max() - pair.min()
    sigma = (pair - pair.min()) / spread if spread > 0 else torch.zeros_like(pair)
    a = alpha * sigma + (1 - alpha) * (1 - spearman_matrix(x).abs())
    rho = float(torch.linalg.eigvalsh(a).max())
    eye = torch.eye(len(a), dtype=torch.float64)
    energy = torch.linalg.inv(eye - factor / rho * a) - eye
    return energy.sum(1)


def classifier_inputs(model: nn.Module, data: ScoringData) -> tuple[nn.Linear, torch.Tensor]:
    """The final response layer's responses: the inputs of the last Linear layer (the classifier) on ``data``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("nisp: the model has no Linear classifier whose inputs are the final response layer")
    rows: list[torch.Tensor] = []
    run_hooked(model, data, linears[-1:], lambda _m, x: rows.append(x.flatten(1).double()), on_input=True)
    return linears[-1], torch.cat(rows)


@CRITERIA.register("nisp")
class NISP(ResponseScores):
    """NISP (Yu, Li, Chen, Lai, Morariu, Han, Gao, Lin and Davis, "NISP: Pruning Networks using Neuron Importance
    Score Propagation", CVPR 2018): the neurons of the final response layer (FRL, the classifier's input) are
    ranked with Inf-FS (:func:`inf_fs`) on their responses to training samples, and these scores are propagated
    backwards to every layer through absolute weights, ``s_k = |W_{k+1}|^T s_{k+1}`` (the paper's closed-form
    solution of minimising the FRL's weighted reconstruction error).

    The propagation runs on a copy of the network with every conv/linear weight replaced by ``|W|``, biases zeroed
    and each BN reduced to its scale ``|gamma| / sqrt(var + eps)``, fed an all-ones input: the gradient of
    ``sum_f s_FRL[f] * FRL_f`` with respect to a per-channel offset added to a layer's output is ``s`` for its
    channels (pooling routes it spatially, a channel's total is kept). A neuron is a channel's response, so where a
    BN follows the conv the offset is added to the BN's output: a layer's score depends on the weights after it
    (the next BN folded into the next conv, as in the paper's fully-connected layers), not on its own BN's scale,
    and folding a BN into its conv leaves the ranking as it was. The paper prunes each layer by a predefined ratio
    (``uniform``).

    Args:
        alpha: Inf-FS mixing weight of the standard-deviation and correlation terms.
        factor: Inf-FS ``r rho(A)`` (below 1 for the path series to converge).
    """

    needs_data = True
    # 1: the FRL was weighted uniformly (sum of |classifier weights|) before Inf-FS; 2: a channel's score took in its
    # own BN's scale (the offset was added before the BN)
    revision = 2

    def __init__(self, alpha: float = 0.5, factor: float = 0.9) -> None:
        if not 0 <= alpha <= 1 or not 0 < factor < 1:
            raise ValueError("nisp: alpha must be in [0, 1] and factor in (0, 1)")
        super().__init__()
        self.alpha, self.factor = alpha, factor
        self.frl_scores: torch.Tensor | None = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        data = require_data("nisp", data)
        classifier, responses = classifier_inputs(model, data)
        self.frl_scores = inf_fs(responses, self.alpha, self.factor)
        self._scores = propagate_importance(model, classifier, self.frl_scores, example_input)


def propagate_importance(model: nn.Module, classifier: nn.Module, frl_scores: torch.Tensor,
                         example_input: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """NISP's backward propagation of the FRL scores to the output channels of every conv and BN (see
    :class:`NISP`)."""
    absnet = copy.deepcopy(model).eval()
    originals = dict(model.named_modules())
    absolute = dict(absnet.named_modules())
    frl_name = next(n for n, m in originals.items() if m is classifier)
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
        if isinstance(m, nn.Conv2d | _BN):
            probes[name] = torch.zeros(m.out_channels if isinstance(m, nn.Conv2d) else m.num_features,
                                       requires_grad=True)
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, p=probes[name]: out + p.view(1, -1, *[1] * (out.dim() - 2))))
    frl: list[torch.Tensor] = []
    handles.append(absolute[frl_name].register_forward_pre_hook(lambda _m, inputs: frl.append(inputs[0])))
    try:
        absnet(torch.ones_like(example_input[:1]))
        (frl[0].flatten(1) * frl_scores.to(frl[0].dtype)).sum().backward()
    finally:
        for h in handles:
            h.remove()
    return {originals[n]: p.grad.detach().double() for n, p in probes.items() if p.grad is not None}
