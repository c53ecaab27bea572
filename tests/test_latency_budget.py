"""The registered ``latency`` allocation: a known answer on a constructed latency table, the ramp of stepped
schedules with a criterion choosing the filters, load-time checks, the sweep's timed task, and an experiment file
run end to end on digits with real ONNX Runtime measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from layer_nets import GroupedBlock
from torch import nn

from edgebench.config import DEFAULT_EXPERIMENT, load_experiment
from edgebench.errors import ConfigError
from edgebench.job import ONE_LAYER_P50, OWN_TIME
from edgebench.models.cost import conv_filters
from edgebench.pipeline import run_experiment
from edgebench.plan import plan_fp32_variants
from edgebench.prune import create_criterion, prune_model
from edgebench.prune.allocation import create_allocation
from edgebench.prune.allocation.latency import budget as lb
from edgebench.prune.allocation.latency.search import Estimator, estimate_ms, layer_shape, model_layers
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape
from edgebench.store import Store
from edgebench.sweep import sweep_tasks
from edgebench.variants import PruneSpec
from tests.experiment_files import default_with

EXAMPLE = torch.ones(1, 1, 4, 4)


def _net() -> nn.Sequential:
    """stem conv (1 -> 8) - conv (8 -> 8) - classifier; stem filter ``i`` has L1 norm proportional to ``i + 1``."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(1.0, 9.0).view(8, 1, 1, 1).expand(8, 1, 3, 3))
    return net.eval()


def _synthetic_ms(shape: LayerShape) -> float:
    """A runtime on which the stem (one input channel) costs 10x per MAC what every other layer costs."""
    return (10e-6 if shape.op == "Conv" and shape.c_in == 1 else 1e-6) * shape.macs


class _SyntheticTimer:
    """Stands in for PairedTimer: a model's time is the sum of its layers' synthetic times, at a steady load."""

    calls = 0

    def __init__(self, model: nn.Module, example: torch.Tensor, *_: object) -> None:
        self.layers = model_layers(model, example)
        self.full = {la.out_group: la.shape.c_out for la in self.layers if la.out_group}

    def _ms(self, keep: dict[str, int]) -> float:
        type(self).calls += 1
        return sum(_synthetic_ms(layer_shape(la, keep)) for la in self.layers)

    def unpruned_ms(self) -> float:
        return self._ms(self.full)

    def pairs(self, keep: dict[str, int], n: int) -> list[tuple[float, float]]:
        return [(self._ms(keep), self._ms(self.full)) for _ in range(n)]


class _SyntheticLatencyModel:
    """Stands in for TargetLatencyModel: a model's estimate is the sum of its layers' synthetic times."""

    entries, measured = "synthetic", 0

    def __init__(self, *_: object) -> None:
        self.table = LatencyTable(None, "t", "r", "v", _synthetic_ms)

    def estimator(self, _unpruned: list[LayerShape], _unpruned_ms: float) -> Estimator:
        return lambda shapes: sum(_synthetic_ms(shape) for shape in shapes)

    def save(self) -> None:
        pass


@pytest.fixture
def synthetic_runtime(monkeypatch: pytest.MonkeyPatch) -> type[_SyntheticTimer]:
    monkeypatch.setattr(lb, "TargetLatencyModel", _SyntheticLatencyModel)
    monkeypatch.setattr(lb, "PairedTimer", _SyntheticTimer)
    _SyntheticTimer.calls = 0
    return _SyntheticTimer


def test_expensive_layer_loses_channels_first_and_the_ramp_reaches_the_widths(synthetic_runtime, tmp_path) -> None:
    net = _net()
    allocation = create_allocation("latency", rounds=1)
    allocation.begin(PruneSpec(criterion="l1", ratio=0.3, allocation="latency"), tmp_path)
    original = conv_filters(net)
    # budget 0.7 x 0.020992 ms. A stem channel saves 144 stem MACs at 10x plus 1152 MACs of the next conv's
    # input (2e-6 ms per MAC removed), an output channel of the second conv 1e-6 ms per MAC: the stem goes first,
    # and 3 of its channels (0.002592 ms each) meet the budget, the second conv keeps all 8
    prune_model(net, create_criterion("l1"), 0.15, EXAMPLE, original=original, allocation=allocation)
    halfway = net[0].out_channels
    prune_model(net, create_criterion("l1"), 0.3, EXAMPLE, original=original, allocation=allocation)
    record = allocation.record()
    assert record.keep == {"0": 5, "2": 8} and record.met and record.p50_ms <= record.budget_ms
    assert record.budget_ms == pytest.approx(0.7 * 0.020992) and record.summary() is None
    assert 5 < halfway < 8  # the first of two steps goes part of the way, linearly in channels
    assert (net[0].out_channels, net[2].out_channels, net[2].in_channels) == (5, 8, 5)
    # the criterion chose which stem filters went: the five largest L1 norms (filters 3..7) are left
    assert net[0].weight[:, 0, 0, 0].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]

    calls = synthetic_runtime.calls
    again = create_allocation("latency", rounds=1)
    again.begin(PruneSpec(criterion="random", ratio=0.3, allocation="latency"), tmp_path)
    again.prepare(_net(), EXAMPLE, None)
    assert again.keep == {"0": 5, "2": 8} and synthetic_runtime.calls == calls  # read back, nothing measured


@pytest.mark.parametrize(
    ("kwargs", "unit", "message"),
    [
        ({"target": "rpi5"}, "filters", "target 'rpi5' runs over SSH, and latency tables are measured on the machine"),
        ({"target": "local-litert"}, "filters", "target 'local-litert' has no backend that loads ONNX"),
        ({"backend": "torch"}, "filters", "backend 'torch' is not a backend of target 'local-cpu' that loads ONNX"),
        ({"budget_ms": 0}, "filters", "pruning.allocation_kwargs.latency: budget_ms must be a positive number"),
        ({"budget": 1.0}, "filters", "unknown option 'budget' (did you mean 'budget_ms'?); allowed: target, backend, budget_ms, rounds"),
        ({}, "macs", "pruning.unit: macs does not apply to allocation latency, whose ratios are fractions of latency"),
    ],
)
def test_bad_latency_options_fail_at_load_in_one_line(tmp_path: Path, kwargs: dict, unit: str, message: str) -> None:
    pruning = {"allocation": ["latency"], "allocation_kwargs": {"latency": kwargs}, "unit": unit}
    with pytest.raises(ConfigError) as err:
        load_experiment(default_with(tmp_path, pruning=pruning))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_latency_variants_add_ids_and_share_one_timed_task(tmp_path: Path) -> None:
    pruning = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())["pruning"]
    before = {v.label: v.id for v in plan_fp32_variants(load_experiment(default_with(tmp_path, pruning=pruning)))}
    exp = load_experiment(default_with(tmp_path, pruning={**pruning, "allocation": ["uniform", "latency"]}))
    specs = plan_fp32_variants(exp)
    uniform = {v.label: v.id for v in specs if not (v.prune and v.prune.allocation)}
    assert uniform == before  # the variants that existed keep their ids
    latency = [v for v in specs if v.prune and v.prune.allocation == "latency"]
    assert len(latency) == len(before) - 1 and not {v.id for v in latency} & set(before.values())

    tasks = {t.key: t for t in sweep_tasks(exp, specs, [], {}, tmp_path, tmp_path / "eval.npz", tmp_path / "c.npz")}
    timed = [t for t in tasks.values() if t.key.startswith("allocate:")]
    assert all(t.timed and t.kind == "allocate" for t in timed)
    assert len(timed) == len(exp.pruning.ratios)  # one per ratio, shared by every criterion of it
    # they time a runtime: in workers of their own, not the builds' (which exports share: they import ONNX Runtime)
    builds = {t.worker for t in tasks.values() if t.key.startswith("build:")}
    assert builds and len({t.worker for t in timed}) == 1 and not {t.worker for t in timed} & builds
    for spec in latency:
        (allocate,) = [k for k in tasks[f"build:{spec.id}"].after if k.startswith("allocate:")]
        assert tasks[allocate].args[0].prune.ratio == spec.prune.ratio


def test_experiment_file_prunes_to_a_measured_budget(tmp_path: Path) -> None:
    target = tmp_path / "ort-only.yaml"
    target.write_text("description: ONNX Runtime only\nkind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    workdir = tmp_path / "runs"
    path = default_with(
        tmp_path, name="latency", training={"epochs": 2, "batch_size": 128},
        pruning={"criteria": ["l1"], "ratios": [0.3], "schedules": ["while_training"], "prune_epochs": [0, 1],
                 "allocation": ["latency"],
                 "allocation_kwargs": {"latency": {"target": str(target), "rounds": 1, "min_channels": 8}}},
        quantization={"precisions": ["fp32"]}, targets=[str(target)],
        measurement={"min_iters": 20, "min_time_s": 0.02, "warmup_iters": 3, "precision": None},
        run={"workdir": str(workdir)}, report={"dir": str(tmp_path / "report")},
    )
    outcome = run_experiment(load_experiment(path), render=False)
    assert outcome.failed == []
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id).set_index("kind")
    base, pruned = df.loc["baseline"], df.loc["structured"]
    record = pruned["facts"]["allocation"]
    assert record["budget_ms"] == pytest.approx(0.7 * record["unpruned_p50_ms"])
    # the allocation's own check: the chosen widths measured next to the unpruned model meet the budget, or the
    # record says why not
    assert record["met"] == (record["latency_ratio"] <= 0.7 + 1e-9)
    assert record["met"] or record["why_not"]
    assert {k: v for k, v in pruned["facts"]["filters"].items() if k in record["keep"]} == record["keep"]
    assert min(record["keep"].values()) >= 8 and pruned["macs"] < base["macs"]
    assert pruned["accuracy"] > 0.3  # the pruned artifact still classifies (two epochs of training)
    # the search ran on the latency model a run predicts with: ONNX Runtime's one-layer p50s and its chains
    assert record["entries"] == ONE_LAYER_P50
    tables = [json.loads((workdir / "latency" / f"ort-only--{name}.json").read_text())
              for name in ("onnxruntime", "onnxruntime-chain")]
    assert {table["header"]["target"] for table in tables} == {"ort-only"}
    assert sum(len(table["entries"]) for table in tables) == record["table_entries_measured"]


def test_run_summary_lists_missed_budgets_once() -> None:
    import pandas as pd

    from edgebench.report.run_notes import _allocations

    missed = lb.LatencyRecord(
        allocation="latency", target="local-cpu", backend="onnxruntime", context={}, budget_ms=0.02,
        budget_from="budget_ms", unpruned_p50_ms=0.04, latency_ratio=0.75, p50_ms=0.03, met=False,
        final_pairs_ms=[(0.03, 0.04)], estimated_ms=0.02, channel_multiple=1, keep={"0": 4}, original={"0": 8},
        conv_linear_macs_kept=0.5, rounds=[], why_not="out of reach: with every group at 4 channels ...",
    ).model_dump(mode="json")
    met = {**missed, "met": True, "why_not": None}
    df = pd.DataFrame({"facts": [{"allocation": missed}, {"allocation": missed}, {"allocation": met}, None]})
    lines = list(map(str, _allocations(df)))
    assert len(lines) == 1 and "latency budget missed: 0.0300 ms > 0.0200 ms" in lines[0] and "out of reach" in lines[0]


def test_on_openvino_the_search_estimates_with_the_latency_model_runs_predict_with(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from edgebench.prune.allocation.latency.predict import TargetLatencyModel

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()

    example = torch.randn(1, 3, 16, 16)
    allocation = create_allocation("latency", target="local-openvino", rounds=1, min_channels=8)
    allocation.begin(PruneSpec(criterion="l1", ratio=0.3, allocation="latency"), tmp_path)
    prune_model(net(), create_criterion("l1"), 0.3, example, allocation=allocation)
    record = allocation.record()
    assert record.backend == "openvino" and record.entries == OWN_TIME
    # the estimate the search kept is the run's latency model's prediction for the chosen widths: the same tables
    # (read back from the files the search wrote, nothing measured again) and the same calibration
    latency_model = TargetLatencyModel("local-openvino", "openvino", tmp_path / "latency")
    layers = model_layers(net(), example)
    estimate = latency_model.estimator([layer.shape for layer in layers], record.unpruned_p50_ms)
    assert estimate_ms(layers, record.keep, estimate) == pytest.approx(record.estimated_ms)
    assert latency_model.measured == 0 and record.table_entries_measured > 0



def test_the_channel_blocking_is_read_on_an_ungrouped_conv_when_the_widest_is_grouped(tmp_path: Path) -> None:
    """The blocking probe timed the widest conv (grouped) at every width of its top span: 'Output channels M is not
    divisible by group' inside ONNX Runtime, and the latency allocation failed."""
    torch.manual_seed(0)
    net = GroupedBlock().eval()
    allocation = create_allocation("latency", rounds=1)
    allocation.begin(PruneSpec(criterion="l1", ratio=0.5, allocation="latency"), tmp_path)
    prune_model(net, create_criterion("l1"), 0.5, torch.randn(1, 3, 16, 16), allocation=allocation)
    assert net.g.out_channels % net.g.groups == 0 and net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
