"""Filter removal is exact: a pruned model gives the outputs of the unpruned one with the removed channels zeroed
where they are read (``zero_channels``), through depthwise and grouped convs, residual adds, concatenation, a
squeeze-and-excitation multiply and a flatten; where torch-pruning maps channels wrongly (a permute before the
flatten, a channel shuffle) the check before any training names the layer instead of pruning wrongly."""

from __future__ import annotations

import copy
import itertools
import re

import pytest
import torch
import torch_pruning as tp
from torch import nn

from edgebench.errors import ConfigError, UnsupportedModelError
from edgebench.preflight import check_prunable
from edgebench.prune import structured
from edgebench.prune.criteria.magnitude import L1Norm
from edgebench.prune.structured import kept_layers, prune_model, zero_channels
from edgebench.variants import _ADDED_FIELDS, TrainSpec, hash_payload


class Mixed(nn.Module):
    """An inverted residual (1x1 expand, grouped conv, depthwise, squeeze-and-excitation gate, 1x1 project, add), a
    dense concatenation mixed by a 1x1 conv, and an NCHW flatten into the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.expand = nn.Conv2d(8, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.squeeze, self.excite = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.dense = nn.Conv2d(8, 4, 3, padding=1)
        self.mix = nn.Conv2d(12, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = nn.functional.relu6(self.depthwise(torch.relu(self.grouped(nn.functional.relu6(self.expand(x))))))
        y = y * torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
        x = x + self.project(y)
        x = torch.relu(self.mix(torch.cat([x, torch.relu(self.dense(x))], 1)))
        return self.fc(nn.functional.max_pool2d(x, 2).flatten(1))


class ConcatFlatten(nn.Module):
    """A concatenation flattened into the classifier: torch-pruning maps the classifier's inputs wrongly."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.dense = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(12 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        return self.fc(torch.cat([x, torch.relu(self.dense(x))], 1).flatten(1))


class PermutedFlatten(nn.Module):
    """Flattens NHWC: torch-pruning removes the classifier's inputs as if it were NCHW."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.permute(0, 2, 3, 1).flatten(1))


class ChannelShuffle(nn.Module):
    """ShuffleNet v2's unit: half the channels pass, half go through a branch, then the halves are interleaved."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.stem(x)).chunk(2, dim=1)
        x = torch.cat([a, torch.relu(self.branch(b))], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(x.mean((2, 3)))


class _ShuffleUnit(nn.Module):
    """ShuffleNet v2's unit: a downsampling one concatenates two branches, a plain one passes half its channels and
    sends half through a branch; both interleave the halves after."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        half = channels // 2
        self.down = down
        self.left = nn.Conv2d(channels, half, 3, stride=2, padding=1) if down else nn.Identity()
        self.right = nn.Sequential(nn.Conv2d(channels if down else half, half, 1), nn.ReLU(),
                                   nn.Conv2d(half, half, 3, stride=2 if down else 1, padding=1, groups=half),
                                   nn.Conv2d(half, half, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = torch.cat([self.left(x), self.right(x)], 1)
        else:
            a, b = x.chunk(2, dim=1)
            x = torch.cat([a, self.right(b)], 1)
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleStage(nn.Module):
    """A downsampling shuffle unit and two plain ones: torch-pruning cannot even build its dependency graph."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.units = nn.Sequential(_ShuffleUnit(8, True), _ShuffleUnit(8, False), _ShuffleUnit(8, False))
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.units(torch.relu(self.stem(x))).mean((2, 3)))


class ChannelMean(nn.Module):
    """A spatial attention map from the mean over channels (CBAM): removing a channel changes the mean."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x * torch.sigmoid(x.mean(1, keepdim=True))))
        return self.fc(x.mean((2, 3)))


def _example() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_removal_equals_zeroing_what_reads_the_removed_channels() -> None:
    torch.manual_seed(0)
    model = Mixed().eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # not the identity of a fresh BN
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    x = _example()
    pruned = copy.deepcopy(model)
    plan = prune_model(pruned, L1Norm(), 0.5, x[:1])
    assert pruned.grouped.out_channels < 16 and pruned.grouped.groups == 4
    assert pruned.depthwise.groups == pruned.depthwise.out_channels < 16
    assert pruned.squeeze.out_channels < 4 and pruned.dense.out_channels < 4 and pruned.mix.in_channels < 12
    assert pruned.fc.in_features < 8 * 4 * 4
    zeroed = copy.deepcopy(model)
    zero_channels(zeroed, x[:1], plan)
    with torch.no_grad():
        want, got, unpruned = zeroed(x), pruned(x), model(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (unpruned - want).abs().max() > 1e-3  # the zeroing did remove something the outputs depend on
    check_prunable(model, x, "model Mixed")


@pytest.mark.parametrize(("net", "what", "rest"), [
    (PermutedFlatten, "is pruned wrongly at layer 'c2'", True),
    (ChannelShuffle, "breaks when filters are removed (cutting the filters of layer 'branch')", False),
    (ConcatFlatten, "breaks when filters are removed (cutting the filters of layer 'dense')", False),
])
def test_a_wrong_channel_mapping_is_refused_naming_the_layer(net: type[nn.Module], what: str, rest: bool) -> None:
    torch.manual_seed(0)
    model = net().eval()
    with pytest.raises(ConfigError) as err:
        check_prunable(model, _example(), f"model {net.__name__}")
    message = str(err.value)
    assert what in message and "\n" not in message
    assert "remove pruning.criteria" in message
    # ...and the layers to keep so that the rest (whatever torch-pruning can still cut) prunes exactly
    layer = what.split("'")[1]
    if rest:
        assert f"pruning.keep: [{layer}]" in message
        check_prunable(model, _example(), f"model {net.__name__}", keep=[layer])
    else:  # that layer was all there was to cut: keeping it is no advice (it had been, and led to the error below)
        assert f"keeping {layer} with pruning.keep leaves no filter to prune" in message
        assert f"pruning.keep: [{layer}]" not in message
        with pytest.raises(ConfigError, match="has no filters to prune"):
            check_prunable(model, _example(), f"model {net.__name__}", keep=[layer])
    pruned = copy.deepcopy(model)
    plan = prune_model(pruned, L1Norm(), 0.5, _example()[:1], ignored=kept_layers(pruned, [layer]))
    assert layer not in plan and getattr(pruned, layer).out_channels == getattr(model, layer).out_channels
    assert pruned(_example()).shape == (2, 5)


class TwoConcatFlatten(nn.Module):
    """Two of ConcatFlatten's heads side by side, their logits added."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.ModuleList(nn.Conv2d(3, 8, 3, padding=1) for _ in range(2))
        self.dense = nn.ModuleList(nn.Conv2d(8, 4, 3, padding=1) for _ in range(2))
        self.fc = nn.ModuleList(nn.Linear(12 * 8 * 8, 5) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = []
        for stem, dense, fc in zip(self.stem, self.dense, self.fc, strict=True):
            y = torch.relu(stem(x))
            heads.append(fc(torch.cat([y, torch.relu(dense(y))], 1).flatten(1)))
        return heads[0] + heads[1]


def test_a_break_two_layers_cause_each_alone_names_both_not_one_as_the_cut() -> None:
    """timm's cspresnet50 read "breaks when filters are removed (cutting the filters of layer
    'stages.3.conv_transition_b.conv'): layer stages.0.blocks.0.conv1.conv raises ...": one of the four layers to
    keep, named as though its cut made the error of another stage."""
    with pytest.raises(ConfigError) as err:
        check_prunable(TwoConcatFlatten().eval(), _example(), "model TwoConcatFlatten")
    message = str(err.value)
    assert "breaks when filters are removed (cutting the filters of any one of the 2 layers named below breaks it " \
           "too): " in message
    assert re.search(r"dense\.[01], dense\.[01]", message)


def test_a_model_torch_pruning_cannot_trace_is_one_line_not_its_traceback() -> None:
    """torch-pruning raises while building ShuffleStage's graph (a ZeroDivisionError in its reshape mapping): the
    check says so in one line with what to do, and does not build the graph again to look for layers to keep."""
    with pytest.raises(ConfigError) as err:
        check_prunable(ShuffleStage().eval(), _example(), "model ShuffleStage")
    message = str(err.value)
    assert message.startswith("model ShuffleStage cannot be pruned: torch-pruning cannot map its channels "
                              "(ZeroDivisionError in torch-pruning's update_reshape_index_mapping: ")
    assert "\n" not in message
    assert message.endswith("remove pruning.criteria (torch-pruning cannot trace this model, so no layer can be kept "
                            "apart)")


def test_prune_model_on_a_model_torch_pruning_cannot_trace_raises_one_clear_error() -> None:
    """A direct API caller gets UnsupportedModelError naming torch-pruning's failure (it was its bare
    ZeroDivisionError), with the cause kept for a traceback reader."""
    with pytest.raises(UnsupportedModelError) as err:
        prune_model(ShuffleStage().eval(), L1Norm(), 0.3, _example()[:1])
    assert str(err.value).startswith("torch-pruning cannot map this model's channels (ZeroDivisionError in "
                                     "torch-pruning's update_reshape_index_mapping: ")
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_keep_names_a_layer_the_model_does_not_have() -> None:
    with pytest.raises(ConfigError, match=r"pruning.keep: conv9 is not a conv layer of the model \(its conv layers: c1, c2"):
        check_prunable(PermutedFlatten().eval(), _example(), "model PermutedFlatten", keep=["conv9"])


def test_keep_enters_a_variants_id_only_when_set() -> None:
    from edgebench.config import PruningConfig
    from edgebench.plan import prune_spec
    from edgebench.variants import VariantSpec

    def variant(**pruning: object) -> VariantSpec:
        spec = prune_spec(PruningConfig(**pruning), "l1", 0.5, "while_training", None)
        return VariantSpec(model="digits_cnn", dataset="digits", train=TrainSpec(), prune=spec)

    assert variant(keep=["c2"]).prune.keep == ("c2",)
    assert variant(keep=["c2"]).id != variant().id
    assert "keep" not in hash_payload(variant().model_dump(mode="json"), _ADDED_FIELDS)["prune"]  # earlier ids stand


def test_an_op_over_channels_is_flagged_and_can_be_let_through() -> None:
    torch.manual_seed(0)
    model = ChannelMean().eval()
    with pytest.raises(ConfigError, match="pruning.check_removal: false"):
        check_prunable(model, _example(), "model ChannelMean")
    check_prunable(model, _example(), "model ChannelMean", exact=False)


class GroupedAfterConcat(nn.Module):
    """A grouped conv reading a concatenation: its two groups see 6 channels each, which no slot of either input
    group lines up with."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.dense = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=2)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.grouped(torch.cat([x, torch.relu(self.dense(x))], 1)))
        return self.fc(x.mean((2, 3)))


def _halved_as_zeroed(model: nn.Module, caplog: pytest.LogCaptureFixture) -> tuple[nn.Module, dict[str, list[int]]]:
    """A copy of ``model`` pruned by half (L1, warnings captured) and its plan, checked to give the outputs of
    zeroing the same channels."""
    x = _example()
    pruned = copy.deepcopy(model)
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        plan = prune_model(pruned, L1Norm(), 0.5, x[:1])
    zeroed = copy.deepcopy(model)
    zero_channels(zeroed, x[:1], plan)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zeroed(x), atol=1e-5, rtol=1e-4)
    return pruned, plan


def test_groups_a_grouped_conv_cannot_cut_evenly_are_kept_and_named(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    pruned, plan = _halved_as_zeroed(GroupedAfterConcat().eval(), caplog)
    assert pruned.grouped.out_channels == 6 and pruned.grouped.in_channels == 12  # its own filters: evenly
    assert set(plan) == {"grouped"}
    assert "grouped conv grouped (groups=2)" in caplog.text


class DepthwiseMultiplier(nn.Module):
    """A depthwise conv with channel multiplier 2 (8 inputs, 16 outputs) between two pointwise convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.dw, self.bn = nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 12, 1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.dw(torch.relu(self.stem(x)))))
        return self.fc(torch.relu(self.pw(x)).mean((2, 3)))


def test_a_depthwise_conv_with_a_channel_multiplier_is_kept_and_named(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    pruned, plan = _halved_as_zeroed(DepthwiseMultiplier().eval(), caplog)
    assert set(plan) == {"pw"} and pruned.pw.out_channels == 6  # the rest of the network is still pruned
    assert (pruned.stem.out_channels, pruned.dw.in_channels, pruned.dw.out_channels) == (8, 8, 16)
    assert "depthwise conv dw has a channel multiplier (16 outputs from 8 inputs)" in caplog.text


class SpatialAttention(nn.Module):
    """CBAM's spatial attention after the first conv: a 1-channel map, convolved from the mean and the maximum over
    c1's 16 channels, multiplies them."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.sa = nn.Conv2d(2, 1, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(x)))
        x = x * torch.sigmoid(self.sa(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return self.fc(torch.relu(self.c2(x)).mean((2, 3)))


def test_a_conv_a_broadcast_map_ties_is_named_and_counted_as_kept(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch-pruning ties c1's channel 0 to sa's one channel (the broadcast multiply) and its other filters to no
    group: c1 keeps its 16 filters, and the share removed is of all 16 + 1 + 32 = 49 conv filters, 16 of c2's gone:
    16 / 49 (it said 16 / 34, sa's group counted as 2 filters and c1's 16 as 1, and nothing named c1)."""
    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process: another test's "c1" would hide it
    torch.manual_seed(0)
    model = SpatialAttention().eval()
    pruned, plan = _halved_as_zeroed(model, caplog)
    assert (pruned.c1.out_channels, pruned.sa.out_channels, pruned.c2.out_channels) == (16, 1, 16)
    assert plan.filters_removed == pytest.approx(16 / 49)
    assert caplog.text.count("the filters of c1 are not pruned") == 1
    assert "15 of its 16 output channels in no group" in caplog.text and "pruning.keep: [c1]" in caplog.text
    check_prunable(model, _example(), "model SpatialAttention")  # the removal check passes it (README says so)
    caplog.clear()
    monkeypatch.setattr(structured, "_WARNED", set())
    kept = copy.deepcopy(model)
    with caplog.at_level("WARNING", logger="edgebench.prune.structured"):
        prune_model(kept, L1Norm(), 0.5, _example()[:1], ignored=kept_layers(kept, ["c1"]))
    assert kept.c2.out_channels == 16 and "c1" not in caplog.text  # kept as the warning says: no warning


class PartialShortcuts(nn.Module):
    """ReXNet's blocks (timm's rexnet_100): each widens its input by 11 channels and adds the input to the first
    channels of its 1x1 projection, the rest joined on, ``cat([y[:, :c] + x, y[:, c:]])``; five in a row."""

    def __init__(self) -> None:
        super().__init__()
        widths = [8 + 11 * i for i in range(6)]
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.expand = nn.ModuleList(nn.Conv2d(c, 2 * c, 1) for c in widths[:-1])
        self.project = nn.ModuleList(nn.Conv2d(2 * c, w, 1) for c, w in itertools.pairwise(widths))
        self.fc = nn.Linear(widths[-1], 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for expand, project in zip(self.expand, self.project, strict=True):
            y = project(torch.relu(expand(x)))
            x = torch.cat([y[:, :x.shape[1]] + x, y[:, x.shape[1]:]], 1)
        return self.fc(x.mean((2, 3)))


def test_projections_whose_channel_walk_never_settles_are_kept_and_the_rest_pruned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # unbounded, torch-pruning's walk from project.1 alone ran for minutes (rexnet_100's check: over 15)
    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process
    torch.manual_seed(0)
    model = PartialShortcuts().eval()
    pruned, plan = _halved_as_zeroed(model, caplog)
    assert set(plan) == {f"expand.{i}" for i in range(5)}
    assert [layer.out_channels for layer in pruned.expand] == [8, 19, 30, 41, 52]  # half of 16, 38, 60, 82, 104
    assert [layer.out_channels for layer in pruned.project] == [19, 30, 41, 52, 63]  # as they were
    for i in range(1, 5):
        assert f"the filters of project.{i} are not pruned: torch-pruning's walk" in caplog.text
    check_prunable(model, _example(), "model")  # and the check before training passes


class TwoBranches(nn.Module):
    """Two convs joined by a concat, read by a conv whose own filters reach the classifier without one."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 6, 3, padding=1)
        self.mix = nn.Conv2d(14, 10, 3, padding=1)
        self.fc = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], 1)
        return self.fc(torch.relu(self.mix(x)).mean((2, 3)))


def test_roots_whose_channel_walk_fails_are_kept_and_the_rest_pruned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A walk of torch-pruning's that raises (timm's lambda_resnet26t: a ZeroDivisionError in a mapping) failed the
    whole listing, so no conv could be pruned. Here the concat's mapping is made to raise the same way: the two roots
    whose walks cross it keep their filters, a warning names the failure, and mix is still pruned."""
    monkeypatch.setattr(structured, "_WARNED", set())  # warned once per process

    def fails(self: object, idxs: object) -> None:
        raise ZeroDivisionError("integer division or modulo by zero")

    monkeypatch.setattr(tp.dependency.index_mapping._ConcatIndexMapping, "__call__", fails)
    torch.manual_seed(0)
    pruned, plan = _halved_as_zeroed(TwoBranches().eval(), caplog)
    assert set(plan) == {"mix"}
    assert (pruned.left.out_channels, pruned.right.out_channels, pruned.mix.out_channels) == (8, 6, 5)
    for root in ("left", "right"):
        assert re.search(rf"the filters of {root} are not pruned: torch-pruning's walk over the layers tied to them "
                         r"fails \(ZeroDivisionError in torch-pruning's \w+: integer division", caplog.text)


class NormalisedChannels(nn.Module):
    """ConvNeXt's block (depthwise 7x7, channels-last LayerNorm, Linear-GELU-Linear, layer scale, residual), a
    GroupNorm after a conv, and optionally an NHWC flatten into the classifier (a wrong mapping elsewhere)."""

    def __init__(self, nhwc_flatten: bool = False) -> None:
        super().__init__()
        self.nhwc_flatten = nhwc_flatten
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.dw, self.norm = nn.Conv2d(8, 8, 7, padding=3, groups=8), nn.LayerNorm(8)
        self.pw1, self.pw2 = nn.Linear(8, 32), nn.Linear(32, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.down, self.gn = nn.Conv2d(8, 8, 2, 2), nn.GroupNorm(2, 8)
        self.head = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.pw2(nn.functional.gelu(self.pw1(self.norm(self.dw(x).permute(0, 2, 3, 1)))))
        x = x + (self.gamma * y).permute(0, 3, 1, 2)
        x = torch.relu(self.head(self.gn(self.down(x))))
        return self.fc((x.permute(0, 2, 3, 1) if self.nhwc_flatten else x).flatten(1))


def test_channels_a_layernorm_or_groupnorm_normalises_together_are_pruned_not_refused() -> None:
    # removing a channel a LayerNorm/GroupNorm normalises changes the others' statistics, so it can never equal
    # zeroing what reads it: the check leaves those groups out instead of calling the mapping wrong
    torch.manual_seed(0)
    model = NormalisedChannels().eval()
    check_prunable(model, _example(), "model NormalisedChannels")
    pruned = copy.deepcopy(model)
    prune_model(pruned, L1Norm(), 0.5, _example()[:1])
    assert pruned.norm.normalized_shape[0] == pruned.dw.out_channels == pruned.gamma.numel() < 8
    assert pruned.gn.num_channels == pruned.down.out_channels < 8
    assert pruned(_example()).shape == (2, 5)


def test_a_wrong_mapping_beside_normalised_channels_is_still_named() -> None:
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="is pruned wrongly at layer 'head'"):
        check_prunable(NormalisedChannels(nhwc_flatten=True).eval(), _example(), "model NormalisedChannels")


class TransposedReader(nn.Module):
    """A conv read by a transposed conv (a decoder's upsampling), whose weight holds its inputs on dim 0."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.up(torch.relu(self.down(x)))).mean((2, 3)))


def test_a_transposed_conv_reading_removed_channels_is_zeroed_on_its_input_dim(
        caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = TransposedReader().eval()
    check_prunable(model, _example(), "model TransposedReader")  # was "pruned wrongly at layer 'down'"
    pruned, plan = _halved_as_zeroed(model, caplog)
    assert plan.keys() == {"down"} and pruned.down.out_channels == pruned.up.in_channels == 4


class Conv1dNet(nn.Module):
    """An audio-style 1-D net reading edgebench's (N, 1, C, L) image as (N, C, L): no Conv2d filter to remove."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(3, 8, 3), nn.Conv1d(8, 8, 3)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x.flatten(1, 2)))))
        return self.fc(x.mean(2))


def test_a_model_without_conv2d_filters_is_refused_not_pruned_into_itself() -> None:
    """Its "pruned" variants were the baseline under another name (same params, MACs and file)."""
    with pytest.raises(ConfigError, match="model Conv1dNet has no filters to prune.*remove pruning.criteria"):
        check_prunable(Conv1dNet().eval(), torch.randn(2, 1, 3, 16), "model Conv1dNet")


def test_a_model_that_cannot_be_saved_whole_is_refused_before_training() -> None:
    """A lock kept as an attribute cannot be pickled by anything (a lambda or a local class can: test_user_model)."""
    import threading

    from edgebench.preflight import _check_picklable

    locked = Conv1dNet()
    locked.lock = threading.Lock()
    with pytest.raises(ConfigError, match="model locked cannot be saved whole .*'_thread.lock'.*keep no open files, locks"):
        _check_picklable(locked, "model locked")
    _check_picklable(Conv1dNet(), "model Conv1dNet")
    normed = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ConfigError, match="bake the parametrizations into the weights first"):
        _check_picklable(normed, "model normed")


class GroupNormNet(nn.Module):
    """Two conv + GroupNorm(4) blocks: torch-pruning keeps num_groups, so each group must keep as many channels."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.c2, self.n2 = nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(4, 32)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.n2(self.c2(torch.relu(self.n1(self.c1(x))))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_groupnorm_groups_lose_channels_evenly(ratio: float) -> None:
    """At 0.3 the 16 channels became 14, not divisible by 4 groups: the pruned variant failed after training. Now
    every group loses the same number (the same slots of each group's channels), at every ratio a ramp passes."""
    torch.manual_seed(0)
    model = GroupNormNet().eval()
    plan = prune_model(model, L1Norm(), ratio, _example()[:1], ignored=kept_layers(model))
    removed = plan["c1"]
    per_group = [sum(1 for c in removed if c // 4 == g) for g in range(4)]
    assert len(set(per_group)) == 1 and per_group[0] > 0  # 16 channels in 4 groups of 4: the same count from each
    assert model.n1.num_channels % model.n1.num_groups == 0 and model.n2.num_channels % 4 == 0
    assert model(_example()).shape == (2, 5)


class GatedConv(nn.Module):
    """A conv's output chunked into value and gate halves multiplied together (a GLU over channels): each root
    channel of c1 is tied to another of c1, so removing one filter removes two."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.c1(x).chunk(2, 1)
        return self.fc(torch.relu(self.c2(value * torch.sigmoid(gate))).mean((2, 3)))


def test_filters_tied_to_each_other_are_refused_naming_the_layer() -> None:
    """The check passed (removal equals zeroing: both remove the pair), while l1-0.5 kept 6 of 32 filters and
    criteria scoring 32 slots removed all of them after training."""
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"model GatedConv cannot be pruned at layer 'c1': removing \d+ of its "
                                          r"filters removed \d+ .*pruning.keep: \[c1\]"):
        check_prunable(GatedConv().eval(), _example(), "model GatedConv")
    check_prunable(GatedConv().eval(), _example(), "model GatedConv", keep=["c1"])


class ConcatGroupNorm(nn.Module):
    """Two branches of 6 and 10 filters concatenated into a GroupNorm(4, 16): its groups straddle the branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(3, 10, 3, padding=1)
        self.gn, self.c = nn.GroupNorm(4, 16), nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.gn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(torch.relu(self.c(y)).mean((2, 3)))


def test_a_groupnorm_behind_a_concatenation_keeps_those_filters_and_prunes_the_rest(caplog) -> None:
    """Its num_groups was taken as the branches' slices (4 does not divide 6): the check blamed torch-pruning and
    refused the model. The branches' filters stay (a warning names the GroupNorm); the other layers prune."""
    torch.manual_seed(0)
    model = ConcatGroupNorm().eval()
    check_prunable(model, _example(), "model ConcatGroupNorm")
    pruned = copy.deepcopy(model)
    prune_model(pruned, L1Norm(), 0.5, _example()[:1], ignored=kept_layers(pruned))
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.c.out_channels) == (6, 10, 4)
    assert "GroupNorm gn (num_groups=4) normalises them with other channels" in caplog.text
    assert pruned(_example()).shape == (2, 5)


class AttentionOverPositions(nn.Module):
    """Convs, then self-attention over the feature map's positions (embed_dim = the last conv's filters)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.relu(self.c2(torch.relu(self.c1(x)))).flatten(2).transpose(1, 2)
        a, _ = self.attn(t, t, t, need_weights=False)
        return self.fc((t + a).mean(1))


def test_the_filters_an_attention_embeds_are_kept_and_the_rest_pruned(caplog: pytest.LogCaptureFixture) -> None:
    """Pruning them cannot be exact (the heads' split and scale change): the check refused the model, blaming a
    channel shuffle, and with a LayerNorm beside them (a ViT) it passed and every build failed ("embed_dim must
    divide evenly by num_heads"). c2's filters are the attention's embed_dim: kept and named; c1's are pruned."""
    torch.manual_seed(0)
    check_prunable(AttentionOverPositions().eval(), _example(), "model AttentionOverPositions")
    pruned, plan = _halved_as_zeroed(AttentionOverPositions().eval(), caplog)
    assert set(plan) == {"c1"} and pruned.c1.out_channels == 4 and pruned.attn.embed_dim == 16
    assert "the filters of c2 are not pruned: attention attn (4 heads) embeds them" in caplog.text


class Alex(nn.Module):
    """AlexNet's local response normalisation between convs (``alpha`` as given: AlexNet's own 1e-4 barely moves a
    pixel, a larger one normalises each channel by its neighbours')."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(5, alpha=alpha)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lrn(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


def test_a_local_response_norm_is_traced_as_one_op_per_channel() -> None:
    """torch-pruning's index mapping grew without end over LRN's unsqueeze, 3-D pool and squeeze: an AlexNet-style
    model's check took 24 GiB and was killed by the kernel. Traced per channel, its filters prune (to 8 of 16, as
    L1 at half takes them); with a strong alpha, a removed channel leaves its neighbours' windows, which the removal
    check names as an op over channels."""
    torch.manual_seed(0)
    weak = Alex(alpha=1e-4).eval()
    pruned = copy.deepcopy(weak)
    prune_model(pruned, L1Norm(), 0.5, _example()[:1])
    assert (pruned.conv1.out_channels, pruned.conv2.out_channels) == (8, 8)
    check_prunable(Alex(alpha=1e-4).eval(), _example(), "model Alex")
    with pytest.raises(ConfigError, match="pruning.check_removal: false"):
        check_prunable(Alex(alpha=5.0).eval(), _example(), "model Alex")



class TwoGates(GatedConv):
    """Two gated convs: the refusal names both for pruning.keep (it named one per run)."""

    def __init__(self) -> None:
        super().__init__()
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.c1(x).chunk(2, 1)
        value, gate = self.c2(value * torch.sigmoid(gate)).chunk(2, 1)
        return self.fc((value * torch.sigmoid(gate)).mean((2, 3)))


def test_every_layer_tied_alike_is_named_in_one_line() -> None:
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"cannot be pruned at layer 'c\d' \(and 1 more layer tied alike\): .*"
                                          r"pruning.keep: \[c\d, c\d\]$") as info:
        check_prunable(TwoGates().eval(), _example(), "model TwoGates")
    keep = str(info.value).rsplit("pruning.keep: [", 1)[1].rstrip("]").split(", ")
    assert sorted(keep) == ["c1", "c2"]
    with pytest.raises(ConfigError, match=r"has no filters to prune"):  # both kept: nothing else has filters
        check_prunable(TwoGates().eval(), _example(), "model TwoGates", keep=keep)


def _failing_after_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-pruning's prune_model as it is for the check's own pruning, failing for the trials with layers kept."""
    calls = []

    def prune(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("cannot map the kept layers' channels")
        return prune_model(*args, **kwargs)

    monkeypatch.setattr(structured, "prune_model", prune)


def test_why_pruning_with_the_tied_layers_kept_fails_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial pruning with the tied layers kept failed silently: the user kept them and only then met its error."""
    _failing_after_the_first_call(monkeypatch)
    with pytest.raises(ConfigError, match=r"pruning.keep: \[c\d, c\d\] \(then pruning fails: RuntimeError: cannot map the "
                                          r"kept layers' channels\)$"):
        check_prunable(TwoGates().eval(), _example(), "model TwoGates")


def test_why_keeping_the_inexact_layers_does_not_help_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_after_the_first_call(monkeypatch)
    with pytest.raises(ConfigError, match=r"keeping c2 with pruning.keep does not make the rest prunable either: "
                                          r"RuntimeError: cannot map the kept layers' channels\)"):
        check_prunable(PermutedFlatten().eval(), _example(), "model PermutedFlatten")
