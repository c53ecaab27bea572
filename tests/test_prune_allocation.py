"""Per-layer ratio allocation: per-layer ratios in select_channels, uniform/global allocations, and the
gradient bound recovering a layer's known redundant directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.prune import create_criterion, prune_model, select_channels
from edgebench.prune.allocation import (
    ALLOCATIONS,
    GradientBound,
    create_allocation,
    effective_rank,
    output_gradient_grams,
)
from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.structured import GroupScores

EXAMPLE = torch.ones(1, 1, 4, 4)


def _groups() -> list[GroupScores]:
    return [GroupScores("a", torch.arange(8.0), 8), GroupScores("b", torch.arange(4.0).flip(0), 4)]


def test_registry_lists_the_allocations() -> None:
    assert {"uniform", "global", "gradient_bound"} <= set(ALLOCATIONS.names())


def test_select_channels_takes_a_ratio_per_layer() -> None:
    plan = select_channels(_groups(), {"a": 0.75, "b": 0.25})
    assert plan == {"a": [0, 1, 2, 3, 4, 5], "b": [3]}  # the lowest-scored of each
    with pytest.raises(ValueError, match="no ratio for the groups of b"):
        select_channels(_groups(), {"a": 0.5})


def test_uniform_and_global_allocations() -> None:
    assert create_allocation("uniform").ratios(_groups(), 0.5) == {"a": 0.5, "b": 0.5}
    ratios = create_allocation("global").ratios(_groups(), 0.5)
    # normalised scores: a = [0..7]/3.5, b = [3..0]/1.5; the 6 highest of 12 are a's 5,6,7 (1.43..2) and b's 3, 2
    # (2, 1.33), then a's 4 (1.14) -> a keeps 4 of 8, b keeps 2 of 4
    assert ratios == {"a": 0.5, "b": 0.5}
    assert select_channels(_groups(), ratios) == select_channels(_groups(), 0.5, scope="global")


def _data(n: int = 64) -> ScoringData:
    g = torch.Generator().manual_seed(1)
    return ScoringData(torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g), 32)


def _redundant_net() -> tuple[nn.Sequential, torch.Tensor]:
    """conv0 (6 channels) feeds conv1 linearly; conv1 reads only 2 directions of conv0's output (its weight has
    rank 2), so the loss gradient w.r.t. conv0's output lies in that 2-dimensional row space."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 1), nn.Conv2d(6, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)
    ).eval()
    directions = torch.linalg.qr(torch.randn(6, 2, generator=g))[0].T  # 2 orthonormal directions in R^6
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(6, 1, 1, 1, generator=g))
        net[1].weight.copy_((torch.randn(3, 2, generator=g) @ directions).view(3, 6, 1, 1))
    return net, directions


def test_gradient_bound_recovers_known_redundant_directions() -> None:
    net, directions = _redundant_net()
    gram = output_gradient_grams(net, _data(), {"0": net[0]})["0"]
    assert effective_rank(gram, 0.999999) == 2
    eigvals, eigvecs = torch.linalg.eigh(gram)
    signal = eigvecs[:, -2:].T.float()  # the two directions the gradients span ...
    torch.testing.assert_close(signal @ signal.T, torch.eye(2), atol=1e-5, rtol=0)
    projector = directions.T @ directions  # ... are exactly conv1's two read directions
    torch.testing.assert_close(projector @ signal.T, signal.T, atol=1e-4, rtol=0)
    assert float(eigvals[:4].abs().max()) < 1e-9 * float(eigvals[-1])

    bound = GradientBound(eps=1e-6)
    bound.prepare(net, EXAMPLE, _data())
    assert bound.layer_bounds(["0"]) == {"0": pytest.approx(1 - 2 / 6)}


def test_gradient_bound_composes_with_a_criterion() -> None:
    """Pruning only conv0 at the ratio its bound allows keeps exactly the 2 channels the loss can distinguish."""
    net, _ = _redundant_net()
    prune_model(net, create_criterion("l1"), 4 / 6, EXAMPLE, data=_data(),
                ignored=[net[1], net[4]], allocation=GradientBound(eps=1e-6))
    assert net[0].out_channels == 2 and net[1].in_channels == 2


def test_gradient_bound_splits_the_ratio_in_proportion_to_the_bounds() -> None:
    alloc = GradientBound()
    alloc.bounds = {"a": 0.5, "b": 0.25}  # as if measured: layer a is twice as redundant as b
    ratios = alloc.ratios(_groups(), 0.25)
    # 8 t 0.5 + 4 t 0.25 = 0.25 * 12 -> t = 0.6
    assert ratios == {"a": pytest.approx(0.3), "b": pytest.approx(0.15)}
    beyond = alloc.ratios(_groups(), 0.6)  # more than the total bound (5/12): cut beyond, capped at 1 - 1/n
    assert sum(beyond[g.root] * g.original for g in _groups()) == pytest.approx(0.6 * 12)
    assert beyond["a"] <= 7 / 8 and beyond["a"] > 0.5
