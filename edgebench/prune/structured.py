"""Structured (filter) pruning with physical removal through torch-pruning's dependency graph.

Three separable steps, so each can be tested and reused:

1. :func:`score_groups` - build the dependency graph, score every prunable group's channels with a
   criterion (a group = a conv's filters plus everything coupled to them: BN, next layer's inputs,
   residual partners, depthwise convs);
2. :func:`select_channels` - choose which channels go, per layer or globally, as a fraction of the
   *original* filters (so repeated steps ramp towards a target), with ``round_to``;
3. :func:`remove_channels` - physically remove them (smaller tensors, not masks).

:func:`prune_model` runs the three, and for ``unit="macs"`` searches the filter ratio whose MACs cut
meets the requested one.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch_pruning as tp
from torch import nn

from edgebench.models.cost import count_macs
from edgebench.prune.criteria import Criterion, ScoringData
from edgebench.prune.criteria.magnitude import L1Norm

log = logging.getLogger(__name__)

#: ranks groups a criterion cannot score (e.g. bn_scale on a conv without BatchNorm)
_L1_FALLBACK = L1Norm()


@dataclass
class GroupScores:
    """Scores of one prunable group's channels, named by its root conv."""

    root: str
    scores: torch.Tensor  # one per current channel of the root (per channel slot when grouped)
    original: int  # root's channels before any pruning
    channel_groups: int = 1  # grouped conv: channels come in this many equal slices pruned alike
    convs: int = 1  # conv layers whose filters this group removes together (residual partners, depthwise)


def default_ignored(model: nn.Module) -> list[nn.Module]:
    """The final classifier (the last Linear, else the last conv): its outputs are the classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return [linears[-1]]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1:]


def _channel_groups(group: tp.dependency.Group) -> int:
    """Grouped (not depthwise) convs force channels to be pruned in equal slices per group."""
    counts = [
        item.dep.target.module.groups
        for item in group
        if isinstance(item.dep.target.module, nn.Conv2d)
        and 1 < item.dep.target.module.groups < item.dep.target.module.in_channels
    ]
    return max(counts, default=1)


def _graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)


def _groups(
    model: nn.Module, graph: tp.DependencyGraph, ignored: list[nn.Module] | None
) -> list[tuple[str, tp.dependency.Group]]:
    names = {m: n for n, m in model.named_modules()}
    skip = ignored if ignored is not None else default_ignored(model)
    return [
        (names[g[0].dep.target.module], g)
        for g in graph.get_all_groups(ignored_layers=list(skip), root_module_types=[nn.Conv2d])
    ]


def score_groups(
    model: nn.Module,
    criterion: Criterion,
    example_input: torch.Tensor,
    original: dict[str, int] | None = None,
    ignored: list[nn.Module] | None = None,
) -> list[GroupScores]:
    """Score every prunable group of ``model`` (criterion must already be prepared).

    ``original`` maps conv names to their channel counts before pruning began (defaults to now).
    """
    graph = _graph(model, example_input)
    result = []
    for root, group in _groups(model, graph, ignored):
        scores = criterion(group)
        if scores is None:
            log.warning("%s cannot score the group of %s; ranking it by filter L1 norm", type(criterion).__name__, root)
            scores = _L1_FALLBACK(group)
        ch_groups = _channel_groups(group)
        if ch_groups > 1:  # average each channel slot over the slices that must be pruned together
            scores = scores.view(ch_groups, -1).mean(0)
        n = len(group[0].idxs)
        convs = sum(
            1
            for item in group
            if isinstance(item.dep.target.module, nn.Conv2d) and graph.is_out_channel_pruning_fn(item.dep.handler)
        )
        result.append(GroupScores(root, scores.float(), (original or {}).get(root, n), ch_groups, max(convs, 1)))
    return result


def _keep_count(target: float, current: int, round_to: int | None, floor: int) -> int:
    keep = round(target)
    if round_to:
        keep = round(keep / round_to) * round_to
    return max(min(keep, current), min(floor, current))


def select_channels(
    groups: list[GroupScores],
    ratio: float,
    scope: Literal["layer", "global"] = "layer",
    round_to: int | None = None,
) -> dict[str, list[int]]:
    """Channels (root indices) to remove so each group - or all groups together - keep ``1 - ratio`` of
    their *original* channels; the lowest-scored go. Every group keeps at least ``round_to`` (or 1).

    Global scope ranks mean-normalised scores across groups (raw scales differ between layers), counting a
    channel once per conv whose filter it removes.
    """
    floor = round_to or 1
    keep: dict[str, int] = {}
    if scope == "layer":
        for g in groups:
            keep[g.root] = _keep_count(g.original / g.channel_groups * (1 - ratio), len(g.scores), round_to, floor)
    else:
        # Rank all channels together; a channel of a group spanning several convs (a residual add) stands
        # for that many filters, so the kept *filters* - not channel slots - reach 1 - ratio.
        normed = [g.scores / g.scores.mean().clamp(min=1e-12) for g in groups]
        budget = sum(g.original * g.convs for g in groups) * (1 - ratio)
        owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(normed)])
        weight = torch.cat([torch.full((len(s),), float(g.convs * g.channel_groups)) for g, s in zip(groups, normed)])
        ranked = torch.argsort(torch.cat(normed), descending=True, stable=True)
        ranked = ranked[torch.cumsum(weight[ranked], 0) <= budget + 1e-9]
        kept = torch.bincount(owner[ranked], minlength=len(groups))
        for g, s, k in zip(groups, normed, kept.tolist()):
            keep[g.root] = _keep_count(k, len(s), round_to, floor)
    plan = {}
    for g in groups:
        n_remove = len(g.scores) - keep[g.root]
        if n_remove <= 0:
            continue
        slot = torch.argsort(g.scores, stable=True)[:n_remove]
        width = len(g.scores)
        plan[g.root] = sorted(int(i) + k * width for k in range(g.channel_groups) for i in slot)
    return plan


def remove_channels(model: nn.Module, example_input: torch.Tensor, plan: dict[str, list[int]]) -> None:
    """Physically remove the planned root channels (and everything coupled to them) from ``model``."""
    if not plan:
        return
    graph = _graph(model, example_input)
    for root, group in _groups(model, graph, ignored=[]):
        if root in plan:
            group.prune(idxs=plan[root])


def prune_model(
    model: nn.Module,
    criterion: Criterion,
    ratio: float,
    example_input: torch.Tensor,
    *,
    data: ScoringData | None = None,
    original: dict[str, int] | None = None,
    unit: Literal["filters", "macs"] = "filters",
    scope: Literal["layer", "global"] = "layer",
    round_to: int | None = None,
    original_macs: int | None = None,
    ignored: list[nn.Module] | None = None,
) -> dict[str, list[int]]:
    """Prune ``model`` in place until ``ratio`` of its original filters (or MACs) are gone.

    Args:
        data: training samples for data-dependent criteria.
        original: conv name -> channels before pruning began; a ramp of calls with growing ``ratio``
            reaches ``ratio`` of these, not of the current (already pruned) widths.
        original_macs: MACs per sample before pruning began (``unit="macs"``).
    Returns:
        The removal plan that was applied (root conv name -> removed channel indices).
    """
    model.eval()
    input_shape = tuple(example_input.shape[1:])
    criterion.prepare(model, example_input, data)
    try:
        groups = score_groups(model, criterion, example_input, original, ignored)
    finally:
        criterion.release()
    if unit == "filters":
        plan = select_channels(groups, ratio, scope, round_to)
    else:
        plan = _plan_for_macs(model, groups, ratio, example_input, scope, round_to, original_macs, input_shape)
    remove_channels(model, example_input, plan)
    log.debug("pruned %d channels in %d groups", sum(map(len, plan.values())), len(plan))
    return plan


def _plan_for_macs(
    model: nn.Module,
    groups: list[GroupScores],
    ratio: float,
    example_input: torch.Tensor,
    scope: Literal["layer", "global"],
    round_to: int | None,
    original_macs: int | None,
    input_shape: tuple[int, ...],
) -> dict[str, list[int]]:
    """Bisect the filter ratio whose pruned copy has at most ``(1 - ratio)`` of the original MACs."""
    base = original_macs or count_macs(model, input_shape)
    target = base * (1 - ratio)

    def macs_after(plan: dict[str, list[int]]) -> int:
        trial = copy.deepcopy(model)
        remove_channels(trial, example_input, plan)
        return count_macs(trial, input_shape)

    lo, hi = 0.0, 0.99
    best = select_channels(groups, hi, scope, round_to)
    for _ in range(12):
        mid = (lo + hi) / 2
        plan = select_channels(groups, mid, scope, round_to)
        if macs_after(plan) <= target:
            hi, best = mid, plan
        else:
            lo = mid
    return best
