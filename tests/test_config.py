"""Experiment and target files: the default loads; wrong fields fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.config import DEFAULT_EXPERIMENT, check_loaded, load_experiment
from edgebench.errors import ConfigError
from edgebench.plan import plan_fp32_variants
from edgebench.targets import get_target, load_target_file


def test_default_experiment_plans_pruning_while_training_grid():
    exp = load_experiment()
    specs = plan_fp32_variants(exp)
    pruned = [s for s in specs if s.prune is not None]
    assert specs[0].prune is None  # the baseline comes first
    assert {s.prune.criterion for s in pruned} == {"l1", "mean_activation", "random"}
    assert sorted({s.prune.ratio for s in pruned}) == [0.25, 0.5, 0.8]
    assert {s.prune.schedule for s in pruned} == {"while_training"}
    assert set(exp.quantization.precisions) == {"fp32", "int8", "fixed"}
    assert [t.name for t in exp.targets] == ["local-cpu", "local-litert", "local-hls4ml-csim"]
    hls = exp.targets[2]
    assert hls.criteria == ["l1"] and exp.measurement_for(hls).min_iters == 20
    assert len({s.id for s in specs}) == len(specs) == 10


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,expected",
    [
        ("trainig: {epochs: 3}\n", "trainig: unknown field"),
        ("training: {epoch: 1}\n", "training.epoch: unknown field (did you mean 'epochs'?); allowed: epochs, batch_size, lr"),
        ("targets:\n  - {name: local-cpu, critera: [l1]}\n",
         "targets.0.critera: unknown field (did you mean 'criteria'?); allowed: name, criteria, ratios"),
        ("training: {epochs: 0}\n", "training.epochs: 0 would measure untrained weights; give model.weights"),
        ("training: {epochs: -1}\n", "training.epochs: Input should be greater than or equal to 0"),
        ("pruning: {ratios: [0.5, 1.5]}\n", "ratios must be fractions strictly between 0 and 1"),
        ("quantization: {precisions: [int4]}\n", "quantization.precisions.0: Input should be 'fp32'"),
        ("pruning: {criteria: [l2]}\n", "pruning.criteria: unknown value 'l2'; allowed:"),
        ("pruning: {criteria: [taylor]}\n", "pruning.criteria: 'taylor' was split into the methods the papers define: "
         "taylor_weight"),
        ("model: {name: resnet9000}\n", "model.name: unknown value 'resnet9000'"),
        # a misspelt name gets the closest allowed one, also where the typo extends or cuts a name
        ("pruning: {criteria: [l1_norm]}\n", "pruning.criteria: unknown value 'l1_norm' (did you mean 'l1'?); allowed:"),
        ("model: {name: resnet56}\n", "model.name: unknown value 'resnet56' (did you mean 'resnet56_cifar'?)"),
        ("quantization: {precisions: [int9]}\n", "or 'fixed' (got 'int9') (did you mean 'int8'?)"),
        ("model: resnet56_cifar\n", "model: Input should be a valid dictionary or instance of ModelConfig (got "
         "'resnet56_cifar'); it is a block of fields: write model: {name: resnet56_cifar}"),
        ("- just a list\n", "the top level must be a mapping"),
        ("name: ../../escape\n", "name: '../../escape' is not a plain name; it names the directories runs/<name>/"),
    ],
)
def test_bad_experiment_field_names_field_and_allowed_values(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message


def test_missing_experiment_file(tmp_path):
    with pytest.raises(ConfigError, match="experiment file not found"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=rf"^{tmp_path} is a directory; give the experiment file in it \(a .yaml file\)$"):
        load_experiment(tmp_path)


def test_default_yaml_is_shipped_and_complete():
    text = DEFAULT_EXPERIMENT.read_text()
    for section in ("dataset", "model", "training", "pruning", "quantization", "targets", "measurement", "report"):
        assert f"\n{section}:" in text


def test_local_cpu_target_and_bad_target_field(tmp_path):
    target = get_target("local-cpu")
    assert target.backends == ["torch", "onnxruntime"] and target.threads == 1
    bad = tmp_path / "mydev.yaml"
    bad.write_text("backends: [onnxruntime]\nthreds: 4\n")
    with pytest.raises(ConfigError, match=r"mydev.yaml: threds: unknown field"):
        load_target_file(bad)
    with pytest.raises(ConfigError, match="unknown target 'nope'; available: .*local-cpu"):
        get_target("nope")
    with pytest.raises(ConfigError, match=r"exp.yaml: targets.1: unknown target 'local-cpuu' \(did you mean 'local-cpu'\?\); available"):
        load_experiment(_write(tmp_path, "targets: [local-cpu, local-cpuu]\n"))  # at load, naming the file


def test_target_selection_filters_and_overrides(tmp_path):
    exp = load_experiment(_write(tmp_path, (
        "targets:\n  - local-cpu\n  - {name: local-hls4ml-csim, criteria: [l1], ratios: [0.5],"
        " measurement: {min_iters: 5}}\n")))
    everything, hls = exp.targets
    specs = plan_fp32_variants(exp)
    assert all(everything.includes(s) for s in specs)
    chosen = [s.label for s in specs if hls.includes(s)]
    # no scope or allocation set: l1 runs with its paper's allocation (Li et al.'s sensitivity analysis)
    assert chosen == ["baseline/fp32", "l1-0.5-while_training-sensitivity/fp32"]
    assert exp.measurement_for(hls).min_iters == 5 and exp.measurement_for(everything).min_iters == 50


def test_a_targets_ratios_select_sparsities_and_rank_ratios_too(tmp_path):
    """README's ``{name: ..., methods: [magnitude], ratios: [0.9]}``: 0.9 is a sparsity, not a pruning ratio."""
    exp = load_experiment(_write(tmp_path, (
        "pruning: {ratios: [0.5]}\nsparse: {methods: [magnitude], sparsities: [0.9]}\n"
        "targets:\n  - local-cpu\n  - {name: local-litert, methods: [magnitude], ratios: [0.9]}\n")))
    chosen = [s.label for s in plan_fp32_variants(exp) if exp.targets[1].includes(s)]
    assert chosen == ["baseline/fp32", "magnitude-0.9-sparse/fp32"], chosen
    with pytest.raises(ConfigError, match=r"targets.1.ratios: 0.7 not in pruning.ratios or sparse.sparsities "
                                          r"\(0.5, 0.9\), so target 'local-litert' would measure nothing for it"):
        load_experiment(_write(tmp_path, (
            "pruning: {ratios: [0.5]}\nsparse: {methods: [magnitude], sparsities: [0.9]}\n"
            "targets:\n  - local-cpu\n  - {name: local-litert, ratios: [0.7]}\n")))


def test_bad_target_measurement_override(tmp_path):
    with pytest.raises(ConfigError, match=r"targets.0.measurement: min_itrs: unknown field \(did you mean 'min_iters'\?\); "
                                          r"allowed: scenario, batch_size"):
        load_experiment(_write(tmp_path, "targets:\n  - {name: local-cpu, measurement: {min_itrs: 5}}\n"))


def test_a_batch_is_timed_offline_and_a_target_may_choose_single_stream(tmp_path):
    """batch_size 8 under single_stream would silently time one image a call; a target that picks single_stream
    out of an offline experiment knowingly times one image."""
    with pytest.raises(ConfigError, match=r"targets.1 \(local-litert\): measurement.batch_size is 8, but the "
                                          r"scenario is single_stream"):
        load_experiment(_write(tmp_path, "targets:\n  - local-cpu\n"
                                         "  - {name: local-litert, measurement: {batch_size: 8}}\n"))
    exp = load_experiment(_write(tmp_path, (
        "measurement: {scenario: offline, batch_size: 8}\n"
        "targets:\n  - local-cpu\n  - {name: local-litert, measurement: {scenario: single_stream}}\n")))
    assert [exp.measurement_for(t).effective_batch_size for t in exp.targets] == [8, 1]


def test_shipped_cifar_experiment_validates_and_names_missing_data(tmp_path):
    from edgebench.config import DEFAULT_EXPERIMENT
    from edgebench.data import load_dataset
    from edgebench.errors import DatasetError

    exp = load_experiment(DEFAULT_EXPERIMENT.parent / "cifar10_vgg16_pruning_while_training.yaml")
    specs = plan_fp32_variants(exp)
    assert len(specs) == 1 + 3 * 3 * 2 and exp.model.name == "vgg16_cifar"
    with pytest.raises(DatasetError, match="cifar"):
        load_dataset("cifar10", path=str(tmp_path / "no-cifar-here"))


def test_jetson_plan_builds_engines_on_the_device_from_onnx():
    from edgebench.config import TargetSelection
    from edgebench.plan import plan_target_jobs

    exp = load_experiment()
    exp = exp.model_copy(update={"quantization": exp.quantization.model_copy(update={"precisions": ["fp32", "fp16", "int8"]})})
    specs = plan_fp32_variants(exp)
    jobs, unsupported = plan_target_jobs(exp, specs, TargetSelection(name="jetson-orin-nano"),
                                         get_target("jetson-orin-nano"))
    trt = [j for j in jobs if j.backend == "tensorrt"]
    assert {j.artifact_format for j in trt} == {"onnx"} and len(trt) == 3 * len(specs)
    fp16 = [j for j in trt if j.variant.quant.precision == "fp16"]
    assert {j.export_quant.precision for j in fp16} == {"fp32"}  # TensorRT applies fp16 itself
    int8 = [j for j in trt if j.variant.quant.precision == "int8"]
    assert {j.export_quant.precision for j in int8} == {"int8"}  # from the Q/DQ ONNX
    assert len({j.artifact_key for j in jobs}) == len(jobs) - len(specs) * 2  # ORT and TRT share fp32/int8 files
    ort_fp16 = [j for j in jobs if j.backend == "onnxruntime" and j.variant.quant.precision == "fp16"]
    assert {j.export_quant.precision for j in ort_fp16} == {"fp16"} and unsupported == []  # ORT runs the fp16 ONNX


def test_tracking_section_loads_and_leaves_the_experiment_hash(tmp_path: Path) -> None:
    from experiment_files import default_with

    plain = load_experiment(default_with(tmp_path, "plain.yaml"))
    tracked = load_experiment(default_with(tmp_path, "tracked.yaml",
                                           tracking={"mlflow": {"uri": "sqlite:///m.db", "experiment": "edge"}}))
    assert tracked.tracking.mlflow.uri == "sqlite:///m.db" and tracked.tracking.mlflow.experiment == "edge"
    assert plain.tracking.mlflow is None
    assert tracked.hash == plain.hash  # where results are logged does not change what is measured: runs resume
    drawn = load_experiment(default_with(tmp_path, "drawn.yaml", report={"objectives": [["accuracy", "size_bytes"]]},
                                         run={"job_timeout_s": 60}))
    assert drawn.hash == plain.hash  # nor do the report's objectives or the job timeout
    with pytest.raises(ConfigError, match=r"tracking\.mlflow\.url: unknown field"):
        load_experiment(default_with(tmp_path, "bad.yaml", tracking={"mlflow": {"uri": "x", "url": "y"}}))


def test_prune_epochs_are_not_checked_when_nothing_is_pruned(tmp_path):
    """default.yaml copied with criteria: [] and one epoch: its prune_epochs [2, 4, 6] prune nothing, so no error."""
    exp = load_experiment(_write(tmp_path, "training: {epochs: 1}\npruning: {criteria: [], prune_epochs: [2, 4, 6]}\n"))
    assert exp.pruning.criteria == [] and exp.training.epochs == 1
    with pytest.raises(ConfigError, match=r"prune_epochs: \[2, 4, 6\] outside the training run"):
        load_experiment(_write(tmp_path, "training: {epochs: 1}\npruning: {criteria: [l1], prune_epochs: [2, 4, 6]}\n"))


def test_pruning_at_the_last_epoch_is_warned(tmp_path, caplog):
    """A step after the last epoch leaves its filters' removal without recovery training: allowed, but said."""
    with caplog.at_level("WARNING", logger="edgebench.config"):
        load_experiment(_write(tmp_path, "training: {epochs: 8}\npruning: {criteria: [l1], prune_epochs: [2, 4, 6]}\n"))
        assert not caplog.records
        late = load_experiment(_write(tmp_path, "training: {epochs: 7}\npruning: {criteria: [l1], prune_epochs: [2, 4, 6]}\n"))
        check_loaded(late)  # what api.run does with the experiment the CLI loaded: said once, not twice
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'exp.yaml'}: pruning.prune_epochs includes the last epoch (6): filters removed then get no "
        "training after, so those variants lose accuracy a later pruning step would recover; prune earlier or train "
        "longer"]


def _artifact_keys() -> dict[str, set[str]]:
    """The default experiment's artifact keys of two variants on local-cpu and local-litert, by format."""
    from edgebench.config import TargetSelection
    from edgebench.plan import plan_target_jobs

    exp = load_experiment()
    specs = plan_fp32_variants(exp)[:2]
    out: dict[str, set[str]] = {}
    for name in ("local-cpu", "local-litert"):
        jobs, _ = plan_target_jobs(exp, specs, TargetSelection(name=name), get_target(name))
        for job in jobs:
            out.setdefault(job.artifact_format, set()).add(job.artifact_key)
    return out


def test_an_exporter_revision_moves_its_artifact_keys_and_no_others(monkeypatch):
    """A fix that changes what an exporter writes bumps its revision: a workdir exported before is exported again."""
    from edgebench.runtimes.base import get_exporter

    before = _artifact_keys()
    tflite = type(get_exporter("tflite", {}))
    monkeypatch.setattr(tflite, "revision", tflite.revision + 1)
    after = _artifact_keys()
    assert after["onnx"] == before["onnx"] and after["torch"] == before["torch"]
    assert after["tflite"].isdisjoint(before["tflite"]) and len(after["tflite"]) == len(before["tflite"])


def test_an_upgraded_converter_moves_its_exporters_artifact_keys_and_no_others(monkeypatch):
    """A cached int8 ONNX written by an older ONNX Runtime quantizer is exported again after ``pip -U onnxruntime``,
    not measured as if the new one had written it; TFLite files, which ONNX Runtime does not write, keep theirs."""
    import importlib.metadata

    from edgebench.components import installed_versions

    installed_versions.cache_clear()
    before = _artifact_keys()
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "99.0" if dist == "onnxruntime" else real(dist))
    installed_versions.cache_clear()
    after = _artifact_keys()
    installed_versions.cache_clear()
    assert after["tflite"] == before["tflite"] and after["torch"] == before["torch"]
    assert after["onnx"].isdisjoint(before["onnx"]) and len(after["onnx"]) == len(before["onnx"])


def test_a_surrogate_escape_in_yaml_is_one_error_naming_the_field(tmp_path):
    """YAML decodes "\\ud83d\\ude80" to two lone surrogates (not the rocket): refused at load, naming the field,
    instead of a UnicodeEncodeError wherever the text is first printed or stored."""
    path = _write(tmp_path, 'name: "run-\\ud83d\\ude80"\n')
    with pytest.raises(ConfigError, match=r"exp\.yaml: name: a UTF-16 surrogate escape \(\\ud83d\) is not a "
                                          r"character; write the character itself, or a \\U0001F680-style escape"):
        load_experiment(path)
    assert load_experiment(_write(tmp_path, 'name: "run-\\U0001F680"\n')).name == "run-\U0001F680"


def test_a_qat_start_epoch_waits_for_pruning_only_where_a_variant_prunes_while_training(tmp_path):
    """Default prune_epochs of 4 epochs are [0, 1, 2]: a QAT start at epoch 2 collides with them when criteria
    prune while training, and not when nothing is pruned."""
    qat = "quantization: {precisions: [fp32, int8], qat: [{weight_bits: 8, activation_bits: 8, start_epoch: 2}]}\n"
    exp = load_experiment(_write(tmp_path, "training: {epochs: 4}\npruning: {criteria: []}\n" + qat))
    assert exp.quantization.qat[0].start_epoch == 2
    with pytest.raises(ConfigError, match=r"start_epoch: 2 is not after the last pruning step \(epoch 2\)"):
        load_experiment(_write(tmp_path, "training: {epochs: 4}\npruning: {criteria: [l1]}\n" + qat))


def test_a_shipped_experiment_is_found_by_name_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    """A wheel install has no checkout: README's edgebench/experiments/qat_digits.yaml was 'not found'."""
    monkeypatch.chdir(tmp_path)
    for name in ("qat_digits", "qat_digits.yaml", "edgebench/experiments/qat_digits.yaml"):
        assert load_experiment(Path(name)).name == load_experiment(DEFAULT_EXPERIMENT.parent / "qat_digits.yaml").name
    with pytest.raises(ConfigError, match="experiment file not found: mine/qat_digits.yaml"):
        load_experiment(Path("mine/qat_digits.yaml"))  # a folder of the user's: not silently the shipped one


def test_a_new_calibration_draw_moves_the_keys_of_calibrated_artifacts_only(monkeypatch):
    """The calibration images changed (spread over the classes): an int8 file calibrated on the old draw is not
    reused, and nothing else is exported again."""
    import edgebench.plan
    from edgebench.config import TargetSelection
    from edgebench.plan import plan_target_jobs

    exp = load_experiment()
    specs = plan_fp32_variants(exp)[:2]

    def keys() -> dict[str, set[str]]:
        jobs, _ = plan_target_jobs(exp, specs, TargetSelection(name="local-cpu"), get_target("local-cpu"))
        out: dict[str, set[str]] = {}
        for job in jobs:
            out.setdefault(job.export_quant.precision, set()).add(job.artifact_key)
        return out

    before = keys()
    monkeypatch.setattr(edgebench.plan, "CALIBRATION_DRAW", edgebench.plan.CALIBRATION_DRAW + 1)
    after = keys()
    assert after["fp32"] == before["fp32"] and after["int8"].isdisjoint(before["int8"])


def test_an_edited_target_file_of_the_users_changes_the_hash_and_the_passed_over_run_is_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """threads 1 -> 2 in the user's target file between an interrupt and the resume: the same run resumed and held
    both settings' measurements (13 rows for a 10-job plan). Now the hash moves, a new run starts, and the run it
    does not resume is named; the targets edgebench ships leave the hash alone (the published one stays)."""
    from experiment_files import default_with
    from store_fixtures import MACHINE

    from edgebench.pipeline import _say_passed_over
    from edgebench.store import Store

    target = tmp_path / "mine.yaml"
    target.write_text("kind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    exp = load_experiment(default_with(tmp_path, targets=[str(target)]))
    before = exp.hash
    target.write_text("kind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 2\n")
    assert exp.hash != before
    shipped = load_experiment(default_with(tmp_path, "shipped.yaml", targets=["local-cpu"]))
    assert "target_files" not in str(shipped.model_dump()) and shipped.hash == load_experiment(
        default_with(tmp_path, "again.yaml", targets=["local-cpu"])).hash
    with Store.open(tmp_path / "r.db") as store:
        # as a run stores it: with the record of its input, which is no field (it was named as the difference)
        old = store.start_run(exp.name, {**exp.model_dump(mode="json"), "input": {"shape": [1, 8, 8]}}, before, MACHINE)
        with caplog.at_level("WARNING", logger="edgebench.pipeline"):
            _say_passed_over(store, exp)
    assert f"unfinished run {old} of '{exp.name}' (0 result(s) stored) is not resumed: the content of the model's " \
           "code or weights, the data or a target file changed since; a new run starts" in caplog.text
    # a field that differs is named (a moved project's absolute paths were one of six reasons listed)
    caplog.clear()
    moved = exp.model_copy(update={"run": exp.run.model_copy(update={"workdir": "/elsewhere/runs"})})
    with Store.open(tmp_path / "r.db") as store, caplog.at_level("WARNING", logger="edgebench.pipeline"):
        _say_passed_over(store, moved)
    assert f"is not resumed: its experiment differs: run.workdir: {exp.run.workdir!r} -> '/elsewhere/runs'" in caplog.text
    # several passed over: the latest named, the others counted in the same line; a long value cut visibly
    caplog.clear()
    with Store.open(tmp_path / "r.db") as store:
        newer = store.start_run(exp.name, {**exp.model_dump(mode="json"), "name": "x" * 80}, "other", MACHINE)
        with caplog.at_level("WARNING", logger="edgebench.pipeline"):
            _say_passed_over(store, exp)
    assert len(caplog.records) == 1 and f"unfinished run {newer} of" in caplog.text and old not in caplog.text
    assert "name: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx …" in caplog.text
    assert "so are 1 older unfinished run(s) of it (`edgebench runs` lists them, `edgebench delete` removes them)" \
        in caplog.text


def test_a_relative_dataset_path_found_only_beside_the_experiment_file_is_named_with_both_fixes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model files are read from the experiment file's folder, dataset paths from the working directory: a data
    file kept beside the experiment and run from elsewhere is the likeliest slip between the two."""
    folder, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "data.npz").write_bytes(b"")
    (folder / "exp.yaml").write_text("dataset: {name: npz, kwargs: {path: data.npz}}\n")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError) as info:
        load_experiment(folder / "exp.yaml")
    assert str(info.value) == (f"{folder / 'exp.yaml'}: dataset.kwargs.path: data.npz is not in the working directory "
                               f"({elsewhere}), where relative dataset paths are read from, but the experiment file's "
                               f"folder has it: write path: {folder / 'data.npz'}, or run edgebench from {folder}")
    # a user's own loader may mean its own thing by "path": not second-guessed
    (folder / "own.yaml").write_text("dataset: {name: 'my_pkg.data:load', kwargs: {path: data.npz}}\n")
    with pytest.raises(ConfigError) as other:
        load_experiment(folder / "own.yaml")
    assert "dataset.kwargs.path" not in str(other.value) and "my_pkg" in str(other.value)
    monkeypatch.chdir(folder)  # run from the experiment's folder: the same file loads
    assert load_experiment(folder / "exp.yaml").dataset.kwargs["path"] == "data.npz"


@pytest.mark.parametrize("pruning", ["", "pruning: {criteria: [l1], ratios: [0.5]}\n"])
def test_measuring_given_weights_names_the_default_pruning_grid_and_how_to_have_none(tmp_path, pruning):
    import torch

    from edgebench.models import create_model

    torch.save(create_model("digits_cnn", num_classes=10, in_channels=1).state_dict(), tmp_path / "w.pt")
    path = _write(tmp_path, f"model: {{name: digits_cnn, weights: {tmp_path / 'w.pt'}}}\ntraining: {{epochs: 0}}\n{pruning}")
    with pytest.raises(ConfigError, match="and training.epochs is 0") as info:
        load_experiment(path)
    assert ("the default pruning grid: the experiment has no pruning: section" in str(info.value)) == (not pruning)
    assert "or set pruning: {criteria: []} for no pruned variants" in str(info.value)
    load_experiment(_write(tmp_path, path.read_text().replace(pruning, "") + "pruning: {criteria: []}\n"))


def test_a_factory_taking_kwargs_takes_any_other_option_and_a_named_one_stays_typed() -> None:
    """A helper's generic factory `build(arch, lib="tv", num_classes=10, in_channels=3, **kw)` was refused
    `aux_logits: false` ("unknown option 'aux_logits'; allowed: arch, lib"), though its signature takes any keyword."""
    from edgebench.options import validate_options

    def build(arch: str, lib: str = "tv", num_classes: int = 10, in_channels: int = 3, **kw: object) -> None: ...

    def strict(arch: str, lib: str = "tv") -> None: ...

    given = {"arch": "googlenet", "aux_logits": False}
    assert validate_options(build, given, "model.kwargs", exclude=("num_classes", "in_channels")) == given
    with pytest.raises(ConfigError, match="model.kwargs: unknown option 'aux_logits'; allowed: arch, lib"):
        validate_options(strict, given, "model.kwargs")
    with pytest.raises(ConfigError, match="model.kwargs: option 'lib'"):  # its own parameters keep their types
        validate_options(build, {"arch": "g", "lib": 3}, "model.kwargs", exclude=("num_classes", "in_channels"))
