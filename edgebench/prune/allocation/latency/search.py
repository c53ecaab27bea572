"""Latency-aware per-layer allocation (NetAdapt-style): how many filters each prunable group keeps so
the model meets a latency budget on a target while removing the fewest MACs.

1. :func:`model_layers` reads every conv/linear layer's shape and which prunable group (a root conv and
   everything coupled to it: BN, the next layer's inputs, residual partners) sets its output and input
   channels.
2. The target's latency model (:class:`~edgebench.prune.allocation.latency.predict.TargetLatencyModel`: per-layer
   tables measured on the target, calibrated on one measurement of the whole model) estimates the model's p50 at
   any channel counts.
3. :func:`allocate_for_latency` removes channels greedily, one runtime-friendly step (the channel
   multiple the table shows the runtime rewards) at a time, always from the group that saves the most
   estimated latency per MAC removed, until the estimate meets the budget. A ``measure`` callback
   (the real model on the target) corrects the estimate and the search re-runs, as NetAdapt does.

Which filters go inside each group is the criterion's business (:func:`prune_to_keep`), so the
allocation composes with every criterion and schedule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from edgebench.prune.allocation.latency.table import LayerShape
from edgebench.prune.criteria import Criterion, ScoringData
from edgebench.prune.structured import (
    channel_slices,
    dependency_graph,
    prunable_groups,
    remove_channels,
    score_groups,
    select_channels,
)

log = logging.getLogger(__name__)


@dataclass
class ModelLayer:
    """A conv/linear layer, the groups that set its channels, and its shape at full width."""

    name: str
    shape: LayerShape
    out_group: str | None  # root of the group pruning its output channels (None: fixed, e.g. the classifier)
    in_group: str | None  # root of the group pruning its input channels (None: the image, fixed)
    in_per_channel: int = 1  # a linear after flatten: input features per channel of the group
    out_slices: int = 1  # the out group's widths are multiples of this: a grouped conv's groups, a GroupNorm's


@dataclass
class WidthChoice:
    """Channels kept per group, with the estimate it was chosen on."""

    keep: dict[str, int]
    original: dict[str, int]
    estimated_ms: float
    macs: int
    rounds: list[dict[str, float]] = field(default_factory=list)  # per measure round: estimate, measured, budget


def layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, LayerShape]:
    """Every conv/linear layer of ``model`` by name, with its shape on ``example``'s first sample."""
    shapes: dict[str, LayerShape] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            shapes[names[module]] = LayerShape("Conv", module.in_channels, module.out_channels, module.kernel_size,
                                               module.stride, module.padding, tuple(inputs[0].shape[2:]),
                                               module.groups)
        elif isinstance(module, nn.Linear):
            shapes[names[module]] = LayerShape("Gemm", module.in_features, module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in handles:
            h.remove()
    return shapes


def model_layers(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module] | None = None) -> list[ModelLayer]:
    """Every conv/linear layer of ``model`` with its shape and coupling to the prunable groups."""
    shapes = layer_shapes(model, example)
    names = {m: n for n, m in model.named_modules()}
    graph = dependency_graph(model, example)
    out_group: dict[str, str] = {}
    in_group: dict[str, tuple[str, int]] = {}
    slices: dict[str, int] = {}
    for root, group in prunable_groups(model, graph, ignored):
        width = len(group[0].idxs)
        slices[root] = channel_slices(group)
        for item in group:
            module = item.dep.target.module
            name = names.get(module)
            if name not in shapes:
                continue
            if graph.is_out_channel_pruning_fn(item.dep.handler):
                out_group[name] = root
            else:
                in_group[name] = (root, max(1, shapes[name].c_in // width))
    return [ModelLayer(name, shape, out_group.get(name), in_group.get(name, (None, 1))[0],
                       in_group.get(name, (None, 1))[1], slices.get(out_group.get(name, ""), 1))
            for name, shape in shapes.items()]


def original_widths(layers: list[ModelLayer]) -> dict[str, int]:
    """Group root -> its channels at full width."""
    return {layer.out_group: layer.shape.c_out for layer in layers if layer.out_group is not None}


def width_units(layers: list[ModelLayer]) -> dict[str, int]:
    """Group root -> the multiple its widths must keep (a grouped conv's groups each lose as many channels)."""
    return {layer.out_group: layer.out_slices for layer in layers if layer.out_group is not None}


def layer_shape(layer: ModelLayer, keep: dict[str, int]) -> LayerShape:
    """``layer``'s shape when each group keeps ``keep[group]`` channels."""
    c_out = keep[layer.out_group] if layer.out_group else layer.shape.c_out
    c_in = keep[layer.in_group] * layer.in_per_channel if layer.in_group else layer.shape.c_in
    return layer.shape.with_channels(c_in, c_out)


#: a model's p50 from its conv/linear layers' shapes: a latency model calibrated on the unpruned model
#: (``TargetLatencyModel.estimator``)
Estimator = Callable[[list[LayerShape]], float]


def estimate_ms(layers: list[ModelLayer], keep: dict[str, int], estimate: Estimator) -> float:
    """The estimated p50 of the model whose groups keep ``keep[group]`` channels."""
    return estimate([layer_shape(layer, keep) for layer in layers])


def macs_at(layers: list[ModelLayer], keep: dict[str, int]) -> int:
    """Conv/linear MACs per sample when each group keeps ``keep[group]`` channels."""
    return sum(layer_shape(layer, keep).macs for layer in layers)


def _next_width_down(width: int, step: int, unit: int = 1) -> int:
    """The next narrower width: the largest multiple of ``step`` (and of ``unit``, the multiple a grouped conv's
    groups need) below ``width``; a group already at or below the step halves it down to ``unit`` (a 16-channel
    layer can still go to 8), since the runtime's blocking cannot be kept there anyway."""
    step = math.lcm(step, unit)
    while step > unit and width <= step and (step // 2) % unit == 0:
        step //= 2
    return (width - 1) // step * step


def _next_width_up(width: int, step: int, unit: int = 1) -> int:
    """The next wider width, the inverse of :func:`_next_width_down` (8 channels at a step of 16 go back to 16)."""
    step = math.lcm(step, unit)
    while step > unit and width < step and (step // 2) % unit == 0:
        step //= 2
    return (width // step + 1) * step


def _greedy(layers: list[ModelLayer], original: dict[str, int], estimate: Estimator, budget_ms: float, step: int,
            floor: int) -> dict[str, int]:
    """Narrow one group a step at a time, the step that saves the most estimated time per MAC lost first. When no
    step saves time by the estimate (a tiny model's entries lie within the runtime's noise of each other), the step
    that removes the most MACs is taken, so the search still moves toward the budget and the measured rounds
    judge where it lands."""
    keep, units = dict(original), width_units(layers)
    current = estimate_ms(layers, keep, estimate)
    while current > budget_ms:
        best: tuple[float, str, float] | None = None
        most_macs: tuple[int, str, int] | None = None
        base_macs = macs_at(layers, keep)
        for group in keep:
            target = _next_width_down(keep[group], step, units[group])
            if target < floor:
                continue
            trial = {**keep, group: target}
            saved_ms = current - estimate_ms(layers, trial, estimate)
            lost_macs = base_macs - macs_at(layers, trial)
            score = saved_ms / max(lost_macs, 1)
            if saved_ms > 0 and (best is None or score > best[0]):
                best = (score, group, target)
            if most_macs is None or lost_macs > most_macs[0]:
                most_macs = (lost_macs, group, target)
        chosen = best or most_macs
        if chosen is None:
            log.warning("latency budget %.3f ms not reachable by pruning (estimate %.3f ms)", budget_ms, current)
            break
        keep[chosen[1]] = int(chosen[2])
        current = estimate_ms(layers, keep, estimate)
    return _widen_within(layers, original, keep, estimate, budget_ms, step) if current <= budget_ms else keep


def _widen_within(layers: list[ModelLayer], original: dict[str, int], keep: dict[str, int], estimate: Estimator,
                  budget_ms: float, step: int) -> dict[str, int]:
    """Give back channels while the estimate stays within the budget, the step that adds the most MACs per ms
    first: the narrowing's last step may take a whole block of channels past the budget (ResNet-56 at CIFAR shape
    on ONNX Runtime, 16-channel steps: an estimate of 0.862 ms for a 0.949 ms budget, in one run)."""
    current, units = estimate_ms(layers, keep, estimate), width_units(layers)
    while True:
        best: tuple[float, str, int, float] | None = None
        base_macs = macs_at(layers, keep)
        for group, width in keep.items():
            if width >= original[group]:
                continue
            trial = {**keep, group: min(_next_width_up(width, step, units[group]), original[group])}
            trial_ms = estimate_ms(layers, trial, estimate)
            if trial_ms > budget_ms:
                continue
            score = (macs_at(layers, trial) - base_macs) / max(trial_ms - current, 1e-12)
            if best is None or score > best[0]:
                best = (score, group, trial[group], trial_ms)
        if best is None:
            return keep
        keep, current = {**keep, best[1]: best[2]}, best[3]


def allocate_for_latency(
    layers: list[ModelLayer],
    estimate: Estimator,
    budget_ms: float,
    *,
    step: int = 1,
    floor: int = 1,
    measure: Callable[[dict[str, int]], float] | None = None,
    rounds: int = 3,
) -> WidthChoice:
    """Channels each group keeps so the model's latency meets ``budget_ms`` with the most MACs kept.

    Args:
        estimate: the model's p50 from its layers' shapes, calibrated on the unpruned model measured now (on a
            shared machine a p50 from minutes ago may have run under another load).
        step: channel multiple to keep (see :func:`edgebench.prune.allocation.latency.table.channel_multiple`); groups at or
            below it step down by halves of it.
        floor: fewest channels a group keeps.
        measure: measured latency of the model pruned to a ``keep``. When given, the estimate's aim is
            corrected by measured/estimated, kept between aims already seen to meet and to miss the budget,
            and the search re-run (up to ``rounds`` measurements) while the measurement misses the budget or
            undershoots it by more than 10 %; the feasible answer that keeps the most MACs is returned.
    """
    original = original_widths(layers)
    aim = budget_ms
    history: list[dict[str, float]] = []
    keep = _greedy(layers, original, estimate, aim, step, floor)
    best: dict[str, int] | None = None
    feasible_aim, infeasible_aim = 0.0, float("inf")  # aims known to meet / miss the budget when measured
    for _ in range(rounds if measure else 0):
        estimated = estimate_ms(layers, keep, estimate)
        measured = measure(keep)  # type: ignore[misc]
        history.append({"aim_ms": aim, "estimated_ms": estimated, "measured_ms": measured})
        if measured <= budget_ms:
            feasible_aim = max(feasible_aim, aim)
            if best is None or macs_at(layers, keep) > macs_at(layers, best):
                best = keep
            if measured >= 0.9 * budget_ms:
                break
        else:
            infeasible_aim = min(infeasible_aim, aim)
        # the estimate misjudges this model by measured/estimated: aim the estimate that much lower (or higher),
        # inside the bracket of aims already measured (bisect when the correction would leave it)
        aim = budget_ms * estimated / measured
        if not feasible_aim < aim < infeasible_aim:
            aim = (feasible_aim + infeasible_aim) / 2 if infeasible_aim < float("inf") else 2 * feasible_aim
        keep = _greedy(layers, original, estimate, aim, step, floor)
    keep = best if best is not None else keep
    return WidthChoice(keep, original, estimate_ms(layers, keep, estimate), macs_at(layers, keep), history)


def prune_to_keep(model: nn.Module, criterion: Criterion, keep: dict[str, int], example: torch.Tensor,
                  data: ScoringData | None = None) -> dict[str, list[int]]:
    """Physically prune ``model`` so each group keeps ``keep[root]`` channels; the criterion picks which go."""
    criterion.prepare(model, example, data)
    try:
        groups = score_groups(model, criterion, example)
    finally:
        criterion.release()
    plan = select_channels(groups, {g.root: 1 - keep.get(g.root, g.original) / g.original for g in groups})
    remove_channels(model, example, plan)
    return plan
