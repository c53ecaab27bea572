"""Structured removal: ratios per layer / global / of MACs, round_to, grouped convs, and every criterion's
pruned model exported to ONNX and run in ONNX Runtime with outputs equal to PyTorch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from layer_nets import GroupedBlock
from prune_nets import chain_net, positive_data
from torch import nn

from edgebench.models import create_model
from edgebench.models.cost import conv_filters, count_macs
from edgebench.prune import CRITERIA, ScoringData, create_criterion, prune_model
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics so BN criteria and the export comparison see real values."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.1
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model.eval()


def _data(shape: tuple[int, ...], n: int = 64) -> ScoringData:
    g = torch.Generator().manual_seed(1)
    return ScoringData(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g), 32)


def _matches_onnxruntime(model: nn.Module, shape: tuple[int, ...], tmp_path: Path) -> None:
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "m.onnx"
    export_fp32_onnx(model.eval(), x[:1], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_every_criterion_prunes_and_exports(criterion: str, tmp_path: Path) -> None:
    model = _randomise_bn(create_model("digits_cnn", 10, 1))
    prune_model(model, create_criterion(criterion), 0.5, torch.randn(1, 1, 8, 8), data=_data((1, 8, 8)))
    assert conv_filters(model) == {"0.0": 8, "1.0": 16, "3.0": 32}
    _matches_onnxruntime(model, (1, 8, 8), tmp_path)


@pytest.mark.parametrize(
    ("name", "kwargs", "criterion"),
    [("resnet56_cifar", {"depth": 8}, "taylor_weight"), ("mobilenet_cifar", {"width": 0.125}, "thinet"),
     ("resnet56_cifar", {"depth": 8}, "nisp"), ("mobilenet_cifar", {"width": 0.125}, "l1")],
)
def test_residual_and_depthwise_models_prune_and_export(name: str, kwargs: dict, criterion: str, tmp_path: Path) -> None:
    model = _randomise_bn(create_model(name, 10, 3, **kwargs))
    before, macs = conv_filters(model), count_macs(model, (3, 32, 32))
    prune_model(model, create_criterion(criterion), 0.5, torch.randn(1, 3, 32, 32), data=_data((3, 32, 32), 32))
    after = conv_filters(model)
    assert sum(after.values()) == sum(before.values()) // 2
    assert count_macs(model, (3, 32, 32)) < 0.4 * macs
    if name == "resnet56_cifar":  # the residual add forces conv2 and the shortcut of a block to agree
        assert after["stages.1.conv2"] == after["stages.1.shortcut.0"] == 16
    else:  # a depthwise conv keeps exactly the channels of the pointwise conv feeding it
        assert after["1.0"] == after["0.0"] == 2
    _matches_onnxruntime(model, (3, 32, 32), tmp_path)


def test_ramp_counts_against_original_widths_and_round_to() -> None:
    model = create_model("vgg16_cifar", 10, 3, width=0.25)
    x, original = torch.randn(1, 3, 32, 32), conv_filters(model)
    crit = create_criterion("l1")
    prune_model(model, crit, 0.25, x, original=original, round_to=8)
    assert all(c % 8 == 0 for c in conv_filters(model).values())
    prune_model(model, crit, 0.5, x, original=original)  # second step: half of the ORIGINAL widths
    assert conv_filters(model) == {k: v // 2 for k, v in original.items()}


def test_global_scope_hits_the_filter_ratio_and_differs_per_layer() -> None:
    model = create_model("vgg16_cifar", 10, 3, width=0.25)
    before = conv_filters(model)
    with torch.no_grad():  # 6 dead filters in the first conv: globally the least important of all
        model[0][0].weight[:6] = 0
    prune_model(model, create_criterion("l1"), 0.5, torch.randn(1, 3, 32, 32), scope="global")
    after = conv_filters(model)
    assert abs(sum(after.values()) - sum(before.values()) // 2) <= 1
    assert after["0.0"] <= before["0.0"] - 6
    assert len({after[k] / before[k] for k in before}) > 1


def test_macs_unit_reaches_requested_macs_cut() -> None:
    model = create_model("resnet56_cifar", 10, 3, depth=8)
    macs = count_macs(model, (3, 32, 32))
    prune_model(model, create_criterion("l1"), 0.6, torch.randn(1, 3, 32, 32), unit="macs")
    left = count_macs(model, (3, 32, 32)) / macs
    assert 0.35 < left <= 0.4


def test_macs_unit_warns_when_whole_filters_overshoot_the_ask(caplog: pytest.LogCaptureFixture) -> None:
    """Two 2-filter convs at 1x8x8: MACs 2*1*9*64 + 2*2*9*64 + 2*3 = 3462. Uniform steps cut both convs at once:
    one filter each leaves 576 + 576 + 3 = 1155 (66.6 % removed), nothing cut leaves 0 %. Asked 10 %, the cut is
    66.6 %, and the build's check says so (the run prints what workers warn)."""
    from edgebench.prune.build import _warn_macs_overshoot

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    assert count_macs(model, (1, 8, 8)) == 3462
    prune_model(model, create_criterion("l1"), 0.1, torch.randn(1, 1, 8, 8), unit="macs")
    assert count_macs(model, (1, 8, 8)) == 1155
    with caplog.at_level("WARNING", logger="edgebench.prune.build"):
        _warn_macs_overshoot(0.1, 3462, 1155)
        _warn_macs_overshoot(0.62, 3462, 1155)  # 66.6 % for 62 %: within 5 points, no warning
    assert caplog.messages == ["asked to remove 10.0% of the MACs, removed 66.6%: whole filters are coarse steps "
                               "at these layer widths"]


def test_grouped_conv_prunes_equal_slices(tmp_path: Path) -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 2),
    ).eval()
    prune_model(net, create_criterion("l1"), 0.5, torch.randn(1, 1, 4, 4), data=positive_data())
    assert net[2].in_channels == 4 and net[2].groups == 2 and net[2].out_channels == 4
    _matches_onnxruntime(net, (1, 4, 4), tmp_path)


class _ConcatIntoResidual(nn.Module):
    """Two convs concatenated, then added to a conv of the same width: one group whose channels come from both."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 2, 1)
        self.project = nn.Conv2d(5, 5, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.a(x), self.b(x)], dim=1)
        return self.head(joined + self.project(joined))


def test_each_input_of_a_concatenation_keeps_a_filter_however_hard_its_group_is_pruned(tmp_path: Path) -> None:
    from edgebench.prune.groups import GroupScores
    from edgebench.prune.structured import lowest_channels, score_groups

    # by hand: slots 0-2 are a's, 3-4 b's; ranked 3, 4, 0, 1, 2. Removing 4: 3 goes, 4 is b's last and stays,
    # then 0 and 1 go and 2 is a's last: only 3 can go. Without parts the 4 lowest go.
    scores = torch.tensor([3.0, 4.0, 5.0, 1.0, 2.0])
    assert lowest_channels(GroupScores("p", scores, 5, parts=((0, 1, 2), (3, 4))), 4) == [0, 1, 3]
    assert lowest_channels(GroupScores("p", scores, 5), 4) == [0, 1, 3, 4]

    model = _randomise_bn(_ConcatIntoResidual())
    example = torch.randn(1, 1, 4, 4)
    (group,) = score_groups(model, create_criterion("l1"), example)
    assert sorted(group.parts) == [(0, 1, 2), (3, 4)]  # the concatenation's inputs, in root channels
    prune_model(model, create_criterion("l1"), 0.8, example, data=_data((1, 4, 4)))
    assert model.a.out_channels >= 1 and model.b.out_channels >= 1  # 0.8 of 5 alone would empty one of them
    assert model.a.out_channels + model.b.out_channels == model.project.out_channels == 2
    _matches_onnxruntime(model, (1, 4, 4), tmp_path)


class _FreeParameters(nn.Module):
    """Parameters outside any layer, each meeting the channels on another axis: a learned position bias
    (1, C, H, W), a per-channel scale (1, C, 1, 1), a (C, H, W) bias, and a layer scale (C,) on a channels-last view
    (ConvNeXt's gamma)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 6, 3, padding=1)
        self.pos = nn.Parameter(torch.randn(1, 8, 4, 4, generator=g))
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1, generator=g) + 0.5)
        self.bias = nn.Parameter(torch.randn(6, 4, 4, generator=g))
        self.gamma = nn.Parameter(torch.rand(6, generator=g) + 0.5)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x) * self.scale + self.pos)
        x = (self.conv2(x) + self.bias).permute(0, 2, 3, 1) * self.gamma
        return self.head(x.mean((1, 2)))


def test_parameters_outside_layers_lose_their_channels_not_another_axis(tmp_path: Path) -> None:
    """torch-pruning cuts such a parameter's last dimension over 1 unless told otherwise: the (1, 8, 4, 4) bias lost
    width, and the model was refused as one that "breaks when filters are removed"."""
    model = _FreeParameters().eval()
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    prune_model(model, create_criterion("l1"), 0.5, torch.randn(1, 1, 4, 4), data=_data((1, 4, 4)))
    assert (model.conv1.out_channels, model.conv2.out_channels) == (4, 3)

    def kept(conv: str) -> list[int]:  # which original filters are left, matched by their (distinct) biases
        return [int((original[f"{conv}.bias"] == b).nonzero()) for b in getattr(model, conv).bias.detach()]

    first, second = kept("conv1"), kept("conv2")
    assert torch.equal(model.pos.detach(), original["pos"][:, first])
    assert torch.equal(model.scale.detach(), original["scale"][:, first])
    assert torch.equal(model.bias.detach(), original["bias"][second])
    assert torch.equal(model.gamma.detach(), original["gamma"][second])
    _matches_onnxruntime(model, (1, 4, 4), tmp_path)


def test_a_layer_norm_over_more_than_the_channels_keeps_its_filters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch-pruning cuts a LayerNorm's last axis: a (C, H, W) one lost width, not channels, and the whole model was
    refused ("normalized_shape=[16, 8, 7]"). Its conv keeps its filters, with a word; the others are pruned."""
    from edgebench.prune import structured

    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.LayerNorm([8, 4, 4]), nn.ReLU(),
                          nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16, 3)).eval()
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        prune_model(model, create_criterion("l1"), 0.5, torch.randn(1, 1, 4, 4), data=_data((1, 4, 4)))
    assert (model[0].out_channels, model[1].normalized_shape, model[3].out_channels) == (8, (8, 4, 4), 3)
    assert "the filters of 0 are not pruned: LayerNorm 1 normalises over 3 axes (8, 4, 4)" in caplog.text
    _matches_onnxruntime(model, (1, 4, 4), tmp_path)


def test_filters_a_pixel_shuffle_moves_into_space_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PixelShuffle(2) turns conv b's 16 channels into 4: torch-pruning maps b's channels onto c's inputs one to one,
    past c's 4 input channels. b keeps its filters, with a word; a and c are pruned, and the model computes."""
    from edgebench.prune import structured

    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.PixelShuffle(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 64, 3)).eval()
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        prune_model(model, create_criterion("l1"), 0.5, torch.randn(1, 1, 4, 4), data=_data((1, 4, 4)))
    assert (model[0].out_channels, model[2].out_channels, model[5].out_channels) == (4, 16, 3)
    assert "the filters of 2 are not pruned: torch-pruning maps channel" in caplog.text
    assert "pixel shuffle of channels it follows wrongly" in caplog.text
    _matches_onnxruntime(model, (1, 4, 4), tmp_path)


class _Unscorable(type(create_criterion("l1"))):  # type: ignore[misc]
    """A criterion that cannot score any group: edgebench ranks it by L1 and says so."""

    def __call__(self, group: object) -> None:
        return None


def test_a_group_ranked_by_l1_instead_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    from edgebench.prune.structured import score_groups

    model, example = _ConcatIntoResidual(), torch.randn(1, 1, 4, 4)
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        first = score_groups(model, _Unscorable(), example)
        second = score_groups(model, _Unscorable(), example)  # allocation and selection both score each group
    said = [r.getMessage() for r in caplog.records if "cannot score the group" in r.getMessage()]
    assert len(said) == len(first) == 1 and "ranked by L1 norm within the layer" in said[0]
    assert torch.equal(first[0].scores, second[0].scores) and first[0].fallback



def test_a_layer_by_layer_criterion_skips_a_grouped_conv_an_earlier_cut_made_uncuttable() -> None:
    """ThiNet cut c1 to one channel per group of g, after which g's group was gone: a bare KeyError 'g'."""
    from edgebench.prune.criteria import ScoringData

    torch.manual_seed(0)
    model, x = GroupedBlock().eval(), torch.randn(16, 3, 8, 8)
    prune_model(model, create_criterion("thinet"), 0.5, x[:1], data=ScoringData(x, torch.randint(0, 10, (16,))))
    assert model(x).shape == (16, 10) and model.c1.out_channels == 4 and model.c3.out_channels == 4


@pytest.mark.parametrize("ratio", [0.0, 1.0, 50, -0.5])
def test_prune_model_refuses_a_ratio_that_is_no_fraction(ratio: float) -> None:
    """50 (meant as percent) left one filter per layer, without a word."""
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        prune_model(GroupedBlock().eval(), create_criterion("l1"), ratio, torch.randn(1, 3, 8, 8))


def test_round_to_counts_a_grouped_convs_channels_not_its_slots() -> None:
    """round_to rounded the slot count (channels / groups): groups=4 with 4 slots at round_to=8 kept all 16 filters
    without a word; keeping 2 slots of 4 slices is 8 filters, a multiple of 8."""
    torch.manual_seed(0)
    model = GroupedBlock().eval()
    prune_model(model, create_criterion("l1"), 0.5, torch.randn(1, 3, 8, 8), round_to=8)
    widths = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert widths["g"] == 8 and all(w % 8 == 0 for w in widths.values()), widths


def test_a_ramp_step_does_not_remove_more_than_its_ratio_when_the_allocation_shifts() -> None:
    """Two 8-filter convs. Step 1 (0.25, uniform): 2 filters each go, 12 of 16 left. Step 2 asks 0.5 with an
    allocation that now gives c1 0.05 and c2 0.95: c1 cannot get its 2 filters back, c2 keeps max(1, round(0.4)) = 1,
    so 9 of 16 went (56 %, a tester saw 61 % and chance accuracy under gradient_bound). The step ratio is lowered
    until the plan removes 50 %: c2 keeps 2 (round(8 (1 - 1.9 r)) = 2 for r up to 0.427), 8 of 16 left."""
    from edgebench.prune.allocation.base import Allocation

    class Shifting(Allocation):
        def ratios(self, groups, ratio):  # type: ignore[no-untyped-def]
            if ratio <= 0.25:
                return {g.root: ratio for g in groups}
            return {"0": min(0.1 * ratio, 0.99), "2": min(1.9 * ratio, 0.99)}

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    original, x = conv_filters(model), torch.randn(1, 1, 8, 8)
    for ratio in (0.25, 0.5):
        prune_model(model, create_criterion("l1"), ratio, x, original=original, allocation=Shifting())
    assert conv_filters(model) == {"0": 6, "2": 2}


@pytest.mark.parametrize(("widths", "ratio", "kept"), [
    # (1 - 0.25) x (6, 10, 14) = 4.5, 7.5, 10.5: the nearest multiples of 4 are 4, 8, 12 (10.5 was first rounded to
    # 10, then 10 / 4 = 2.5 to 2 by round-half-even: 8)
    ((6, 10, 14), 0.25, (4, 8, 12)),
    # (1 - 0.5) x (12, 20, 28) = 6, 10, 14: each halfway between two multiples of 4; ties keep the larger: 8, 12, 16
    ((12, 20, 28), 0.5, (8, 12, 16)),
])
def test_round_to_keeps_the_nearest_multiple_rounding_once(widths: tuple[int, ...], ratio: float,
                                                           kept: tuple[int, ...]) -> None:
    model = chain_net(widths)
    prune_model(model, create_criterion("l1"), ratio, torch.randn(1, 1, 8, 8), round_to=4)
    assert tuple(conv_filters(model).values()) == kept


@pytest.mark.parametrize(("ratio", "kept", "removed"), [
    # (1 - 0.25) x (6, 10, 14) = 4.5, 7.5, 10.5: ties keep the larger width, 5/8/11, so 6 of 30 filters go (20 %)
    (0.25, (5, 8, 11), 6 / 30),
    # (1 - 0.27) x (6, 10, 14) = 4.38, 7.3, 10.22: 4/7/10, 9 of 30 go (30 %); a ramp ending at 0.27 took this for an
    # overshoot and settled on a smaller ratio's widths
    (0.27, (4, 7, 10), 9 / 30),
])
def test_a_ratio_gives_the_same_widths_one_shot_and_at_the_end_of_a_ramp(ratio: float, kept: tuple[int, ...],
                                                                        removed: float) -> None:
    x, crit = torch.randn(1, 1, 8, 8), create_criterion("l1")
    oneshot = chain_net((6, 10, 14))
    plan = prune_model(oneshot, crit, ratio, x)
    ramped = chain_net((6, 10, 14))
    original = conv_filters(ramped)
    for step in (ratio / 2, ratio):
        last = prune_model(ramped, crit, step, x, original=original)
    assert tuple(conv_filters(oneshot).values()) == tuple(conv_filters(ramped).values()) == kept
    assert plan.filters_removed == pytest.approx(removed) and last.filters_removed == pytest.approx(removed)
