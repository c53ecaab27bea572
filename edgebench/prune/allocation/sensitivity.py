"""The ``sensitivity`` allocation of Li, Kadav, Durdanovic, Samet and Graf, "Pruning Filters for Efficient
ConvNets" (ICLR 2017), sections 3.2-3.3 and 4.

The paper prunes each layer *alone* at increasing ratios, without retraining, and reads the validation accuracy
of every pruned copy: the layer's sensitivity curve. Layers whose accuracy holds are pruned hard, sensitive layers
little or not at all ("we skip those sensitive layers"); the paper then picks the per-layer ratios by hand from the
curves. edgebench needs a rule that reaches a requested overall ratio without a human, so it takes one accuracy
tolerance ``t`` for every layer - each layer is pruned as far as its curve stays within ``t`` of the unpruned
accuracy - and solves for the ``t`` at which the whole network loses ``ratio`` of its filters. That rule is
edgebench's reading of the paper's manual choice; the curves themselves are the paper's.

Details: the curve of group ``l`` is measured at ``grid`` ratios (the paper plots 10 % steps), with the channels the
criterion scores lowest removed (Li et al. rank by filter L1 norm, the ``l1`` criterion, whose paper allocation this
is); the accuracy drop is made non-decreasing in the ratio and interpolated linearly between grid points; a layer's
ratio never passes the last grid ratio nor ``1 - 1/n``. Accuracy is read on the validation split when the schedule
passes it (``ScoringData.x_val``), else on the scoring sample.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Sequence

import torch
from torch import nn

from edgebench.prune.allocation.base import ALLOCATIONS, Allocation, AllocationRecord, filters_removed
from edgebench.prune.criteria.base import ScoringData, require_data
from edgebench.prune.groups import GroupScores
from edgebench.prune.structured import remove_channels, select_channels
from edgebench.train import evaluate

log = logging.getLogger(__name__)

#: the ratios each layer's curve is measured at (Li et al.'s figures step by 10 % of the filters)
DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def ratio_within(curve: Sequence[tuple[float, float]], tolerance: float) -> float:
    """The largest ratio whose accuracy drop stays within ``tolerance`` on a non-decreasing, piecewise-linear
    ``curve`` of (ratio, drop) points starting at (0, 0)."""
    best = 0.0
    for (r0, d0), (r1, d1) in itertools.pairwise(curve):
        if d1 <= tolerance:
            best = r1
        elif d0 <= tolerance:
            return r0 + (r1 - r0) * (tolerance - d0) / (d1 - d0)
        else:
            break
    return best


class SensitivityRecord(AllocationRecord):
    """The curves and the tolerance of the last pruning step."""

    curves: dict[str, list[tuple[float, float]]]
    tolerance: float
    ratios: dict[str, float]


@ALLOCATIONS.register("sensitivity")
class Sensitivity(Allocation):
    """Per-layer ratios from each layer's pruning sensitivity (Li et al. 2017; see the module docstring).

    Args:
        grid: ratios each layer's sensitivity curve is measured at, increasing, in (0, 1).
    """

    needs_data = True
    record_type = SensitivityRecord
    reading = "Li et al. 2017's curves; one tolerance for all layers is edgebench's reading of their manual choice"

    def __init__(self, grid: Sequence[float] = DEFAULT_GRID) -> None:
        grid = tuple(float(r) for r in grid)
        if not grid or any(not 0 < r < 1 for r in grid) or list(grid) != sorted(set(grid)):
            raise ValueError(f"sensitivity: grid must be increasing ratios strictly between 0 and 1, got {list(grid)}")
        self.grid = grid
        self.curves: dict[str, list[tuple[float, float]]] = {}
        self._model: nn.Module | None = None
        self._example: torch.Tensor | None = None
        self._data: ScoringData | None = None
        self._record: SensitivityRecord | None = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        self._model, self._example, self._data = model, example_input[:1], require_data("sensitivity", data)
        self.curves = {}  # the network changed since the last step

    def release(self) -> None:
        self._model, self._example, self._data = None, None, None

    def record(self) -> SensitivityRecord | None:
        return self._record

    def layer_curves(self, groups: Sequence[GroupScores]) -> dict[str, list[tuple[float, float]]]:
        """Per group, (ratio, accuracy drop) with only that group pruned to each grid ratio: (0, 0) first, the drop
        made non-decreasing."""
        if self._model is None or self._example is None or self._data is None:
            raise RuntimeError("sensitivity: prepare() must run before the ratios are asked for")
        data = self._data
        x, y = (data.x_val, data.y_val) if data.x_val is not None and data.y_val is not None else (data.x, data.y)
        unpruned = evaluate(self._model, x, y)
        curves = {}
        for g in groups:
            curve, worst = [(0.0, 0.0)], 0.0
            for r in self.grid:
                trial = copy.deepcopy(self._model)
                remove_channels(trial, self._example, select_channels([g], {g.root: min(r, 1 - 1 / g.slots)}))
                worst = max(worst, unpruned - evaluate(trial, x, y))
                curve.append((r, worst))
            curves[g.root] = curve
        return curves

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        if set(self.curves) != {g.root for g in groups}:
            self.curves = self.layer_curves(groups)
        caps = {g.root: 1 - 1 / g.slots for g in groups}

        def at(tolerance: float) -> dict[str, float]:
            return {g.root: min(ratio_within(self.curves[g.root], tolerance), caps[g.root]) for g in groups}

        # below every drop (they start at 0), so at(lo) removes nothing: layers whose curves are flat at zero drop
        # share the ratio like any other jump, rather than all going to their ends at tolerance 0 (a model whose
        # accuracy no removal changes had every layer cut ~90 % for any ratio)
        lo, hi = -1.0, max(d for c in self.curves.values() for _, d in c) + 1e-9
        if filters_removed(groups, at(hi)) < ratio:
            log.warning("sensitivity: ratio %.2f exceeds what the measured curves allow (%.2f); every layer is cut "
                        "uniformly instead", ratio, filters_removed(groups, at(hi)))
            chosen, tolerance = {g.root: min(ratio, caps[g.root]) for g in groups}, hi
        else:
            for _ in range(50):  # smallest tolerance that removes at least `ratio`
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if filters_removed(groups, at(mid)) < ratio else (lo, mid)
            below, above = at(lo), at(hi)
            removed_below, removed_above = filters_removed(groups, below), filters_removed(groups, above)
            # layers whose curve is flat at the tolerance jump together: give each the same share of the jump
            share = 0.0 if removed_above <= removed_below else (ratio - removed_below) / (removed_above - removed_below)
            chosen = {r: below[r] + share * (above[r] - below[r]) for r in below}
            tolerance = hi
        self._record = SensitivityRecord(allocation="sensitivity", curves=self.curves, tolerance=tolerance,
                                         ratios=chosen)
        return chosen
