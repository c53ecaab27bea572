"""The criterion interface: torch-pruning's ``Importance`` plus a data-preparation step.

A criterion scores the channels of a dependency *group* (all layers that must lose the same
channels together: a conv, its BN, the next layer's inputs, residual partners, a depthwise conv).
Subclasses say how to score one module's channels (:meth:`Criterion.module_scores`); the base class maps
those onto the group's root channels and averages over the group's layers, so every criterion works
through residual adds, concatenation, flatten and depthwise convolutions without special cases.
Higher score = more important = kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch_pruning as tp
from torch import nn

from edgebench.registry import Registry

if TYPE_CHECKING:
    from edgebench.train import TrainHook

Role = Literal["out", "in", "bn"]


@dataclass
class ScoringData:
    """Training samples a data-dependent criterion may look at (never the test split), and the validation split
    when the schedule passes it (Li et al.'s sensitivity analysis reads accuracy there)."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int = 128
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches in a fixed order."""
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]


def item_role(layer: nn.Module, handler: Callable) -> Role | None:
    """How a group item touches ``layer``: its output channels, its input channels, or BN channels."""
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(layer, nn.Conv2d | nn.Linear):
        return "out" if getattr(handler, "__name__", "") == "prune_out_channels" else "in"
    return None


class Criterion(tp.importance.Importance):
    """Base criterion. Override :meth:`module_scores`; data-dependent ones also :meth:`prepare`."""

    #: True when :meth:`prepare` needs ``ScoringData``
    needs_data: bool = False
    #: the per-layer allocation the criterion's paper uses, picked by ``allocation: paper`` (the default)
    paper_allocation: ClassVar[str] = "uniform"
    #: bumped when what the criterion computes changes, so variants built with the old definition get new ids
    #: (their cached models and artifacts are not reused); 0 leaves earlier ids as they were
    revision: ClassVar[int] = 0
    #: True when the criterion prunes one group at a time, re-scored on the network as pruned so far (ThiNet)
    layer_by_layer: ClassVar[bool] = False
    #: set when the criterion is edgebench's construction from a paper's abstract (or extends the paper): what is
    #: ours, shown beside its name in the report
    reading: ClassVar[str | None] = None

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        """Collect what the scores need (activations, gradients...) from ``model`` on ``data``.

        ``example_input`` is one input of the right shape (for data-free probes).
        """

    def release(self) -> None:
        """Drop collected statistics (they reference modules about to be pruned)."""

    def training_hook(self) -> TrainHook | None:
        """A hook the criterion needs during training (e.g. Network Slimming's L1 on BN scales)."""
        return None

    def after_removal(self, model: nn.Module, root: str, removed: list[int]) -> None:
        """Layer-by-layer criteria only: called (still prepared) right after ``removed`` channels of the group
        ``root`` were physically removed, to correct what reads them (ThiNet rescales the next layer)."""

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        """Scores of all channels of ``module`` along the dimension ``role`` names, or None to abstain."""
        raise NotImplementedError

    def layer_scores(self, group: tp.dependency.Group) -> list[torch.Tensor]:
        """Each scoring layer's channel scores mapped onto the group's root channels (a flatten's several features
        of one channel averaged)."""
        n_root = len(group[0].idxs)
        mapped = []
        for item in group:
            layer = item.dep.target.module
            role = item_role(layer, item.dep.handler)
            if role is None:
                continue
            scores = self.module_scores(layer, role)
            if scores is None:
                continue
            idxs = torch.as_tensor([int(getattr(i, "idx", i)) for i in item.idxs], dtype=torch.long)
            root = torch.as_tensor(
                item.root_idxs if item.root_idxs is not None else range(n_root), dtype=torch.long
            )
            local = self._checked(scores, layer, role, idxs)[idxs]
            acc = torch.zeros(n_root, dtype=torch.float64).index_add_(0, root, local)
            count = torch.zeros(n_root, dtype=torch.float64).index_add_(0, root, torch.ones_like(local))
            mapped.append(acc / count.clamp(min=1))
        return mapped

    def _checked(self, scores: torch.Tensor, layer: nn.Module, role: Role, idxs: torch.Tensor) -> torch.Tensor:
        """``scores`` flattened, or CriterionError where they cannot rank the channels ``idxs``: too few would fail
        deep in the mapping, and a NaN would rank channels arbitrarily with no error."""
        flat = torch.as_tensor(scores).detach().double().flatten()
        name, channels = type(self).__name__, layer_channels(layer, role)
        too_few = bool(len(idxs)) and flat.numel() <= int(idxs.max())
        # too many (a score per weight row, (C, k) flattened) would rank channels by the first rows' values
        if too_few or (channels is not None and flat.numel() != channels):
            where = (f"the {role} channels of {type(layer).__name__} (weight "
                     f"{tuple(getattr(layer, 'weight', torch.empty(0)).shape)}), which has {channels}")
            if flat.numel() == channels:  # the scores fit the layer: torch-pruning's map does not
                raise CriterionError(f"torch-pruning mapped channel {int(idxs.max())} of {where}: an operation between "
                                     "convs (a split or chunk of channels) that it follows wrongly; keep the conv "
                                     "before it (pruning.keep)")
            raise CriterionError(f"criterion {name} gave {flat.numel()} scores for {where}: module_scores must give "
                                 "one score per channel")
        if not torch.isfinite(flat[idxs]).all():
            bad = int((~torch.isfinite(flat[idxs])).sum())
            raise CriterionError(f"criterion {name} gave {bad} non-finite (NaN or infinite) scores of {len(idxs)} "
                                 f"for the {role} channels of {type(layer).__name__}; scores must be finite numbers")
        return flat

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        """Per-root-channel importance: mean over the group's scoring layers of their channel scores (edgebench's
        reading where a paper scores one layer: a residual group's L1 norm is its convs' mean; criteria whose paper
        sums over the structure, the Taylor ones and SOSP-H, override this); None when no layer of the group has
        what the criterion needs (e.g. a BN criterion on a conv without BN)."""
        mapped = self.layer_scores(group)
        if not mapped:
            return None
        return (torch.stack(mapped).sum(0) / len(mapped)).float()


class CriterionError(ValueError):
    """A criterion's scores cannot rank the channels (wrong count, not finite)."""


def layer_channels(layer: nn.Module, role: Role) -> int | None:
    """How many channels ``layer`` has along ``role`` (None where the layer does not say)."""
    if role == "bn":
        return getattr(layer, "num_features", None)
    if isinstance(layer, nn.Linear):
        return layer.out_features if role == "out" else layer.in_features
    return getattr(layer, "out_channels" if role == "out" else "in_channels", None)


class PreparedScores(Criterion):
    """A criterion that computes every module's channel scores in :meth:`prepare` and reads them back.

    Subclasses fill ``self._scores`` (module -> scores along ``roles``) in ``prepare``; they are dropped on
    :meth:`release` because they reference modules about to be pruned.
    """

    #: the dimension(s) the stored scores run along
    roles: tuple[Role, ...] = ("out",)

    def __init__(self) -> None:
        self._scores: dict[nn.Module, torch.Tensor] = {}

    def release(self) -> None:
        self._scores = {}

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        return self._scores.get(module) if role in self.roles else None


class ResponseScores(PreparedScores):
    """Scores of a channel's response, the map the next layer reads: kept for every conv and BN, a group with a BN
    takes the BN's (it rescales the conv's output before anything reads it), one without takes the conv's."""

    def __init__(self) -> None:
        super().__init__()
        self._group_has_bn = False

    def module_scores(self, module: nn.Module, role: Role) -> torch.Tensor | None:
        if role == "bn" or (role == "out" and not self._group_has_bn):
            return self._scores.get(module)
        return None

    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        self._group_has_bn = any(isinstance(item.dep.target.module, nn.modules.batchnorm._BatchNorm) for item in group)
        return super().__call__(group)


CRITERIA: Registry[type[Criterion]] = Registry("criterion", group="edgebench.criteria", base=Criterion)

#: criterion names that no longer exist, with what replaced them (a load-time error says so)
RETIRED_CRITERIA = {
    "taylor": "was split into the methods the papers define: taylor_weight (Molchanov et al. 2019, (g w)^2 per "
              "weight summed per filter), taylor_bn (their recommended BN-gate form) and taylor_activation "
              "(Molchanov et al. 2017); name one of them",
}


def create_criterion(name: str, **kwargs: object) -> Criterion:
    """Instantiate the registered criterion ``name`` with its keyword options."""
    return CRITERIA.get(name)(**kwargs)


def run_hooked(
    model: nn.Module,
    data: ScoringData,
    modules: list[nn.Module],
    hook: Callable[[nn.Module, torch.Tensor], None],
    on_input: bool = False,
) -> None:
    """Run ``data`` through ``model`` (eval mode, no grad) calling ``hook(module, tensor)`` with each listed
    module's output (or its input when ``on_input``)."""

    def on_output(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        hook(module, output.detach())

    def on_inputs(module: nn.Module, inputs: tuple) -> None:
        hook(module, inputs[0].detach())

    handles = [
        m.register_forward_pre_hook(on_inputs) if on_input else m.register_forward_hook(on_output) for m in modules
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in data.batches():
                model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def record_outputs(
    model: nn.Module,
    data: ScoringData,
    modules: list[nn.Module],
    fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    on_input: bool = False,
    used: Callable[[torch.Tensor], int] = len,
) -> dict[nn.Module, torch.Tensor]:
    """Mean over the samples of ``fn(module, output)`` (or of its input when ``on_input``) per listed module:
    ``fn`` gives one batch's mean over ``used(tensor)`` of its samples (default: all), weighted here by that count,
    so a short last batch counts as its samples."""
    sums: dict[nn.Module, torch.Tensor] = {}
    samples: dict[nn.Module, int] = {}

    def hook(module: nn.Module, tensor: torch.Tensor) -> None:
        value = fn(module, tensor)
        if value is not None:
            count = used(tensor)
            value = value.double() * count
            sums[module] = sums[module] + value if module in sums else value
            samples[module] = samples.get(module, 0) + count

    run_hooked(model, data, modules, hook, on_input)
    return {m: s / samples[m] for m, s in sums.items()}


def require_data(name: str, data: ScoringData | None) -> ScoringData:
    """Return ``data`` or raise: the criterion cannot score without samples."""
    if data is None or len(data.x) == 0:
        raise ValueError(f"criterion '{name}' needs training samples to score channels")
    return data
