"""Known-answer tests: each criterion ranks constructed filters as its formula says, and pruning k
filters removes exactly the k lowest-scored."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch_pruning as tp
from prune_nets import CHANNELS, bn_net, downstream_net, positive_data
from torch import nn

from edgebench.prune import CRITERIA, create_criterion, prune_model, score_groups, structured
from edgebench.prune.criteria.activation import ChannelIndependence
from edgebench.prune.criteria.base import Criterion, CriterionError, ScoringData

EXAMPLE = torch.ones(1, 1, 4, 4)


def _scores(net: nn.Module, name: str, **kwargs: object) -> torch.Tensor:
    crit = create_criterion(name, **kwargs)
    crit.prepare(net, EXAMPLE, positive_data())
    groups = {g.root: g.scores for g in score_groups(net, crit, EXAMPLE)}
    crit.release()
    return groups["0"]


def _order(scores: torch.Tensor) -> list[int]:
    return torch.argsort(scores, stable=True).tolist()


@pytest.mark.parametrize("name", ["thinet", "nisp", "firing", "sosp_h"])
def test_downstream_criteria_rank_by_next_layer_use(name: str) -> None:
    """conv1 uses channel j with weight j: ThiNet's reconstruction, NISP's |W|^T propagation, the firing
    share and the Hessian term all grow with j, and the unused channel 0 is last."""
    scores = _scores(downstream_net(), name)
    if name == "sosp_h":  # an unused channel has zero gradient and zero Hessian row
        assert float(scores[0]) == pytest.approx(0.0, abs=1e-12)
        assert (scores[1:] > 0).all()
    else:
        assert _order(scores) == list(range(CHANNELS))
    if name == "firing":  # shares of the channels sum to 1 per output unit -> sum_j s_j = outputs = 3
        assert float(scores.sum()) == pytest.approx(3.0, rel=1e-5)
        torch.testing.assert_close(scores, torch.arange(CHANNELS) / 15 * 3, rtol=1e-4, atol=1e-6)


def test_l1_ranks_by_filter_norm_and_ignores_downstream() -> None:
    net = downstream_net()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([3.0, -5.0, 0.0, 1.0, -2.0, 4.0]).view(-1, 1, 1, 1))
    scores = _scores(net, "l1")
    torch.testing.assert_close(scores, torch.tensor([3.0, 5.0, 0.0, 1.0, 2.0, 4.0]))


def test_taylor_weight_is_zero_for_zero_and_for_unused_filters() -> None:
    net = downstream_net()
    with torch.no_grad():
        net[0].weight[3] = 0.0  # zero filter: theta = 0
    scores = _scores(net, "taylor_weight")
    assert set(_order(scores)[:2]) == {0, 3}
    assert float(scores[0]) == pytest.approx(0.0, abs=1e-12) and float(scores[3]) == pytest.approx(0.0, abs=1e-12)
    assert (scores[[1, 2, 4, 5]] > 0).all()


def test_bn_scale_and_bn_stats_rank_from_bn_parameters() -> None:
    gamma, beta = [0.5, 2.0, 0.1, 1.0], [0.0, 0.0, 0.0, -3.0]
    net = bn_net(gamma, beta)
    torch.testing.assert_close(_scores(net, "bn_scale"), torch.tensor([0.5, 2.0, 0.1, 1.0]))
    stats = _scores(net, "bn_stats")
    # E[relu(N(0, s^2))] = s / sqrt(2 pi); with beta = -3 sigma the channel is almost never active
    torch.testing.assert_close(stats[:3], torch.tensor([0.5, 2.0, 0.1]) / math.sqrt(2 * math.pi))
    assert _order(stats)[0] == 3


def test_mean_activation_uses_post_relu_bn_output() -> None:
    # conv weight is random but BN scale 0 makes the BN output its shift beta: mean relu = max(beta, 0)
    net = bn_net([0.0, 0.0, 0.0, 0.0], [0.3, -1.0, 2.0, 0.1])
    torch.testing.assert_close(_scores(net, "mean_activation"), torch.tensor([0.3, 0.0, 2.0, 0.1]))


def test_mean_activation_averages_samples_not_batches() -> None:
    """Ten samples in batches of 4, 4 and 2: eight of value 1, then two of value 10. Channel 0 passes its input
    (mean relu over the samples = (8 x 1 + 2 x 10) / 10 = 2.8; the mean of the batch means would be 4), channel 1
    its negation (relu: 0), channel 2 three times it (8.4)."""
    net = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(32, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0, 3.0]).view(3, 1, 1, 1))
    x = torch.cat([torch.ones(8, 1, 4, 4), torch.full((2, 1, 4, 4), 10.0)])
    crit = create_criterion("mean_activation")
    crit.prepare(net, x[:1], ScoringData(x, torch.zeros(10, dtype=torch.long), batch_size=4))
    scores = {g.root: g.scores for g in score_groups(net, crit, x[:1])}["0"]
    torch.testing.assert_close(scores, torch.tensor([2.8, 0.0, 8.4]), rtol=1e-6, atol=1e-6)


def test_chip_averages_over_the_samples_it_scored() -> None:
    """One 1x1 conv with weights 1 and 2 on a 1x1 input x > 0: A is the column (x, 2x), ||A||_* = sqrt(5) x, and
    zeroing row 0 leaves 2x, row 1 leaves x, so s = ((sqrt(5) - 2) x, (sqrt(5) - 1) x). Inputs 1, 1, 100, 100, 10 in
    batches of 4 with 2 SVD samples per batch: CHIP scores x = 1, 1 and 10, mean 4 (weighting the first batch's mean
    by its 4 samples gave (4 x 1 + 10) / 5 = 2.8)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    x = torch.tensor([1.0, 1.0, 100.0, 100.0, 10.0]).view(5, 1, 1, 1)
    crit = create_criterion("chip", samples_per_batch=2)
    crit.prepare(net, x[:1], ScoringData(x, torch.zeros(5, dtype=torch.long), batch_size=4))
    (group,) = score_groups(net, crit, x[:1])
    expected = torch.tensor([math.sqrt(5) - 2, math.sqrt(5) - 1]) * 4
    torch.testing.assert_close(group.scores, expected, rtol=1e-5, atol=0)


def test_chip_ranks_zero_then_duplicate_then_independent() -> None:
    net = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(32, 2))
    with torch.no_grad():  # out0 = in0, out1 = in0 (duplicate), out2 = in1, out3 = 0
        net[0].weight.copy_(torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 0]]).view(4, 2, 1, 1))
    g = torch.Generator().manual_seed(0)
    data = positive_data()
    data.x = torch.rand(32, 2, 4, 4, generator=g)
    crit = create_criterion("chip")
    crit.prepare(net, data.x[:1], data)
    scores = {gr.root: gr.scores for gr in score_groups(net, crit, data.x[:1])}["0"]
    assert float(scores[3]) == pytest.approx(0.0, abs=1e-6)
    assert _order(scores)[0] == 3 and set(_order(scores)[1:3]) == {0, 1} and _order(scores)[3] == 2
    # the nuclear-norm drop of a duplicated row of A = [r, r, q] is (sqrt(2) - 1)|r| when r is orthogonal to q
    a = torch.zeros(1, 3, 2, 1)
    a[0, :2, 0, 0] = 1.0
    a[0, 2, 1, 0] = 1.0
    torch.testing.assert_close(
        ChannelIndependence().statistic(nn.Identity(), a), torch.tensor([math.sqrt(2) - 1] * 2 + [1.0]).double()
    )


def test_random_is_seeded() -> None:
    a, b, c = (_scores(downstream_net(), "random", seed=s) for s in (1, 1, 2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", CRITERIA.names())
@pytest.mark.parametrize("k", [1, 4])
def test_pruning_k_removes_exactly_the_k_lowest_scored(name: str, k: int) -> None:
    net = downstream_net()
    with torch.no_grad():  # make every criterion's scores distinct
        net[0].weight.copy_(torch.linspace(0.5, 1.5, CHANNELS).flip(0).view(-1, 1, 1, 1))
    scores = _scores(net, name)
    expected_kept = sorted(_order(scores)[k:])
    crit = create_criterion(name)
    conv1_before = net[2].weight.detach().clone()
    plan = prune_model(net, crit, k / CHANNELS, EXAMPLE, data=positive_data(), ignored=[net[2], net[5]])
    assert plan == {"0": sorted(_order(scores)[:k])}
    assert net[0].out_channels == CHANNELS - k
    # conv1's input columns that survive are exactly the kept channels, in order (ThiNet then rescales them:
    # tests/test_prune_papers.py)
    if name != "thinet":
        torch.testing.assert_close(net[2].weight, conv1_before[:, expected_kept])


class _TeamScores(Criterion):
    """A user's criterion that gets its scores wrong in the way ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def module_scores(self, module: nn.Module, role: str) -> torch.Tensor | None:
        if role != "out":
            return None
        scores = module.weight.detach().abs().flatten(1).sum(1)
        return scores[:-1] if self.mode == "short" else torch.full_like(scores, math.nan)


@pytest.mark.parametrize("mode,message", [
    # the first group scored is the last conv's (3 filters)
    ("short", r"criterion _TeamScores gave 2 scores for the out channels of Conv2d \(weight \(3, 6, 1, 1\)\), which "
              r"has 3: module_scores must give one score per channel"),
    ("nan", r"criterion _TeamScores gave 3 non-finite \(NaN or infinite\) scores of 3 for the out channels of Conv2d"),
])
def test_scores_that_cannot_rank_the_channels_name_the_criterion(mode: str, message: str) -> None:
    with pytest.raises(CriterionError, match=message):
        score_groups(downstream_net(), _TeamScores(mode), EXAMPLE)


class _ChannelsLastMlp(nn.Module):
    """A ConvNeXt-style block: a conv, then a Linear over the channels of the channels-last map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mlp = nn.Linear(8, 6)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(torch.relu(self.conv(x)).permute(0, 2, 3, 1))  # (N, H, W, 6)
        return self.head(y.mean((1, 2)))


@pytest.mark.parametrize("name", ["firing", "thinet"])
def test_criteria_reading_a_linear_over_a_channels_last_map(name: str) -> None:
    """firing and thinet took a Linear's input as (samples, features); over an NHWC map every position is a sample."""
    torch.manual_seed(0)
    net = _ChannelsLastMlp().eval()
    x = torch.randn(16, 3, 5, 5)
    plan = prune_model(net, create_criterion(name), 0.5, x[:1], data=ScoringData(x, torch.arange(16) % 4, 8),
                       ignored=[net.head])
    assert len(plan["conv"]) == 4 and net.conv.out_channels == 4 and net.mlp.in_features == 4
    assert net(x).shape == (16, 4)


class _GroupedConsumer(nn.Module):
    """A 1x1 conv read only by a grouped conv (RegNet's bottleneck): ThiNet cannot sample a grouped consumer."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.grouped(torch.relu(self.expand(x)))).mean((2, 3)))


def test_layer_by_layer_removes_slots_of_a_grouped_group_not_channels_twice() -> None:
    """ThiNet ranks such a group by L1 instead (it said so), and removes half its filters: counting the plan's
    channels as slots took both slices twice over, every filter of 'expand', and the next step crashed."""
    torch.manual_seed(0)
    net = _GroupedConsumer().eval()
    x = torch.randn(16, 3, 6, 6)
    prune_model(net, create_criterion("thinet"), 0.5, x[:1], data=ScoringData(x, torch.arange(16) % 4, 8),
                ignored=[net.fc])
    assert net.expand.out_channels == 4 and net.grouped.in_channels == 4 and net(x).shape == (16, 4)


class _Chunked(nn.Module):
    """A conv whose output is chunked in two, one half through another conv, then concatenated again."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.ca, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(torch.relu(self.c1(x)), 2, dim=1)
        x = torch.relu(self.c2(torch.cat([torch.relu(self.ca(a)), b], 1)))
        return self.fc(x.mean((2, 3)))


def test_a_group_torch_pruning_maps_past_a_layer_is_kept_and_named(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.chunk: torch-pruning maps c1's 8 channels onto ca's 4. The run refused the model ("torch-pruning mapped
    channel 4 ..., keep the conv before it"); timm's rexnet_100 had two such layers. Now c1 keeps its filters, a
    warning says why, and the rest is pruned: c2 (ca's group holds c1's filters as torch-pruning maps them, so it is
    kept with them)."""
    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process: another test's "c1" would hide it
    net = _Chunked().eval()
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        groups = score_groups(net, create_criterion("l1"), torch.ones(1, 1, 6, 6))
    assert [g.root for g in groups] == ["c2"]
    assert re.search(r"the filters of c1 are not pruned: torch-pruning maps channel [4-7] of the (in|out) channels of "
                     r"ca, "
                     r"which has 4 \(a split, chunk, slice or pixel shuffle", caplog.text)


def test_a_criterion_given_a_group_mapped_past_a_layer_blames_the_map_not_itself() -> None:
    """Called on torch-pruning's own group of c1 (as a user's own pruning loop may), a criterion read "criterion
    L1Norm gave 4 scores for the out channels of Conv2d (...), which has 4": 4 for 4, and the criterion blamed."""
    net = _Chunked().eval()
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=torch.ones(1, 1, 6, 6))
    group = graph.get_pruning_group(net.c1, tp.prune_conv_out_channels, list(range(8)))
    with pytest.raises(CriterionError, match=r"^torch-pruning mapped channel [4-7] of the (in|out) channels of Conv2d "
                                             r"\(weight \(4, 4, 3, 3\)\), which has 4: .* \(pruning.keep\)$"):
        create_criterion("l1")(group)


class _BatchNorm1dHeads(nn.Module):
    """A BatchNorm1d where classifiers put one: on the pooled conv features (its channels are the conv's, so
    pruning couples them) and after a hidden Linear (not the conv's at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pooled_bn = nn.BatchNorm1d(8)
        self.hidden = nn.Linear(8, 6)
        self.hidden_bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pooled_bn(torch.relu(self.bn(self.conv(x))).mean((2, 3)))
        return self.head(torch.relu(self.hidden_bn(self.hidden(features))))


@pytest.mark.parametrize("name", sorted(CRITERIA.names()))
def test_every_criterion_prunes_a_model_with_batchnorm1d_layers(name: str) -> None:
    """The feature-map criteria (mean_activation, taylor_activation, chip) hooked every BatchNorm and averaged its
    output over (0, 2, 3): a user's classifier with a BatchNorm1d after a Linear failed every such build
    ("Dimension out of range"). A BN1d's (N, C) output is one position per channel."""
    torch.manual_seed(0)
    net = _BatchNorm1dHeads().eval()
    x = torch.randn(16, 3, 6, 6)
    prune_model(net, create_criterion(name), 0.5, x[:1], data=ScoringData(x, torch.arange(16) % 4, 8),
                ignored=[net.head])
    assert net.conv.out_channels == 4 and net.pooled_bn.num_features == 4 and net.hidden.in_features == 4
    assert net(x).shape == (16, 4)
