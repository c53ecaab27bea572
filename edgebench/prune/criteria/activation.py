"""Criteria computed from feature maps on training samples: mean activation, CHIP, firing pattern."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from edgebench.prune.criteria.base import (
    CRITERIA,
    Criterion,
    Role,
    ScoringData,
    record_outputs,
    require_data,
)

_BN = nn.modules.batchnorm._BatchNorm


class _FeatureMapCriterion(Criterion):
    """Scores a channel from the feature map after ReLU: the BN output when the group has a BN, else the
    conv output (the ReLU is applied here, so the statistic is that of the activation map)."""

    needs_data = True

    def __init__(self) -> None:
        self._stats: dict[nn.Module, torch.Tensor] = {}
        self._group_has_bn = False

    def statistic(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """Per-channel statistic of one batch's post-ReLU activations (N, C, H, W)."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, data: ScoringData | None) -> None:
        data = require_data(type(self).__name__, data)
        modules = [m for m in model.modules() if isinstance(m, nn.Conv2d | _BN)]
        self._stats = record_outputs(model, data, modules, lambda m, out: self.statistic(m, torch.relu(out)))

    def release(self) -> None:
        self._stats = {}

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        # The BN output is what the ReLU sees; a conv's own output counts only in groups without a BN.
        if role == "bn" or (role == "out" and not self._group_has_bn):
            return self._stats.get(module)
        return None

    def __call__(self, group: tp.dependency.Group) -> torch.Tensor:
        self._group_has_bn = any(isinstance(item.dep.target.module, _BN) for item in group)
        return super().__call__(group)


@CRITERIA.register("mean_activation")
class MeanActivation(_FeatureMapCriterion):
    """Mean activation of each feature map after ReLU, ``s_j = mean_{n,h,w} relu(a_j[n,h,w])`` over training
    samples (Roy et al. 2020, seed 001; after Molchanov et al. 2017's activation criterion)."""

    def statistic(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        return activation.mean(dim=(0, 2, 3))
