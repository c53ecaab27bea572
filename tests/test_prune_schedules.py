"""Every schedule reaches the requested ratio; training compute is accounted as the schedule ran it."""

from __future__ import annotations

import re

import pytest
import torch

from edgebench.data import load_dataset
from edgebench.models.cost import count_macs
from edgebench.prune import build_fp32_model, default_prune_epochs
from edgebench.train import evaluate
from edgebench.variants import PruneSpec, TrainSpec, VariantSpec

TRAIN = TrainSpec(epochs=3, batch_size=128)
HALF = {"0.0": 8, "1.0": 16, "3.0": 32}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def baseline(digits):
    return build_fp32_model(VariantSpec(model="digits_cnn", dataset="digits", train=TRAIN), digits)


def _spec(**prune: object) -> VariantSpec:
    return VariantSpec(model="digits_cnn", dataset="digits", train=TRAIN, prune=PruneSpec(**prune))


def test_default_ramp_prunes_at_quarter_half_three_quarters() -> None:
    assert default_prune_epochs(8) == (1, 3, 5)
    assert default_prune_epochs(4) == (0, 1, 2)
    assert default_prune_epochs(1) == (0,)


def test_baseline_learns(baseline, digits) -> None:
    assert baseline.filters == {"0.0": 16, "1.0": 32, "3.0": 64}
    assert evaluate(baseline.model, digits.x_test, digits.y_test) > 0.8
    assert baseline.training_macs == 3 * 3 * baseline.macs * len(digits.x_train)


def test_while_training_ramps_and_saves_compute(baseline, digits) -> None:
    built = build_fp32_model(_spec(criterion="l1", ratio=0.5, prune_epochs=(0, 1)), digits)
    assert built.filters == HALF
    ramp = [h["macs"] for h in built.history]
    assert ramp[0] == baseline.macs and ramp[0] > ramp[1] > ramp[2] == built.macs
    assert [h.get("pruned_ratio") for h in built.history] == [0.25, 0.5, None]
    assert built.training_macs == 3 * len(digits.x_train) * sum(ramp)
    assert built.training_macs < baseline.training_macs
    assert built.val_accuracy > 0.5


def test_oneshot_finetune_reuses_baseline_without_mutating_it(baseline, digits) -> None:
    weight = baseline.model[0][0].weight.detach().clone()
    built = build_fp32_model(_spec(criterion="l1", ratio=0.5, schedule="oneshot_finetune", finetune_epochs=1),
                             digits, baseline=baseline)
    assert built.filters == HALF and baseline.filters["0.0"] == 16
    assert torch.equal(baseline.model[0][0].weight, weight)
    assert built.training_macs == baseline.training_macs + 3 * built.macs * len(digits.x_train)
    assert built.val_accuracy > 0.5


def test_iterative_steps_reach_target(baseline, digits) -> None:
    built = build_fp32_model(
        _spec(criterion="taylor_bn", ratio=0.75, schedule="iterative", steps=3, finetune_epochs=1), digits, baseline
    )
    assert built.filters == {"0.0": 4, "1.0": 8, "3.0": 16}
    assert [h["pruned_ratio"] for h in built.history[-3:]] == [0.25, 0.5, 0.75]
    step_macs = [h["macs"] for h in built.history[-3:]]
    assert step_macs[0] > step_macs[1] > step_macs[2] == built.macs


def test_scratch_trains_pruned_architecture_with_full_budget(baseline, digits) -> None:
    built = build_fp32_model(_spec(criterion="l1", ratio=0.5, schedule="scratch"), digits, baseline)
    assert built.filters == HALF
    assert built.training_macs == 3 * 3 * built.macs * len(digits.x_train)
    assert len(built.history) == TRAIN.epochs


def test_bn_scale_trains_its_own_sparse_baseline(baseline, digits) -> None:
    built = build_fp32_model(
        _spec(criterion="bn_scale", ratio=0.5, schedule="oneshot_finetune", criterion_kwargs={"lam": 1e-2}),
        digits, baseline,
    )
    assert built.filters == HALF
    gammas = built.model[0][1].weight.detach().abs()
    # the L1 penalty pulled the surviving BN scales well below the unpenalised baseline's
    assert float(gammas.mean()) < float(baseline.model[0][1].weight.detach().abs().mean())


def test_macs_unit_while_training(baseline, digits) -> None:
    built = build_fp32_model(_spec(criterion="random", ratio=0.5, unit="macs", prune_epochs=(1,)), digits)
    assert 0.4 <= built.macs / baseline.macs <= 0.5
    assert built.macs == count_macs(built.model, digits.input_shape)


def test_scratch_b_trains_for_the_baselines_compute(baseline, digits) -> None:
    """Liu et al. 2019's Scratch-B: the pruned architecture gets the large model's training computation, i.e.
    epochs x MACs_large / MACs_small epochs (here the 50 % filter cut leaves about a quarter of the MACs)."""
    built = build_fp32_model(_spec(criterion="l1", ratio=0.5, schedule="scratch_b"), digits, baseline)
    assert built.filters == HALF
    epochs = round(TRAIN.epochs * baseline.macs / built.macs)
    assert epochs > TRAIN.epochs and len(built.history) == epochs
    assert built.training_macs == 3 * epochs * built.macs * len(digits.x_train)
    assert abs(built.training_macs - baseline.training_macs) <= 3 * built.macs * len(digits.x_train) / 2


def test_schedules_are_registered_plugins_and_plan_sets_only_what_each_reads(tmp_path) -> None:
    from edgebench.config import load_experiment
    from edgebench.plan import plan_fp32_variants
    from edgebench.prune import SCHEDULES
    from tests.experiment_files import default_with

    assert SCHEDULES.names() == ["iterative", "oneshot_finetune", "scratch", "scratch_b", "while_training"]
    exp = load_experiment(default_with(tmp_path, pruning={
        "criteria": ["l1"], "ratios": [0.5], "schedules": SCHEDULES.names(), "scope": "layer",
        "prune_epochs": [1], "finetune_epochs": 2, "steps": 4}))
    specs = {s.prune.schedule: s.prune for s in plan_fp32_variants(exp)[1:]}
    assert (specs["while_training"].prune_epochs, specs["while_training"].finetune_epochs) == ((1,), 0)
    assert (specs["iterative"].steps, specs["iterative"].finetune_epochs) == (4, 2)
    assert (specs["oneshot_finetune"].steps, specs["oneshot_finetune"].finetune_epochs) == (1, 2)
    assert specs["scratch_b"].model_dump() == {**specs["scratch"].model_dump(), "schedule": "scratch_b"}
    from edgebench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pruning.schedules: unknown value 'scratch_c' \(did you mean 'scratch_b'\?\); allowed: iterative"):
        load_experiment(default_with(tmp_path, pruning={"schedules": ["scratch_c"]}))


def test_each_criterion_runs_with_its_papers_allocation_by_default(tmp_path) -> None:
    """No scope and no allocation: every criterion gets its paper's allocation; ``scope: layer`` keeps uniform
    (and the ids of variants planned before allocations existed); ``paper`` next to an allocation it resolves to
    plans that variant once."""
    from edgebench.config import load_experiment
    from edgebench.plan import plan_fp32_variants
    from tests.experiment_files import default_with

    criteria = ["l1", "random", "bn_scale", "sosp_h", "thinet"]
    paper = load_experiment(default_with(tmp_path, pruning={"criteria": criteria, "ratios": [0.5]}))
    labels = [s.label for s in plan_fp32_variants(paper)[1:]]
    assert labels == ["l1-0.5-while_training-sensitivity/fp32", "random-0.5-while_training/fp32",
                      "bn_scale-0.5-while_training-global_raw/fp32", "sosp_h-0.5-while_training-global_raw/fp32",
                      "thinet-0.5-while_training/fp32"]
    both = load_experiment(default_with(tmp_path, targets=["local-cpu"], pruning={
        "criteria": ["random"], "ratios": [0.5], "allocation": ["paper", "uniform"]}))
    assert [s.label for s in plan_fp32_variants(both)[1:]] == ["random-0.5-while_training/fp32"]
    kwargs = load_experiment(default_with(tmp_path, targets=["local-cpu"], pruning={
        "criteria": ["bn_scale"], "ratios": [0.5], "allocation_kwargs": {"global_raw": {"min_channels": 2}}}))
    assert plan_fp32_variants(kwargs)[1].prune.allocation_kwargs == {"min_channels": 2}


@pytest.mark.parametrize(("returned", "named"), [(None, "returned None"), (([], 0, 0.5), "returned a tuple (([], 0, 0.5))")])
def test_a_schedule_returning_no_schedule_result_is_named(baseline, digits, monkeypatch, returned, named) -> None:
    """A plug-in schedule whose run() returns something else failed with an AttributeError naming neither."""
    from edgebench.prune import SCHEDULES
    from edgebench.prune.schedules.base import Schedule

    class Careless(Schedule):
        def run(self, *args, **kwargs):
            return returned

    monkeypatch.setitem(SCHEDULES._items, "team_careless", Careless)
    with pytest.raises(TypeError, match=r"^schedule 'team_careless' \(class Careless\) " + re.escape(named)
                       + r" from run\(\); run\(\) must return a ScheduleResult"):
        build_fp32_model(_spec(criterion="l1", ratio=0.5, schedule="team_careless"), digits, baseline)


def test_history_records_the_filters_removed_beside_the_nominal_ratio() -> None:
    """Widths 6/10/14 at 0.25: (1 - 0.25) x width = 4.5, 7.5, 10.5, ties keeping the larger width: 5/8/11, so 6 of
    the 30 filters go - 20 %, which the history records beside the nominal 0.25 (it said 25 % removed)."""
    from prune_nets import chain_net

    from edgebench.data import DatasetSplits
    from edgebench.prune import SCHEDULES, create_criterion

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 1, 8, 8, generator=g).numpy(), torch.randint(0, 3, (192,), generator=g).numpy()
    splits = DatasetSplits("syn", 3, (1, 8, 8), x[:128], y[:128], x[128:160], y[128:160], x[160:], y[160:])
    spec = PruneSpec(criterion="l1", ratio=0.25, schedule="while_training", prune_epochs=(0,))
    result = SCHEDULES.get("while_training")().run(chain_net((6, 10, 14)), splits, TrainSpec(epochs=2, batch_size=64),
                                                   create_criterion("l1"), spec)
    step = result.history[0]
    assert step["pruned_ratio"] == 0.25 and step["filters_removed"] == pytest.approx(6 / 30)


def test_history_records_the_share_of_all_conv_filters_removed_with_those_no_group_cuts() -> None:
    """CBAM's spatial attention: c1's 16 filters are tied to sa's one channel, which is never cut; at 0.5, c2
    loses 16 of 32, so 16 of the model's 16 + 1 + 32 = 49 conv filters go (it recorded 16 / 34: c1 as one filter)."""
    from test_prune_exact import SpatialAttention

    from edgebench.data import DatasetSplits
    from edgebench.models.cost import conv_filters
    from edgebench.prune import SCHEDULES, create_criterion

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 3, 8, 8, generator=g).numpy(), torch.randint(0, 5, (192,), generator=g).numpy()
    splits = DatasetSplits("syn", 5, (3, 8, 8), x[:128], y[:128], x[128:160], y[128:160], x[160:], y[160:])
    spec = PruneSpec(criterion="l1", ratio=0.5, schedule="while_training", prune_epochs=(0,))
    model = SpatialAttention()
    result = SCHEDULES.get("while_training")().run(model, splits, TrainSpec(epochs=2, batch_size=64),
                                                   create_criterion("l1"), spec)
    assert conv_filters(model) == {"c1": 16, "sa": 1, "c2": 16}
    assert result.history[0]["pruned_ratio"] == 0.5 and result.history[0]["filters_removed"] == pytest.approx(16 / 49)
