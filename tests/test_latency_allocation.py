"""Latency lookup tables measured on ORT, and the latency-aware allocation that reads them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnxruntime
import pytest
import torch

from edgebench.models import create_model
from edgebench.models.cost import count_macs
from edgebench.prune import create_criterion
from edgebench.prune.allocation.latency.search import (
    Estimator,
    _next_width_down,
    _next_width_up,
    allocate_for_latency,
    estimate_ms,
    macs_at,
    model_layers,
    original_widths,
    prune_to_keep,
)
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape, backend_layer_timer, channel_multiple
from edgebench.runtimes.base import BackendSettings
from tests.layer_nets import GroupedBlock

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def resnet() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("resnet56_cifar", num_classes=10, in_channels=3, depth=8).eval(), torch.randn(1, *SHAPE)


def test_layers_know_which_groups_set_their_channels(resnet) -> None:
    model, example = resnet
    layers = {layer.name: layer for layer in model_layers(model, example)}
    # the stem, stage 0's conv2 and stage 1's shortcut input share the residual group rooted at the stem
    assert layers["stages.0.conv2"].out_group == layers["stem.0"].out_group == "stem.0"
    assert layers["stages.0.conv2"].in_group == "stages.0.conv1"
    assert layers["stages.1.shortcut.0"].in_group == "stem.0"
    assert layers["fc"].out_group is None  # the classes are never pruned
    keep = original_widths(list(layers.values()))
    assert macs_at(list(layers.values()), keep) == count_macs(model, SHAPE)


def test_table_measures_once_caches_per_runtime_version(tmp_path: Path) -> None:
    calls: list[LayerShape] = []
    timer = backend_layer_timer("onnxruntime", BackendSettings(threads=1))

    def counted(shape: LayerShape) -> float:
        calls.append(shape)
        return timer(shape)

    path = tmp_path / "lut.json"
    shape = LayerShape("Conv", 8, 16, (3, 3), (1, 1), (1, 1), (8, 8))
    table = LatencyTable(path, "local-cpu", "onnxruntime", onnxruntime.__version__, counted)
    first = table.latency(shape)
    assert first > 0 and table.latency(shape) == first and len(calls) == 1
    assert table.latency(LayerShape("Gemm", 32, 10)) > 0
    table.save()
    reread = LatencyTable(path, "local-cpu", "onnxruntime", onnxruntime.__version__, counted)
    assert reread.latency(shape) == first and len(calls) == 2  # the Gemm was the only other measurement
    other_version = LatencyTable(path, "local-cpu", "onnxruntime", "0.0-other", counted)
    assert other_version.entries == {}  # a table from another runtime version is not reused
    assert json.loads(path.read_text())["header"]["target"] == "local-cpu"
    for damaged in ('{"broken', '["a list"]', '{"header": {}}'):  # cut off, or not a table: measured again, saved over
        path.write_text(damaged)
        again = LatencyTable(path, "local-cpu", "onnxruntime", onnxruntime.__version__, lambda s: 1.0)
        assert again.entries == {} and again.latency(shape) == 1.0
        again.save()
        assert json.loads(path.read_text())["entries"] == {shape.key: 1.0}


def _synthetic_table(step: int) -> LatencyTable:
    """Latency in whole blocks of ``step`` output channels, proportional to MACs otherwise: a runtime whose
    kernels process channels ``step`` at a time (this is a stand-in for the ORT table, for the search logic)."""
    def latency(shape: LayerShape) -> float:
        blocks = -(-shape.c_out // step) * step
        return 1e-6 * shape.macs * blocks / shape.c_out

    return LatencyTable(None, "t", "r", "v", latency)


def _summed(table: LatencyTable, factor: float = 1.0) -> Estimator:
    """A stand-in latency model: ``factor`` times the sum of the layers' entries."""
    return lambda shapes: factor * sum(table.latency(shape) for shape in shapes)


def test_channel_multiple_is_read_from_the_table() -> None:
    shape = LayerShape("Conv", 32, 64, (3, 3), (1, 1), (1, 1), (8, 8))
    assert channel_multiple(_synthetic_table(8), shape) == 8
    assert channel_multiple(_synthetic_table(1), shape) == 1


def test_allocation_meets_budget_keeps_multiples_and_prunes_to_it(resnet) -> None:
    model, example = resnet
    layers = model_layers(model, example)
    estimate = _summed(_synthetic_table(8), 1.2)  # the whole model runs 20 % slower than its layers' sum
    original = original_widths(layers)
    full_ms = estimate_ms(layers, original, estimate)
    allocation = allocate_for_latency(layers, estimate, 0.6 * full_ms, step=8, floor=2)
    assert allocation.estimated_ms <= 0.6 * full_ms
    # multiples of 8 while a group is wider than 8; below that the step halves (a 16-wide group can reach 8, 4)
    assert all((k % 8 == 0 if k > 8 else k in (2, 4, 8)) for k in allocation.keep.values()), allocation.keep
    assert allocation.macs < macs_at(layers, original)
    pruned = copy.deepcopy(model)
    prune_to_keep(pruned, create_criterion("l1"), allocation.keep, example)
    assert count_macs(pruned, SHAPE) == allocation.macs  # the estimate's MACs are the pruned model's
    widths = {name: m.out_channels for name, m in pruned.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert all(widths[root] == kept for root, kept in allocation.keep.items())


def test_measured_latency_corrects_the_estimate(resnet) -> None:
    model, example = resnet
    layers = model_layers(model, example)
    estimate = _summed(_synthetic_table(1))
    budget = 0.7 * estimate_ms(layers, original_widths(layers), estimate)

    def slower_when_pruned(keep: dict[str, int]) -> float:
        # a runtime whose pruned models run 20 % slower than the estimate says (fixed per-op costs)
        return 1.2 * estimate_ms(layers, keep, estimate)

    allocation = allocate_for_latency(layers, estimate, budget, step=4, measure=slower_when_pruned)
    assert len(allocation.rounds) >= 2 and allocation.rounds[0]["measured_ms"] > budget
    assert slower_when_pruned(allocation.keep) <= budget  # the answer returned is one that met the budget
    assert any(r["measured_ms"] <= budget for r in allocation.rounds)


def test_a_table_within_noise_still_prunes_toward_the_budget(resnet) -> None:
    """Every entry the same (a tiny model's layers are within the runtime's noise of each other): no step saves time
    by the table, so each step narrows the group whose step removes the most MACs, down to the floor."""
    model, example = resnet
    layers = model_layers(model, example)
    flat = _summed(LatencyTable(None, "t", "r", "v", lambda shape: 0.01))
    original = original_widths(layers)
    allocation = allocate_for_latency(layers, flat, 0.5 * estimate_ms(layers, original, flat), step=4, floor=4)
    # by hand: the estimate never falls, so the search narrows until no group can go below the floor of 4
    assert allocation.keep == dict.fromkeys(original, 4)
    assert allocation.macs < macs_at(layers, original)


def test_channels_are_given_back_while_the_estimate_stays_within_the_budget(resnet) -> None:
    """The narrowing's last step can take a whole block of channels past the budget; the search then widens groups
    again while the estimate allows, so no group can take one step back without breaking the budget."""
    model, example = resnet
    layers = model_layers(model, example)
    estimate = _summed(_synthetic_table(8))
    original = original_widths(layers)
    budget = 0.6 * estimate_ms(layers, original, estimate)
    allocation = allocate_for_latency(layers, estimate, budget, step=8, floor=2)
    assert allocation.estimated_ms <= budget
    widened = 0
    for group, width in allocation.keep.items():
        if width < original[group]:
            wider = {**allocation.keep, group: min(_next_width_up(width, 8), original[group])}
            assert estimate_ms(layers, wider, estimate) > budget, (group, width)
            widened += 1
    assert widened  # the budget made the search narrow something
    assert [_next_width_up(w, 8) for w in (2, 4, 8, 12, 16)] == [4, 8, 16, 16, 24]  # _next_width_down's inverse


def test_a_grouped_conv_s_groups_keep_widths_its_groups_divide() -> None:
    """At a runtime step of 1 the search narrowed the group feeding a groups=4 conv from 8 to 7 channels, a width
    ONNX Runtime cannot run ("Input channels C is not equal to kernel channels * group", seen in CI when the
    measured blocking came out 1 or 2): every width it tries for such a group is a multiple of the groups."""
    torch.manual_seed(0)
    model, example = GroupedBlock().eval(), torch.randn(1, 3, 16, 16)
    layers = model_layers(model, example)
    table = _synthetic_table(1)

    def estimate(shapes: list[LayerShape]) -> float:
        assert all(s.c_in % s.groups == 0 and s.c_out % s.groups == 0 for s in shapes), shapes
        return sum(table.latency(shape) for shape in shapes)

    original = original_widths(layers)
    allocation = allocate_for_latency(layers, estimate, 0.3 * estimate_ms(layers, original, estimate), step=1)
    assert allocation.keep["c1"] % 4 == 0 and allocation.keep["g"] % 4 == 0 and allocation.keep["c1"] < 8
    pruned = copy.deepcopy(model)
    prune_to_keep(pruned, create_criterion("l1"), allocation.keep, example)
    assert pruned(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    # by hand: at a step of 2 with groups of 4, 8 channels go to 4 and 4 to nothing; 12 (x3) goes to 8 then 4
    assert [_next_width_down(w, 2, 4) for w in (8, 4, 12)] == [4, 0, 8]
    assert [_next_width_up(w, 2, 4) for w in (4, 8)] == [8, 12]
    assert [_next_width_down(w, 16, 3) for w in (96, 48, 24, 6)] == [48, 24, 12, 3]
