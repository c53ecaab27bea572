"""Structured (filter) pruning with physical removal through torch-pruning's dependency graph.

Three separable steps, so each can be tested and reused:

1. :func:`score_groups` - build the dependency graph, score every prunable group's channels with a
   criterion (a group = a conv's filters plus everything coupled to them: BN, next layer's inputs,
   residual partners, depthwise convs);
2. :func:`select_channels` - choose which channels go, given a ratio per group (from an allocation:
   ``prune/allocation/``) as a fraction of the group's *original* channels (so repeated steps ramp towards a
   target), with ``round_to``;
3. :func:`remove_channels` - physically remove them (smaller tensors, not masks).

:func:`prune_model` runs the three, and for ``unit="macs"`` searches the filter ratio whose MACs cut
meets the requested one. A criterion that prunes layer by layer (ThiNet) re-scores each group on the network as
pruned so far and may correct the next layer after each removal (:func:`remove_layer_by_layer`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from edgebench.errors import UnsupportedModelError, first_line
from edgebench.memory_limit import bounded_growth
from edgebench.models.cost import conv_filters, count_macs
from edgebench.prune.allocation.base import Allocation, filters_removed
from edgebench.prune.allocation.ranking import GlobalRanking
from edgebench.prune.allocation.uniform import Uniform
from edgebench.prune.criteria import Criterion, ScoringData
from edgebench.prune.criteria.base import item_role, layer_channels
from edgebench.prune.criteria.magnitude import L1Norm
from edgebench.prune.groups import GroupScores

log = logging.getLogger(__name__)

#: ranks groups a criterion cannot score (e.g. bn_scale on a conv without BatchNorm)
_L1_FALLBACK = L1Norm()


def default_ignored(model: nn.Module) -> list[nn.Module]:
    """The final classifier (the last Linear, else the last conv): its outputs are the classes."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return [linears[-1]]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1:]


def kept_layers(model: nn.Module, keep: Sequence[str] = ()) -> list[nn.Module]:
    """The layers whose filters are never removed: the classifier (:func:`default_ignored`) and the conv layers
    named in ``keep`` (``pruning.keep``); ValueError naming one that is not a conv layer of ``model``."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if unknown := [name for name in keep if name not in convs]:
        shown = ", ".join(list(convs)[:12]) + (" ..." if len(convs) > 12 else "")
        raise ValueError(f"pruning.keep: {', '.join(unknown)} is not a conv layer of the model (its conv layers: "
                         f"{shown})")
    return default_ignored(model) + [convs[name] for name in keep]


def channel_slices(group: tp.dependency.Group) -> int:
    """How many equal slices the group's channels are pruned in, the same slots from each: a grouped (not depthwise)
    conv's groups, and a GroupNorm's (torch-pruning keeps its ``num_groups``, so every group must keep as many
    channels as the others); both at once, their least common multiple (which divides the channels, as each does)."""
    counts = [1]
    for item in group:
        layer = item.dep.target.module
        if isinstance(layer, nn.Conv2d) and 1 < layer.groups < layer.in_channels:
            counts.append(layer.groups)
        elif isinstance(layer, nn.GroupNorm) and layer.num_groups > 1:
            counts.append(layer.num_groups)
    return math.lcm(*counts)


def _one_to_one(item: Any, n: int, side: int) -> bool:
    """Whether a layer of a group sees the group's ``n`` root channels one to one and in order, as all its ``side``."""
    root = [int(i) for i in (item.root_idxs if item.root_idxs is not None else range(n))]
    own = [int(getattr(i, "idx", i)) for i in item.idxs]
    return root == own == list(range(n)) and side == n


def _uncuttable_layer(group: tp.dependency.Group) -> tuple[nn.Module, str] | None:
    """A layer of ``group`` (a grouped conv, a norm, an attention) that cannot lose the group's channels, with why
    (``{conv}`` for its name):

    - a depthwise conv with a channel multiplier (``groups == in_channels``, ``out_channels = k * in_channels``):
      input channel ``i`` feeds outputs ``k*i .. k*i+k-1``, which torch-pruning's depthwise rule (one output per
      input) does not remove together;
    - a grouped (not depthwise) conv or a GroupNorm whose channels are not the group's channels, one to one and
      in order (a concatenation joins them, say): removing a root channel slot from every equal slice
      (:func:`lowest_channels`) would not cut its groups evenly;
    - an ``nn.LayerNorm`` over more than one axis (a (C, H, W) one over an NCHW map): torch-pruning cuts its last
      axis, the width, and the model broke ("normalized_shape=[16, 8, 7]");
    - an ``nn.MultiheadAttention`` whose embedding the channels are (a ViT's patch-embedding conv): its embedding
      must stay a multiple of its heads, each head's dimensions together, which per-group channel counts ignore
      (a tiny ViT's 50 % build failed: "embed_dim must divide evenly by num_heads").
    """
    n = len(group[0].idxs)
    for item in group:
        layer = item.dep.target.module
        if isinstance(layer, nn.MultiheadAttention):
            return layer, (f"attention {{conv}} ({layer.num_heads} heads) embeds them: its embed_dim must stay a "
                           "multiple of its heads, with each head's dimensions together")
        if isinstance(layer, nn.LayerNorm) and len(layer.normalized_shape) > 1:
            return layer, (f"LayerNorm {{conv}} normalises over {len(layer.normalized_shape)} axes "
                           f"{tuple(layer.normalized_shape)}, and torch-pruning would cut its last one, not the channels")
        if isinstance(layer, nn.GroupNorm) and layer.num_groups > 1 and not _one_to_one(item, n, layer.num_channels):
            return layer, (f"GroupNorm {{conv}} (num_groups={layer.num_groups}) normalises them with other channels "
                           "(a concatenation between them), so its groups cannot lose channels evenly")
        if not isinstance(layer, nn.Conv2d) or layer.groups == 1:
            continue
        if layer.groups == layer.in_channels and layer.out_channels != layer.in_channels:
            return layer, (f"depthwise conv {{conv}} has a channel multiplier ({layer.out_channels} outputs from "
                           f"{layer.in_channels} inputs), which torch-pruning cannot cut")
        if layer.groups < layer.in_channels:
            side = layer.out_channels if item.dep.handler.__name__ == "prune_out_channels" else layer.in_channels
            if not _one_to_one(item, n, side):
                return layer, (f"grouped conv {{conv}} (groups={layer.groups}) does not see them one to one (a "
                               "concatenation between them), so its groups cannot lose channels evenly")
    return None


def dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of ``model`` traced on ``example_input``; UnsupportedModelError (its cause
    kept) where torch-pruning fails to map the channels (ShuffleNet's shuffle: a ZeroDivisionError in its reshape
    mapping), so a direct caller of :func:`prune_model` gets what failed and what to do instead of a bare error."""
    graph = tp.DependencyGraph()
    try:
        with _channel_windows_traced_per_channel(), bounded_growth(), warnings.catch_warnings():
            # said for parameters with no dimension over 1 (a scalar temperature): nothing of theirs is cut
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
            return graph.build_dependency(model, example_inputs=example_input,
                                          unwrapped_parameters=_free_parameter_dims(model, graph, example_input.ndim))
    except Exception as exc:
        raise UnsupportedModelError(
            f"torch-pruning cannot map this model's channels ({torch_pruning_failure(exc)}): an operation between "
            "convs reshapes, splits or shuffles channels in a way it cannot follow, so no filter of this model can be "
            "removed (quantize it without pruning)") from exc


def _free_parameter_dims(model: nn.Module, graph: tp.DependencyGraph, input_rank: int) -> list[tuple[nn.Parameter, int]]:
    """The channel dimension of each parameter outside torch-pruning's layers (a learned position bias, a layer
    scale): where it broadcasts against a feature map of the input's rank, the dimension that meets the channels
    (a (1, C, H, W) bias: 1; a (C, H, W) one: 0); otherwise its last dimension over 1, torch-pruning's default,
    which cut a (1, C, 8, 8) bias's width instead of its channels and the model was refused."""
    wrapped = {id(p) for layer in model.modules()
               if (kind := tp.ops.module2type(layer)) in graph.REGISTERED_PRUNERS and kind != tp.ops.OPTYPE.ELEMENTWISE
               for p in layer.parameters()}
    dims = []
    for param in model.parameters():
        if id(param) in wrapped:
            continue
        broadcast = param.ndim - input_rank + 1  # the channel axis (dim 1 of the feature map) under broadcasting
        over_one = [d for d, size in enumerate(param.shape) if size > 1]
        if 0 <= broadcast < param.ndim and param.shape[broadcast] > 1:
            dims.append((param, broadcast))
        elif over_one:
            dims.append((param, over_one[-1]))
    return dims


@contextlib.contextmanager
def _channel_windows_traced_per_channel() -> Iterator[None]:
    """While torch-pruning traces: local response normalisation (AlexNet's LRN, over a window of neighbouring
    channels) as the per-channel op it is to the graph. Its unsqueeze, 3-D pool and squeeze over channels made
    torch-pruning's index mapping grow without end: an AlexNet-style model's check took 24 GiB and was killed.
    Channel ``i`` of its output is channel ``i`` of its input; that a removed channel leaves its neighbours'
    windows is what the removal check then says."""
    original = F.local_response_norm
    F.local_response_norm = lambda input, *args, **kwargs: input.clone()  # type: ignore[assignment]
    try:
        yield
    finally:
        F.local_response_norm = original


def torch_pruning_failure(exc: BaseException) -> str:
    """``<error type> in torch-pruning's <function>: <first line>``: the function names the op it was mapping (e.g.
    ``update_reshape_index_mapping`` for a view over channels); an UnsupportedModelError is read from its cause."""
    if isinstance(exc, UnsupportedModelError) and exc.__cause__ is not None:
        exc = exc.__cause__
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if f"{os.sep}torch_pruning{os.sep}" in frame.filename]
    where = f" in torch-pruning's {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}{where}: {first_line(exc)}"


def prunable_groups(
    model: nn.Module, graph: tp.DependencyGraph, ignored: list[nn.Module] | None
) -> list[tuple[str, tp.dependency.Group]]:
    """Every group whose root is a conv's output channels, named by that conv; ``ignored`` layers (default: the
    classifier, :func:`default_ignored`) are never pruned, nor (a warning names each) a group a grouped conv cannot
    cut (:func:`_uncuttable_layer`) or whose channels torch-pruning cannot map: its walk fails or does not
    settle (:func:`_bounded_walks`), or it maps a channel past a layer's (:func:`_channel_past_a_layer`)."""
    names = {m: n for n, m in model.named_modules()}
    skip = list(ignored if ignored is not None else default_ignored(model))
    limit = _WALK_ITEMS_PER_NODE * len(graph.module2node) + _WALK_ITEMS_SPARE
    widest = _WALK_INDICES_PER_DIM * max((max(p.shape) for p in model.parameters() if p.dim()), default=1)
    while True:  # roots whose channels torch-pruning cannot map are kept, and the groups listed again without them
        try:
            with bounded_growth(), _bounded_walks(graph, limit, widest):  # bounded_growth: index lists growing without end
                all_groups = list(graph.get_all_groups(ignored_layers=list(skip), root_module_types=[nn.Conv2d]))
        except MemoryError as exc:
            raise UnsupportedModelError(
                "torch-pruning cannot map this model's channels (its channel groups grew past the memory bound, "
                "edgebench.memory_limit): an operation between convs mixes channels in a way it follows wrongly; "
                "keep the convs around it (pruning.keep) or quantize the model without pruning") from exc
        except _UnmappedRoot as exc:
            skip.append(exc.root)
            _warn_kept(names[exc.root], exc.why)
            continue
        unmapped: dict[nn.Module, str] = {}
        for group in all_groups:  # each such group found in one listing: each listing walks every group again
            if past := _channel_past_a_layer(group, names):
                unmapped[group[0].dep.target.module] = (f"torch-pruning maps {past} (a split, chunk, slice or pixel "
                                                        "shuffle of channels it follows wrongly)")
        if not unmapped:
            break
        for root, why in unmapped.items():
            skip.append(root)
            _warn_kept(names[root], why)
    groups = []
    for group in all_groups:
        root, uncuttable = names[group[0].dep.target.module], _uncuttable_layer(group)
        if uncuttable is None:
            groups.append((root, group))
        else:
            layer, why = uncuttable
            _warn_kept(root, why.format(conv=names[layer]))
    return groups


def _warn_kept(root: str, why: str) -> None:
    """Warn once per root that its filters are not pruned, and why (every pruning step lists the groups again)."""
    if root not in _WARNED:
        _WARNED.add(root)
        log.warning("the filters of %s are not pruned: %s", root, why)


def _channel_past_a_layer(group: tp.dependency.Group, names: Mapping[nn.Module, str]) -> str | None:
    """Where a group maps a root channel past the channels of one of its layers, which (``channel 99 of the out
    channels of features.4.conv_pwl.conv, which has 61``); None where every index fits. A wrong map removes other
    channels than those it scored, or fails deep in torch-pruning."""
    for item in group:
        layer = item.dep.target.module
        role = item_role(layer, item.dep.handler)
        count = layer_channels(layer, role) if role else None
        top = max((int(getattr(i, "idx", i)) for i in item.idxs), default=-1)
        if count is not None and top >= count:
            side = "" if role == "bn" else f"{role} "
            return f"channel {top} of the {side}channels of {names.get(layer, type(layer).__name__)}, which has {count}"
    return None


#: bound on the steps of torch-pruning's walk from one root, per node of the graph and spare: the longest walk of
#: ResNet-152, DenseNet-121, GhostNet, HRNet and ConvNeXt was under 0.4 steps per node (ResNet-152: 183 for 516)
_WALK_ITEMS_PER_NODE, _WALK_ITEMS_SPARE = 4, 100
#: bound on the channel indices one step of a walk carries, per the model's largest parameter dimension (a layer's
#: channels, or a Linear's inputs after a flatten); a wrong map carried 3.4 million for a model's 2,048
_WALK_INDICES_PER_DIM = 4


class _UnsettledWalk(Exception):
    """A walk of torch-pruning's passed the bound of :func:`_bounded_walks`."""


class _UnmappedRoot(Exception):
    """torch-pruning cannot map the channels tied to ``root``'s filters, and ``why``."""

    def __init__(self, root: nn.Module, why: str) -> None:
        super().__init__(why)
        self.root, self.why = root, why


@contextlib.contextmanager
def _bounded_walks(graph: tp.DependencyGraph, limit: int, widest: int) -> Iterator[None]:
    """While torch-pruning lists ``graph``'s groups: a walk from a root over the layers tied to its channels that
    fails, gathers more than ``limit`` items or carries more than ``widest`` channel indices in one, raises
    :class:`_UnmappedRoot` naming that root. torch-pruning revisits a layer whenever a path brings other channel
    indices than before; where slices of one output are added to or joined with other layers' (timm's rexnet_100),
    the paths bring ever new ones (indices past the layer's channels among them), and one walk passed 20,000 items in
    20 s without ending: the run's check took over 15 minutes before anything else began. In timm's
    lambda_resnet26t, a walk failed (a ZeroDivisionError in a reshape's mapping), which failed the whole listing,
    and others carried millions of indices, up to the memory bound after 8 minutes."""
    add_dep, get_pruning_group = tp.dependency.Group.add_dep, graph.get_pruning_group

    def bounded_add(group: tp.dependency.Group, dep: Any, idxs: Any) -> None:
        if len(group) >= limit or len(idxs) > widest:
            raise _UnsettledWalk
        add_dep(group, dep, idxs)

    def walk(root: nn.Module, *args: Any, **kwargs: Any) -> tp.dependency.Group:
        try:
            return get_pruning_group(root, *args, **kwargs)
        except _UnsettledWalk:
            raise _UnmappedRoot(root, f"torch-pruning's walk over the layers tied to them did not settle (past {limit} "
                                      f"steps in a graph of {len(graph.module2node)} nodes, or {widest} channel "
                                      "indices in one: an op it follows wrongly sends it round with ever new indices, "
                                      "as ReXNet's partial shortcut cat([y[:, :c] + x, y[:, c:]]) does)") from None
        except MemoryError:
            raise
        except Exception as exc:
            raise _UnmappedRoot(root, f"torch-pruning's walk over the layers tied to them fails "
                                      f"({torch_pruning_failure(exc)})") from exc

    tp.dependency.Group.add_dep = bounded_add
    graph.get_pruning_group = walk  # type: ignore[method-assign]  # get_all_groups walks through self.get_pruning_group
    try:
        yield
    finally:
        tp.dependency.Group.add_dep = add_dep
        del graph.get_pruning_group  # the class's own again


#: groups already reported as unprunable (every pruning step lists the groups again)
_WARNED: set[str] = set()
#: (criterion, group) pairs already reported as ranked by L1 instead (allocation and selection both score a group)
_WARNED_FALLBACK: set[tuple[str, str]] = set()


def score_group(
    root: str, group: tp.dependency.Group, criterion: Criterion, graph: tp.DependencyGraph, original: int | None = None
) -> GroupScores:
    """Score one prunable group (named ``root``) with a prepared criterion; ``original``: its channels before pruning
    began (default: now)."""
    scores = criterion(group)
    fallback = scores is None
    if fallback:
        if (type(criterion).__name__, root) not in _WARNED_FALLBACK:
            _WARNED_FALLBACK.add((type(criterion).__name__, root))
            log.warning("%s cannot score the group of %s; its filters are ranked by L1 norm within the layer",
                        type(criterion).__name__, root)
        scores = _L1_FALLBACK(group)
    ch_groups = channel_slices(group)
    if ch_groups > 1:  # average each channel slot over the slices that must be pruned together
        scores = scores.view(ch_groups, -1).mean(0)
    n = len(group[0].idxs)
    producers = [item for item in group
                 if isinstance(item.dep.target.module, nn.Conv2d) and graph.is_out_channel_pruning_fn(item.dep.handler)]
    width = n // ch_groups
    parts = tuple(tuple(sorted({int(i) % width for i in item.root_idxs})) for item in producers
                  if item.root_idxs is not None and len(item.idxs) < n)
    return GroupScores(root, scores.float(), original if original is not None else n, ch_groups,
                       max(len(producers), 1), parts, fallback)


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
    graph = dependency_graph(model, example_input)
    groups = prunable_groups(model, graph, ignored)
    _warn_partly_tied(model, graph, groups)
    return [score_group(root, group, criterion, graph, (original or {}).get(root)) for root, group in groups]


def _warn_partly_tied(model: nn.Module, graph: tp.DependencyGraph,
                      groups: Sequence[tuple[str, tp.dependency.Group]]) -> None:
    """Warn once (as :func:`_warn_kept`) for each conv some of whose filters no prunable group holds: torch-pruning tied
    only some of its channels to another conv's group, so the rest are never removed, and nothing said so. CBAM's
    spatial attention, ``x * torch.sigmoid(sa(cat([x.mean(1), x.amax(1)])))``, broadcasts ``sa``'s one channel over
    the 16 of the conv before: torch-pruning put that conv's channel 0 in ``sa``'s group (one channel, never cut)
    and its other filters in no group, so a run at 0.5 kept all 16 without a word."""
    names = {m: n for n, m in model.named_modules()}
    held: dict[nn.Conv2d, set[int]] = {}
    holders: dict[nn.Conv2d, dict[str, int]] = {}  # conv -> roots of the groups holding some of it, their widths
    for root, group in groups:
        for item in group:
            layer = item.dep.target.module
            if isinstance(layer, nn.Conv2d) and graph.is_out_channel_pruning_fn(item.dep.handler):
                held.setdefault(layer, set()).update(int(getattr(i, "idx", i)) for i in item.idxs)
                holders.setdefault(layer, {})[root] = len(group[0].idxs)
    for layer, idxs in held.items():
        name = names[layer]
        if len(idxs) >= layer.out_channels or name in _WARNED:
            continue
        _WARNED.add(name)
        others = {root: width for root, width in holders[layer].items() if root != name} or holders[layer]
        rest, groups_of = layer.out_channels - len(idxs), ", ".join(f"{root}'s" for root in others)
        if all(width == 1 for width in others.values()):  # a group keeps a channel: that one goes nowhere either
            log.warning("the filters of %s are not pruned: torch-pruning puts %d of its %d output channels in no group "
                        "and %d in %s group of one channel, which a group keeps (a 1-channel map broadcast over them, "
                        "as CBAM's x * torch.sigmoid(sa(...))); the share of filters removed counts them as kept; "
                        "pruning.keep: [%s] keeps them without this warning", name, rest, layer.out_channels,
                        len(idxs), groups_of, name)
        else:
            log.warning("%d of the %d filters of %s are not pruned: torch-pruning puts them in no group and the other "
                        "%d in %s group (a split, chunk, padding or concatenation of channels that it follows "
                        "wrongly); the share of filters removed counts them as kept; pruning.keep: [%s] keeps them all "
                        "without this warning", rest, layer.out_channels, name, len(idxs), groups_of, name)


def _keep_count(target: float, current: int, round_to: int | None, floor: int) -> int:
    """Channels a group keeps for ``target`` (its original width x (1 - ratio)): the nearest multiple of
    ``round_to`` (1 when None), a tie going to the larger width (fewer filters removed than asked, never more),
    rounded once (rounding to a whole filter first took 10.5 to 10, then 8 at ``round_to=4``, for the nearest 12);
    at most ``current``, at least ``floor``."""
    step = round_to or 1
    keep = step * math.floor(target / step + 0.5 + 1e-9)  # 1e-9: floating point may put an exact tie a hair below .5
    return max(min(keep, current), min(floor, current))


def lowest_channels(g: GroupScores, n_remove: int) -> list[int]:
    """The ``n_remove`` lowest-scored channel slots of ``g`` as root channel indices (every slice of a grouped
    conv loses the same slots). A slot that is the last one left of a part (``GroupScores.parts``) is kept and the
    next-lowest goes instead; where no other is left, fewer go."""
    if n_remove <= 0:
        return []
    left = [len(part) for part in g.parts]
    owners = {slot: [k for k, part in enumerate(g.parts) if slot in part] for part in g.parts for slot in part}
    slots: list[int] = []
    for slot in torch.argsort(g.scores, stable=True).tolist():
        if len(slots) == n_remove:
            break
        if any(left[k] == 1 for k in owners.get(slot, ())):
            continue
        for k in owners.get(slot, ()):
            left[k] -= 1
        slots.append(slot)
    width = len(g.scores)
    return sorted(slot + k * width for k in range(g.channel_groups) for slot in slots)


def removal_counts(groups: list[GroupScores], ratios: Mapping[str, float], round_to: int | None = None) -> dict[str, int]:
    """Channel slots each group loses so it keeps ``1 - ratios[root]`` of its *original* slots, its channels a
    multiple of ``round_to`` (a grouped conv's slot is a channel in each of its slices: the slot count is rounded
    so that slots x slices is); every group keeps at least ``round_to`` channels (or 1 slot)."""
    missing = sorted({g.root for g in groups} - set(ratios))
    if missing:
        raise ValueError(f"no ratio for the groups of {', '.join(missing)}")
    return {g.root: len(g.scores) - _kept_slots(g, ratios[g.root], round_to, len(g.scores)) for g in groups}


def _kept_slots(g: GroupScores, ratio: float, round_to: int | None, current: int) -> int:
    """Channel slots ``g`` keeps at ``ratio`` of its original slots, rounded as :func:`_keep_count` rounds, at most
    ``current``."""
    step = math.lcm(round_to, g.channel_groups) // g.channel_groups if round_to else None
    return _keep_count(g.slots * (1 - ratio), current, step, step or 1)


def select_channels(
    groups: list[GroupScores], ratios: Mapping[str, float], round_to: int | None = None
) -> dict[str, list[int]]:
    """Channels (root indices) to remove so each group keeps ``1 - ratios[root]`` of its *original* channels; the
    lowest-scored go. Every group keeps at least ``round_to`` (or 1). Per-group ratios come from an allocation
    (``prune/allocation/``): a single network-wide ratio is ``Uniform().ratios(groups, r)``."""
    counts = removal_counts(groups, ratios, round_to)
    plan = {g.root: lowest_channels(g, counts[g.root]) for g in groups}
    return {root: idxs for root, idxs in plan.items() if idxs}


def remove_channels(model: nn.Module, example_input: torch.Tensor, plan: dict[str, list[int]]) -> None:
    """Physically remove the planned root channels (and everything coupled to them) from ``model``."""
    if not plan:
        return
    graph = dependency_graph(model, example_input)
    for root, group in prunable_groups(model, graph, ignored=[]):
        if root in plan:
            group.prune(idxs=plan[root])


#: layers whose statistics span a group's channels: removing a channel there changes the others' normalisation
CHANNEL_NORMS = (nn.LayerNorm, nn.GroupNorm)


def normalised_roots(model: nn.Module, example_input: torch.Tensor) -> set[str]:
    """Roots of the prunable groups whose channels a LayerNorm or GroupNorm normalises together (ConvNeXt's
    channels-last LayerNorm): removing one of them changes the others' mean and variance, so it cannot give the
    outputs of :func:`zero_channels` however right torch-pruning's mapping is."""
    graph = dependency_graph(model, example_input)
    return {root for root, group in prunable_groups(model, graph, ignored=[])
            if any(isinstance(item.dep.target.module, CHANNEL_NORMS) for item in group)}


def zero_channels(model: nn.Module, example_input: torch.Tensor, plan: dict[str, list[int]]) -> None:
    """Zero the weights through which every layer that reads the planned root channels sees them (the input
    channels :func:`remove_channels` would remove from each Conv2d/ConvTranspose2d/Linear of the group), leaving
    shapes alone.

    Removing channels that no layer reads changes nothing, so a correct removal must give the outputs of this
    zeroed copy; a difference means torch-pruning mapped a group's channels wrongly (a channel shuffle, or a
    permute before a flatten, between producer and reader).
    """
    graph = dependency_graph(model, example_input)
    for root, group in prunable_groups(model, graph, ignored=[]):
        if root not in plan:
            continue
        for item in graph.get_pruning_group(group[0].dep.target.module, group[0].dep.handler, plan[root]):
            layer = item.dep.target.module
            if not graph.is_in_channel_pruning_fn(item.dep.handler):
                continue
            if isinstance(layer, nn.ConvTranspose2d):  # weight (in_channels, out_channels / groups, kH, kW)
                with torch.no_grad():
                    layer.weight[[int(i) for i in item.idxs]] = 0
                continue
            if not isinstance(layer, nn.Conv2d | nn.Linear):
                continue
            per_group = layer.weight.shape[1]  # input channels each filter sees (all but for grouped convs)
            filters = layer.weight.shape[0] // getattr(layer, "groups", 1)  # filters per group of a grouped conv
            with torch.no_grad():
                for idx in (int(i) for i in item.idxs):
                    g = idx // per_group
                    layer.weight[g * filters:(g + 1) * filters, idx % per_group] = 0


class PrunePlan(dict[str, list[int]]):
    """The removal plan :func:`prune_model` applied (root conv name -> removed channel indices) and
    ``filters_removed``: the share of the model's original conv filters gone, counted from the widths, earlier
    steps' included - what the ratio achieved once each layer's width was rounded to whole filters (and
    ``round_to``), with the filters no group could cut (the classifier, ``pruning.keep``, those warned of) among
    the kept, as the report counts them."""

    def __init__(self, plan: Mapping[str, list[int]], filters_removed: float) -> None:
        super().__init__(plan)
        self.filters_removed = filters_removed


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
    allocation: Allocation | None = None,
) -> PrunePlan:
    """Prune ``model`` in place until ``ratio`` of its original filters (or MACs) are gone.

    Args:
        data: training samples for data-dependent criteria (and allocations).
        original: conv name -> channels before pruning began; a ramp of calls with growing ``ratio``
            reaches ``ratio`` of these, not of the current (already pruned) widths.
        scope: without an allocation, ``layer`` is :class:`Uniform` and ``global`` the normalised
            :class:`GlobalRanking`.
        original_macs: MACs per sample before pruning began (``unit="macs"``).
        allocation: splits ``ratio`` into per-layer ratios (``prune/allocation/``); replaces ``scope``.
    Returns:
        The removal plan that was applied (root conv name -> removed channel indices; for a layer-by-layer
        criterion, indices of each group as it was when its turn came), with the share of the model's conv filters
        removed (:class:`PrunePlan`).
    """
    if not 0 < ratio < 1:  # 50 meant as percent would leave one filter a layer
        raise ValueError(f"prune_model: ratio is the fraction of filters (or MACs) to remove, strictly between 0 and "
                         f"1 (0.5 removes half), got {ratio}")
    if allocation is None:
        allocation = GlobalRanking() if scope == "global" else Uniform()
    model.eval()
    input_shape = tuple(example_input.shape[1:])
    widths = original or conv_filters(model)
    criterion.prepare(model, example_input, data)
    try:
        groups = score_groups(model, criterion, example_input, original, ignored)
    finally:
        criterion.release()

    def plan_for(r: float) -> dict[str, list[int]]:
        return select_channels(groups, allocation.ratios(groups, r), round_to)

    def oneshot_share(r: float) -> float:  # what ``r``'s ratios remove from the original widths
        ratios = allocation.ratios(groups, r)
        return filters_removed(groups, {g.root: 1 - _kept_slots(g, ratios[g.root], round_to, g.slots) / g.slots
                                        for g in groups})

    allocation.prepare(model, example_input, data)
    try:
        if unit == "filters":
            # a ramp step of a filter share (an allocation of another quantity, a latency budget, decides its own)
            continuing = original is not None and allocation.ratio_of is None
            plan = _plan_continuing(groups, plan_for, ratio, oneshot_share(ratio)) if continuing else plan_for(ratio)
        else:
            plan = _plan_for_macs(model, plan_for, ratio, example_input, original_macs, input_shape)
    finally:
        allocation.release()
    if criterion.layer_by_layer:  # counts in channel slots: a grouped conv's slot is a channel in every slice
        slices = {g.root: g.channel_groups for g in groups}
        plan = remove_layer_by_layer(model, criterion, {r: len(idxs) // slices[r] for r, idxs in plan.items()},
                                     example_input, data, ignored)
    else:
        remove_channels(model, example_input, plan)
    # from the widths, not the groups: a conv torch-pruning ties to a one-channel group (CBAM) counted as one filter
    total = sum(widths.values())
    achieved = 1 - sum(conv_filters(model).values()) / total if total else 0.0
    log.debug("pruned %d channels in %d groups: %.1f%% of the model's conv filters removed (ratio %.2f of %s)",
             sum(map(len, plan.values())), len(plan), 100 * achieved, ratio, unit)
    return PrunePlan(plan, achieved)


def remove_layer_by_layer(
    model: nn.Module,
    criterion: Criterion,
    counts: Mapping[str, int],
    example_input: torch.Tensor,
    data: ScoringData | None = None,
    ignored: list[nn.Module] | None = None,
) -> dict[str, list[int]]:
    """Remove ``counts[root]`` channel slots (a grouped conv's slot is a channel of every slice) of each group, one
    group at a time in network order: the criterion is prepared again on the network as pruned so far, scores only
    that group, its lowest channels go, and :meth:`Criterion.after_removal` may then correct what reads them
    (ThiNet's least-squares rescaling)."""
    removed: dict[str, list[int]] = {}
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    roots = sorted((root for root, _ in prunable_groups(model, dependency_graph(model, example_input), ignored)),
                   key=order.__getitem__)
    for root in roots:
        if counts.get(root, 0) <= 0:
            continue
        criterion.prepare(model, example_input, data)
        try:
            graph = dependency_graph(model, example_input)
            group = dict(prunable_groups(model, graph, ignored)).get(root)
            if group is None:  # an earlier layer's cut left a grouped conv it feeds uncuttable (warned by name)
                continue
            idxs = lowest_channels(score_group(root, group, criterion, graph), counts[root])
            group.prune(idxs=idxs)
            criterion.after_removal(model, root, idxs)
        finally:
            criterion.release()
        removed[root] = idxs
    return removed


def _removed_share(groups: list[GroupScores], plan: Mapping[str, list[int]]) -> float:
    """The share of the groups' original filters gone once ``plan`` is applied (what earlier steps removed too)."""
    total = sum(g.slots * g.filter_weight for g in groups)
    kept = sum((len(g.scores) - len(plan.get(g.root, ())) // g.channel_groups) * g.filter_weight for g in groups)
    return 1 - kept / total if total else 0.0


def _plan_continuing(groups: list[GroupScores], plan_for: Callable[[float], dict[str, list[int]]],
                     ratio: float, oneshot: float) -> dict[str, list[int]]:
    """The plan of a ramp step (``original`` given): ``ratio`` of the original filters gone in all. A group keeps
    what earlier steps removed even where this step's allocation gives it a smaller ratio, while the allocation
    hands that difference to the others (61 % removed for 0.5 under gradient_bound); so where ``ratio``'s plan
    overshoots, the largest step ratio whose plan does not is taken (bisection). ``oneshot``: the share ``ratio``'s
    plan removes from the original widths, allowed too, so a ramp ends at the widths one step would give (rounding
    to whole filters alone is no overshoot: 6/10/14 at 0.27 keep 4/7/10 either way, 30 % removed)."""
    allowed = max(ratio + _RAMP_SLACK, oneshot + 1e-9)
    plan = plan_for(ratio)
    if _removed_share(groups, plan) <= allowed:
        return plan
    lo, hi, best = 0.0, ratio, plan_for(0.0)
    for _ in range(12):
        mid = (lo + hi) / 2
        trial = plan_for(mid)
        if _removed_share(groups, trial) <= allowed:
            lo, best = mid, trial
        else:
            hi = mid
    return best


#: how far past its ratio a ramp step's plan may land (whole filters) before a smaller step ratio is searched
_RAMP_SLACK = 0.01


def _plan_for_macs(
    model: nn.Module,
    plan_for: Callable[[float], dict[str, list[int]]],
    ratio: float,
    example_input: torch.Tensor,
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
    best = None  # 0.99's plan only where no tried ratio reaches the target (an allocation may warn about 0.99)
    for _ in range(12):
        mid = (lo + hi) / 2
        plan = plan_for(mid)
        if macs_after(plan) <= target:
            hi, best = mid, plan
        else:
            lo = mid
    if best is None:
        best = plan_for(hi)
    return best
