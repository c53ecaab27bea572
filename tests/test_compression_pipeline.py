"""Sparse, low-rank and allocation variants through the same pipeline: content-addressed ids (unchanged for
every variant that existed before), validated experiment sections, and an end-to-end run whose store and
report carry non-zero parameters, compressed sizes and the comparison section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgebench.config import DEFAULT_EXPERIMENT, load_experiment
from edgebench.errors import ConfigError
from edgebench.pipeline import run_experiment
from edgebench.plan import plan_fp32_variants
from edgebench.store import Store
from edgebench.variants import LowRankSpec, SparseSpec, VariantSpec
from tests.experiment_files import default_with

#: the default experiment's hash: sections added later (sparse / low-rank / allocation / calibrator / executor)
#: leave it alone, so an interrupted run stored before them still resumes. It moved once on purpose, when the
#: default measurement became an adaptive window (issue 22; a61ab6d7ad47 before): a run timed with fixed windows
#: is not resumed under the new rule, which would mix two timing rules in one run. Variant ids are pinned in
#: test_variant_ids.py and did not move.
PUBLISHED_EXPERIMENT_HASH = "3e891b0b9ab4"


def test_existing_experiment_hash_does_not_change() -> None:
    assert load_experiment(None).hash == PUBLISHED_EXPERIMENT_HASH


def test_uniform_and_global_allocations_keep_the_scope_ids(tmp_path: Path) -> None:
    pruning = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())["pruning"]
    by_scope = {s: plan_fp32_variants(load_experiment(default_with(tmp_path, pruning={**pruning, "scope": s})))
                for s in ("layer", "global")}
    both = load_experiment(default_with(tmp_path, pruning={**pruning, "allocation": ["uniform", "global"]}))
    ids = [v.id for v in plan_fp32_variants(both)]
    assert ids == [by_scope["layer"][0].id] + [v.id for v in by_scope["layer"][1:] + by_scope["global"][1:]]


def test_only_builds_that_start_from_the_baseline_wait_for_it(tmp_path: Path) -> None:
    """The sweep decided "starts from the baseline" on its own (every kind but while_training pruning), so low-rank
    and from-scratch sparse builds (SNIP, RigL) waited for the baseline's training and loaded it for nothing; it
    now asks each schedule and sparse method (``from_baseline``), as the build does."""
    from edgebench.sweep import sweep_tasks

    exp = load_experiment(default_with(
        tmp_path, pruning={"criteria": ["l1"], "ratios": [0.5], "schedules": ["while_training", "oneshot_finetune"]},
        sparse={"methods": ["magnitude", "snip", "rigl"], "sparsities": [0.5]}, lowrank={"rank_ratios": [0.5]},
        quantization={"precisions": ["fp32"]}))
    specs = plan_fp32_variants(exp)
    base = next(s for s in specs if s.kind == "baseline")
    tasks = {t.key: t for t in sweep_tasks(exp, specs, [], {}, tmp_path, tmp_path / "eval.npz", tmp_path / "c.npz")}
    waits = {s.label: f"build:{base.id}" in tasks[f"build:{s.id}"].after for s in specs if s is not base}
    assert waits == {"l1-0.5-while_training-sensitivity/fp32": False, "l1-0.5-oneshot_finetune-sensitivity/fp32": True,
                     "magnitude-0.5-sparse/fp32": True, "snip-0.5-sparse/fp32": False, "rigl-0.5-sparse/fp32": False,
                     "lrpet-r0.5/fp32": False}


def test_new_kinds_get_their_own_ids_lineage_and_labels() -> None:
    base = VariantSpec(model="digits_cnn", dataset="digits")
    sparse = base.model_copy(update={"sparse": SparseSpec(method="rigl", sparsity=0.9)})
    lowrank = base.model_copy(update={"lowrank": LowRankSpec(rank_ratio=0.25)})
    assert len({base.id, sparse.id, lowrank.id}) == 3
    assert sparse.parent_id == lowrank.parent_id == base.id
    assert (sparse.label, lowrank.label, sparse.kind, lowrank.kind) == (
        "rigl-0.9-sparse/fp32", "lrpet-r0.25/fp32", "sparse", "lowrank")
    with pytest.raises(ValueError, match="not several at once"):
        VariantSpec(model="digits_cnn", dataset="digits", sparse=SparseSpec(method="snip", sparsity=0.5),
                    lowrank=LowRankSpec(rank_ratio=0.5))


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"sparse": {"methods": ["magnitud"]}}, "sparse.methods: unknown value 'magnitud' (did you mean 'magnitude'?); allowed: magnitude"),
        ({"sparse": {"sparsities": [1.0]}}, "sparsities must be fractions strictly between 0 and 1"),
        ({"sparse": {"methods": ["rigl"], "method_kwargs": {"rigl": {"alpah": 0.3}}}}, "unknown option 'alpah'"),
        ({"sparse": {"methods": ["rigl"], "method_kwargs": {"snip": {}}}}, "not one of sparse.methods (rigl)"),
        ({"sparse": {"method": ["rigl"]}}, "sparse.method: unknown field"),
        ({"lowrank": {"rank_ratios": [0]}}, "rank_ratios must be fractions"),
        ({"lowrank": {"energy_transfer": "maybe"}}, "lowrank.energy_transfer"),
        ({"pruning": {"allocation": "gradient_bond"}}, "pruning.allocation: unknown value 'gradient_bond'"),
        ({"pruning": {"allocation": ["gradient_bound"], "allocation_kwargs": {"gradient_bound": {"epsilon": 1}}}},
         "unknown option 'epsilon' (did you mean 'eps'?); allowed: eps"),
        ({"pruning": {"allocation": "global", "scope": "global"}}, "set either scope or allocation"),
    ],
)
def test_bad_sections_fail_with_one_line(tmp_path: Path, sections: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment(default_with(tmp_path, **sections))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("compress")
    target = tmp / "ort-only.yaml"  # one backend keeps the run short; the others share the export/measure path
    target.write_text("description: ONNX Runtime only\nkind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    path = default_with(
        tmp, name="compress", training={"epochs": 2, "batch_size": 128},
        pruning={"criteria": []},
        sparse={"methods": ["magnitude"], "sparsities": [0.8],
                "method_kwargs": {"magnitude": {"steps": 1, "finetune_epochs": 1}}},
        lowrank={"rank_ratios": [0.5]},
        quantization={"precisions": ["fp32"]}, targets=[str(target)],
        measurement={"min_iters": 20, "min_time_s": 0.02, "warmup_iters": 3, "precision": None},
        run={"workdir": str(tmp / "runs")}, report={"dir": str(tmp / "report")},
    )
    outcome = run_experiment(load_experiment(path))
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id)
    return outcome, df


def test_sparse_and_lowrank_variants_measured_and_stored(compressed_run) -> None:
    outcome, df = compressed_run
    assert outcome.failed == [] and set(df["status"]) == {"ok"}
    assert sorted(set(df["kind"])) == ["baseline", "lowrank", "sparse"]
    assert (df["max_abs_diff"] < 1e-4).all()  # the exported zeros and factors compute what PyTorch computes
    ort = df.set_index("kind")
    base, sparse, lowrank = ort.loc["baseline"], ort.loc["sparse"], ort.loc["lowrank"]
    # sparsity: same dense shapes and MACs, 80 % of conv/linear weights zero, ZIP size far below the dense one
    assert sparse["params"] == base["params"] and sparse["macs"] == base["macs"]
    assert sparse["nonzero_params"] < 0.25 * base["nonzero_params"]
    # Han et al.'s per-layer q x std thresholds spread the 80 % unevenly over the layers, so the MACs of the
    # non-zero weights are near 20 % of the dense MACs, not exactly at it
    assert sparse["nonzero_macs"] == pytest.approx(0.2 * base["macs"], rel=0.1)
    assert sparse["size_bytes"] == pytest.approx(base["size_bytes"], rel=0.01)
    assert sparse["compressed_size_bytes"] < 0.5 * base["compressed_size_bytes"]
    # low rank: genuinely fewer weights and MACs in the dense artifact
    assert lowrank["macs"] < 0.7 * base["macs"] and lowrank["size_bytes"] < 0.8 * base["size_bytes"]
    assert lowrank["accuracy"] > 0.5


def test_report_compares_the_kinds(compressed_run) -> None:
    outcome, df = compressed_run
    html = Path(outcome.report_path).read_text()
    assert "Filter pruning, sparsity and low rank at equal accuracy" in html
    assert "Sparse variants measured here: 1 (80% of the weights zero)" in html
    for label in set(df["label"]):
        assert label in html
