"""Per-layer ratio allocation: per-layer ratios in select_channels, uniform/global allocations, and the
gradient bound recovering a layer's known redundant directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebench.prune import create_criterion, prune_model, select_channels
from edgebench.prune.allocation import ALLOCATIONS, create_allocation
from edgebench.prune.allocation.gradient_bound import GradientBound, effective_rank, output_gradient_grams
from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.groups import GroupScores

EXAMPLE = torch.ones(1, 1, 4, 4)


def _groups() -> list[GroupScores]:
    return [GroupScores("a", torch.arange(8.0), 8), GroupScores("b", torch.arange(4.0).flip(0), 4)]


def test_registry_lists_the_allocations() -> None:
    assert set(ALLOCATIONS.names()) == {"uniform", "global", "global_raw", "gradient_bound", "sensitivity", "latency"}


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


@pytest.mark.parametrize(("ratio", "spread"), [(0.5, 1 / 8), (0.7, 1 / 2)])
def test_gradient_bound_takes_what_the_bounds_cannot_give_from_every_layer_with_filters(ratio: float,
                                                                                       spread: float) -> None:
    """Widths 6/10/14, bounds 0/0/0.29 (t10_gb_oneshot's): past t's reach c3 is down to one filter (13 of 30 gone,
    43 %) and c1, c2 lost nothing, so 0.5 and 0.7 both removed 43 %. The remainder comes from c1 and c2 alike:
    0.5 asks 15 filters, 13 + 16 s = 15 -> s = 1/8; 0.7 asks 21, 13 + 16 s = 21 -> s = 1/2."""
    groups = [GroupScores(r, torch.arange(float(n)), n) for r, n in (("c1", 6), ("c2", 10), ("c3", 14))]
    alloc = GradientBound()
    alloc.bounds = {"c1": 0.0, "c2": 0.0, "c3": 0.2857}
    assert alloc.ratios(groups, ratio) == {"c1": pytest.approx(spread), "c2": pytest.approx(spread),
                                           "c3": pytest.approx(13 / 14)}


def test_gradient_bound_warns_the_share_reached_when_one_filter_per_layer_falls_short(
        caplog: pytest.LogCaptureFixture) -> None:
    """One filter left in each of 6/10/14 removes 27 of 30 (0.90): 0.95 cannot be met."""
    groups = [GroupScores(r, torch.arange(float(n)), n) for r, n in (("c1", 6), ("c2", 10), ("c3", 14))]
    alloc = GradientBound()
    alloc.bounds = {"c1": 0.0, "c2": 0.0, "c3": 0.2857}
    assert alloc.ratios(groups, 0.95) == {"c1": pytest.approx(5 / 6), "c2": pytest.approx(0.9),
                                          "c3": pytest.approx(13 / 14)}
    assert "0.90 of the filters are removed" in caplog.text


def _two_bn_layers(gamma1: list[float], gamma2: list[float]) -> nn.Sequential:
    """conv(1->6)-BN-ReLU-conv(6->4)-BN-ReLU-classifier with the given BN scales."""
    net = nn.Sequential(nn.Conv2d(1, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Conv2d(6, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(gamma1))
        net[4].weight.copy_(torch.tensor(gamma2))
    return net


def test_network_slimming_global_threshold_prunes_three_of_layer_one_and_none_of_layer_two() -> None:
    """Network Slimming (Liu et al. 2017): one threshold on all |gamma|. The 3 smallest of the 10 scales
    (0.05, 0.1, 0.2) are all in layer 1, so removing 30 % of the filters takes 3 from layer 1 and none from layer 2;
    a uniform allocation would take 2 and 1, the mean-normalised one a different split."""
    gamma1, gamma2 = [0.1, 0.2, 0.05, 0.9, 0.8, 0.7], [0.5, 0.6, 0.4, 0.3]
    net = _two_bn_layers(gamma1, gamma2)
    plan = prune_model(net, create_criterion("bn_scale"), 0.3, EXAMPLE, allocation=create_allocation("global_raw"))
    assert plan == {"0": [0, 1, 2]}
    assert (net[0].out_channels, net[3].out_channels) == (3, 4)
    torch.testing.assert_close(net[1].weight.detach(), torch.tensor([0.9, 0.8, 0.7]))
    assert prune_model(_two_bn_layers(gamma1, gamma2), create_criterion("bn_scale"), 0.3, EXAMPLE) == {
        "0": [0, 2], "3": [3]}  # uniform: round(6 * 0.7) = 4 and round(4 * 0.7) = 3 kept


def test_raw_global_ranking_keeps_a_safety_floor_per_layer() -> None:
    groups = [GroupScores("a", torch.tensor([1.0, 2.0, 3.0, 4.0]), 4), GroupScores("b", torch.tensor([10.0, 20.0]), 2)]
    # 50 % of 6 filters kept = 3: the raw ranking would keep b's 20, 10 and a's 4 ...
    assert create_allocation("global_raw").ratios(groups, 0.5) == {"a": 0.75, "b": 0.0}
    # ... and 84 % removed (1 kept) would empty a: the floor keeps a's best channel and b's, one filter over budget
    assert create_allocation("global_raw").ratios(groups, 0.84) == {"a": 0.75, "b": 0.5}
    with pytest.raises(ValueError, match="min_channels must be at least 1"):
        create_allocation("global_raw", min_channels=0)


def test_sensitivity_ratio_within_interpolates_the_curve() -> None:
    from edgebench.prune.allocation.sensitivity import ratio_within

    curve = [(0.0, 0.0), (0.25, 0.0), (0.5, 0.02), (0.75, 0.1)]
    assert ratio_within(curve, 0.0) == 0.25  # flat start: pruned to the end of the flat part
    assert ratio_within(curve, 0.01) == pytest.approx(0.375)  # halfway up the 0.25 -> 0.5 segment
    assert ratio_within(curve, 0.06) == pytest.approx(0.625)
    assert ratio_within(curve, 1.0) == 0.75  # never past the last measured ratio


def test_sensitivity_allocation_solves_one_tolerance_for_the_requested_ratio() -> None:
    """Li et al.'s curves, read with one tolerance for every layer. Layer a (8 filters) keeps its accuracy up to
    50 % removed and then drops 0.2 per 25 %; layer b (4 filters) drops 0.4 at 25 %. Removing 4 of 12 filters:
    a alone at 50 % removes exactly 4, at tolerance 0 - b is left whole (the paper's "skip sensitive layers")."""
    alloc = create_allocation("sensitivity", grid=[0.25, 0.5, 0.75])
    groups = _groups()
    alloc.curves = {"a": [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 0.2)],
                    "b": [(0.0, 0.0), (0.25, 0.4), (0.5, 0.6), (0.75, 0.6)]}
    assert alloc.ratios(groups, 4 / 12) == {"a": pytest.approx(0.5), "b": pytest.approx(0.0)}
    # 6 of 12: a must go to 75 % (6 filters) before b's first step pays: tolerance 0.2 -> a at 0.75, b at 0.125 would
    # remove 6.5; the solved tolerance t gives a = 0.5 + 0.25 t / 0.2 and b = 0.25 t / 0.4, 8 a + 4 b = 6
    t = 2 / (10 + 2.5)
    got = alloc.ratios(groups, 6 / 12)
    assert got == {"a": pytest.approx(0.5 + 0.25 * t / 0.2, abs=1e-6), "b": pytest.approx(0.25 * t / 0.4, abs=1e-6)}
    assert alloc.record().tolerance == pytest.approx(t, abs=1e-6)
    # 2 of 12: fewer than a's flat part removes at tolerance 0, so a goes only part of the way: 25 % of 8 filters
    assert alloc.ratios(groups, 2 / 12) == {"a": pytest.approx(0.25), "b": pytest.approx(0.0)}


def test_sensitivity_with_every_curve_flat_removes_the_ratio_not_every_layers_end() -> None:
    """A model whose accuracy no removal changes (stuck at chance, or layers that feed nothing): every layer may go
    to its last grid ratio at tolerance 0; a ratio of 0.25 cuts each layer 25 %, not 75 %."""
    alloc = create_allocation("sensitivity", grid=[0.25, 0.5, 0.75])
    alloc.curves = {"a": [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 0.0)],
                    "b": [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 0.0)]}
    assert alloc.ratios(_groups(), 0.25) == {"a": pytest.approx(0.25), "b": pytest.approx(0.25)}


def test_sensitivity_curves_measure_each_layer_alone() -> None:
    """conv0's channels 0..2 feed nothing (conv1 reads only channels 3..5), so pruning its 3 lowest-L1 channels
    (0..2 by construction) costs no accuracy, while pruning conv1 (the only path to the classifier) does."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 1), nn.ReLU(), nn.Conv2d(6, 2, 1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 4 * 4, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.1, 0.2, 0.3, 1.0, 1.0, 1.0]).view(6, 1, 1, 1))
        net[0].bias.zero_()
        net[2].weight.zero_()
        net[2].weight[:, 3:] = 1.0
        net[2].bias.zero_()
        net[5].weight.zero_()
        net[5].weight[0, : 16] = 1.0  # class 0 scores conv1's first map, class 1 nothing
        net[5].bias.copy_(torch.tensor([0.0, 8.0]))
    x = torch.rand(64, 1, 4, 4, generator=g) * 2
    y = (net(x).argmax(1)).long()  # labels the unpruned net gets right: accuracy 1
    data = ScoringData(x, y, x_val=x, y_val=y)
    crit = create_criterion("l1")
    crit.prepare(net, EXAMPLE, data)
    from edgebench.prune import score_groups

    groups = score_groups(net, crit, EXAMPLE, ignored=[net[5]])
    alloc = create_allocation("sensitivity", grid=[0.5])
    alloc.prepare(net, EXAMPLE, data)
    curves = alloc.layer_curves(groups)
    assert curves["0"] == [(0.0, 0.0), (0.5, 0.0)]
    assert curves["2"][1][1] > 0  # removing conv1's first map changes the predictions


def test_global_raw_does_not_rank_fallback_l1_norms_against_bn_scales() -> None:
    """c1 has no BatchNorm, so bn_scale cannot score it and its filters are ranked by L1 norm (1..8 by
    construction); c2's |gamma| are 0.1..0.8, c3's 1..8. Ranked on one list, c1's L1 norms beat most of c2's scales
    by their scale alone (t12: c1 kept 7 of 8, the BN layer 1). At 0.5: c1 loses half of its own filters (keeps 4);
    c2 and c3 keep 8 of their 16 by |gamma|: each reserves its best (0.8, 8), the 6 left are c3's 7..2, so c2
    keeps 1 and c3 keeps 7 - 12 of 24 filters, 50 %."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
            self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.c3, self.b3 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.b3(self.c3(torch.relu(self.b2(self.c2(torch.relu(self.c1(x))))))))
            return self.fc(x.mean((2, 3)))

    net = Net().eval()
    with torch.no_grad():
        net.c1.weight.copy_(torch.arange(1.0, 9.0).view(8, 1, 1, 1).expand(8, 1, 3, 3) / 9)  # L1 norm j + 1
        net.b2.weight.copy_(torch.arange(1.0, 9.0) / 10)
        net.b3.weight.copy_(torch.arange(1.0, 9.0))
    prune_model(net, create_criterion("bn_scale"), 0.5, torch.randn(1, 1, 8, 8),
                allocation=create_allocation("global_raw"))
    assert (net.c1.out_channels, net.c2.out_channels, net.c3.out_channels) == (4, 1, 7)
