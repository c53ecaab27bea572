"""The sweep's task graph on a planned experiment, read directly: which tasks it becomes, of which kind, on which
lane, after which others (the pipeline and the executors only follow this graph)."""

from __future__ import annotations

from pathlib import Path

import yaml
from experiment_files import default_with

from edgebench.config import Experiment, load_experiment
from edgebench.executor.base import HOST, Lane, Task
from edgebench.executor.runners import runner_for
from edgebench.pipeline import RESULT_HANDLERS
from edgebench.plan import plan_fp32_variants, plan_jobs
from edgebench.run_cache import ModelCache
from edgebench.sweep import KINDS, Allocate, BuildVariant, Export, Measure, Predict, Reference, sweep_tasks
from edgebench.targets import get_target


def _board(tmp_path: Path) -> Path:
    """An SSH board that declares its Ray resource, and a tight command timeout."""
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "ssh", "backends": ["onnxruntime"], "ray": {"resources": {"board:pi-a": 1}},
        "ssh": {"host": "127.0.0.1", "command_timeout_s": 100, "connect_timeout_s": 2, "retries": 1},
    }))
    return path


def _sweep(tmp_path: Path, targets: list[str], cached: tuple[str, ...] = (), measurement: dict | None = None,
           side_by_side: list[int] | None = None) -> tuple[Experiment, dict[str, Task]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(default_with(
        tmp_path, pruning={"criteria": ["l1"], "ratios": [0.5], "schedules": ["while_training", "oneshot_finetune"],
                           "prune_epochs": [1], "scope": "layer"},
        quantization={"precisions": ["fp32", "int8"]}, targets=targets, run={"workdir": str(tmp_path / "runs")},
        **({"measurement": measurement} if measurement else {})))
    specs = plan_fp32_variants(exp)
    selected = [(selection, get_target(selection.name)) for selection in exp.targets]
    jobs, _ = plan_jobs(exp, specs, selected)
    runners = {target.name: runner_for(target, exp.run.job_timeout_s) for _, target in selected}
    cache = ModelCache(exp.workdir())
    for spec in specs:  # a resumed run: these variants are in the model cache already
        if spec.label in cached:
            cache.dir.mkdir(parents=True, exist_ok=True)
            cache.model_path(spec).write_bytes(b"")
            cache.facts_path(spec).write_text("{}")
    tasks = sweep_tasks(exp, specs, jobs, runners, exp.workdir(), tmp_path / "eval.npz", tmp_path / "calib.npz",
                        side_by_side=side_by_side)
    by_key = {task.key: task for task in tasks}
    assert len(by_key) == len(tasks)  # keys are unique: shared exports and references are one task each
    return exp, by_key


def _of(tasks: dict[str, Task], context: type) -> list[Task]:
    return [task for task in tasks.values() if isinstance(task.context, context)]


def test_every_task_carries_the_context_of_its_kind_and_the_pipeline_handles_each_kind(tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu"])
    assert {task.kind for task in tasks.values()} == {"build", "export", "reference", "measure"}
    assert all(task.context is not None and task.context.kind == task.kind for task in tasks.values())
    assert all(task.context.describe() for task in tasks.values())
    assert {kind.kind for kind in KINDS} == {"build", "allocate", "predict", "export", "reference", "measure"}
    assert set(RESULT_HANDLERS) == set(KINDS)


def test_the_graph_orders_build_export_reference_measure(tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu"])
    builds = {task.context.spec.label: task for task in _of(tasks, BuildVariant)}
    assert set(builds) == {"baseline/fp32", "l1-0.5-while_training/fp32", "l1-0.5-oneshot_finetune/fp32"}
    baseline = builds["baseline/fp32"]
    assert baseline.after == () and builds["l1-0.5-while_training/fp32"].after == ()  # trains from scratch
    assert builds["l1-0.5-oneshot_finetune/fp32"].after == (baseline.key,)  # fine-tunes the trained baseline

    measures = _of(tasks, Measure)
    # 3 variants x (torch fp32, ORT fp32, ORT int8): torch has no int8 export
    assert len(measures) == 9 and all(task.timed and task.lane == Lane(HOST) for task in measures)
    for task in measures:
        job = task.context.job
        weights = builds[job.variant.weights_spec.label]
        export, reference = (tasks[key] for key in task.after[1:])
        assert task.after[0] == weights.key and isinstance(export.context, Export)
        assert isinstance(reference.context, Reference) and reference.context.spec == job.variant.weights_spec
        assert reference.after == export.after[:1] == (weights.key,) and not export.timed and not reference.timed
        if job.export_quant.precision == "int8":  # and after the fp32 export it quantizes
            assert tasks[export.after[1]].args[0].out_path == export.args[0].fp32_source
    assert len(_of(tasks, Export)) == 9 and len(_of(tasks, Reference)) == 3  # one reference per fp32 weights


def test_an_int8_export_starts_from_the_variants_fp32_file_and_waits_for_the_export_that_writes_it(
        tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu", "local-litert"])
    exports = [task for task in tasks.values() if isinstance(task.context, Export)]
    for fmt in ("onnx", "tflite"):  # both quantize their own fp32 file
        fp32 = {task.args[0].model_path: task for task in exports
                if task.args[0].fmt == fmt and task.args[0].quant.precision == "fp32"}
        int8 = [task for task in exports if task.args[0].fmt == fmt and task.args[0].quant.precision == "int8"]
        assert len(fp32) == len(int8) == 3
        for task in int8:  # the same trained model's fp32 file, not another variant's, written first
            source = fp32[task.args[0].model_path]
            assert task.args[0].fp32_source == source.args[0].out_path
            assert task.after == (*source.after, source.key) and task.continues == source.key
    others = [task for task in exports if task.args[0].quant.precision != "int8"]
    assert others and all(task.args[0].fp32_source is None for task in others)


def test_latency_predictions_are_timed_tasks_that_their_measurements_wait_for(tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu"], measurement={"predict_latency": True})
    predicts = _of(tasks, Predict)
    # the two pruned variants on ORT, fp32 only: not the baseline, not torch's artifact, not int8
    assert sorted((t.context.spec.label, t.context.backend) for t in predicts) == [
        ("l1-0.5-oneshot_finetune/fp32", "onnxruntime"), ("l1-0.5-while_training/fp32", "onnxruntime")]
    assert all(task.timed and task.kind == "predict" for task in predicts)
    for task in _of(tasks, Measure):
        job = task.context.job
        waits = [key for key in task.after if key.startswith("predict:")]
        expected = job.backend == "onnxruntime" and job.variant.quant.precision == "fp32" and job.variant.prune
        assert len(waits) == (1 if expected else 0)
        assert task.args[0].measure.predict_latency is False  # the worker never sees the flag


def test_a_resumed_sweep_makes_tasks_only_for_what_is_missing(tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu"], cached=("baseline/fp32",))
    builds = {task.context.spec.label: task for task in _of(tasks, BuildVariant)}
    assert set(builds) == {"l1-0.5-while_training/fp32", "l1-0.5-oneshot_finetune/fp32"}
    assert builds["l1-0.5-oneshot_finetune/fp32"].after == ()  # its baseline is built already
    baseline_measures = [t for t in _of(tasks, Measure) if t.context.job.variant.weights_spec.label == "baseline/fp32"]
    assert baseline_measures and all(not t.after[0].startswith("build:") for t in baseline_measures)


def test_a_damaged_reference_is_written_again_and_each_sample_count_has_its_own(tmp_path: Path) -> None:
    """A truncated reference/<id>.npz failed its jobs on every run ("the next run writes it again", which it did
    not: only a missing file was written); and a reference of 16 images judged a job asked for 200, since the file
    was keyed on the variant alone."""
    import numpy as np

    from edgebench.run_cache import reference_path

    exp, tasks = _sweep(tmp_path, ["local-cpu"])
    baseline = next(t.context.spec for t in _of(tasks, BuildVariant) if t.context.spec.label == "baseline/fp32")
    written = reference_path(baseline, exp.workdir(), 16)
    written.parent.mkdir(parents=True, exist_ok=True)
    np.savez(written, logits=np.zeros((16, 10), np.float32))

    def references(run: Path, measurement: dict | None = None) -> list[str]:
        _, tasks = _sweep(run, ["local-cpu"], measurement=measurement)
        return sorted(t.context.spec.label for t in _of(tasks, Reference))

    for run in (tmp_path / "again", tmp_path / "damaged", tmp_path / "more"):  # the same workdir, read again
        run.mkdir()
        (run / "runs").symlink_to(exp.workdir(), target_is_directory=True)
    assert "baseline/fp32" not in references(tmp_path / "again")  # whole, of the count asked: reused
    written.write_bytes(written.read_bytes()[:100])
    assert "baseline/fp32" in references(tmp_path / "damaged")
    np.savez(written, logits=np.zeros((16, 10), np.float32))
    assert "baseline/fp32" in references(tmp_path / "more", {"reference_samples": 200})


def test_a_board_measures_on_its_own_lane_within_its_ssh_timeout(tmp_path: Path) -> None:
    _, tasks = _sweep(tmp_path, ["local-cpu", str(_board(tmp_path))])
    on_board = [t for t in _of(tasks, Measure) if t.context.job.target.name == "board"]
    assert len(on_board) == 6  # 3 variants x ORT fp32, int8
    assert all(t.lane == Lane("board:pi-a") and t.resources == {"board:pi-a": 1} for t in on_board)
    assert all(t.timeout_s == (100 + 3 * 2) * 2 + 60 for t in on_board)  # the board's own timeouts bound it
    local = [t for t in _of(tasks, Measure) if t.context.job.target.name == "local-cpu"]
    assert all(t.lane == Lane(HOST) and t.resources == {} for t in local)


def test_latency_allocation_is_one_timed_allocate_task_before_its_builds(tmp_path: Path) -> None:
    exp = load_experiment(default_with(tmp_path, pruning={
        "criteria": ["l1", "random"], "ratios": [0.5], "allocation": ["latency"], "prune_epochs": [1]}))
    specs = plan_fp32_variants(exp)
    tasks = {t.key: t for t in sweep_tasks(exp, specs, [], {}, tmp_path, tmp_path / "e.npz", tmp_path / "c.npz")}
    (allocate,) = _of(tasks, Allocate)
    assert allocate.timed and allocate.kind == "allocate" and allocate.context.allocation == "latency"
    assert [t.context.spec.label for t in _of(tasks, BuildVariant) if allocate.key in t.after] == [
        s.label for s in specs if s.prune is not None]


def test_builds_and_exports_take_run_build_timeout_s_and_it_leaves_the_hash_alone(tmp_path: Path) -> None:
    """A plug-in criterion that hung held every measurement of the host back for 24 h (the fixed build timeout)."""
    exp = load_experiment(default_with(tmp_path, run={"build_timeout_s": 120}))
    specs = plan_fp32_variants(exp)
    selected = [(selection, get_target(selection.name)) for selection in exp.targets]
    jobs, _ = plan_jobs(exp, specs, selected)
    runners = {target.name: runner_for(target, exp.run.job_timeout_s) for _, target in selected}
    tasks = sweep_tasks(exp, specs, jobs, runners, exp.workdir(), tmp_path / "e.npz", tmp_path / "c.npz")
    untimed = [t for t in tasks if isinstance(t.context, BuildVariant | Export | Reference)]
    assert untimed and all(t.timeout_s == 120 for t in untimed)
    assert exp.hash == load_experiment(default_with(tmp_path, "plain.yaml")).hash  # a resumed run may change it


def test_a_target_none_of_whose_precisions_the_experiment_lists_is_named_not_silently_empty() -> None:
    exp = Experiment(pruning={"criteria": ["l1"], "ratios": [0.5]}, quantization={"precisions": ["fp32", "int8"]},
                     targets=["local-cpu", "local-hls4ml-csim"])
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    jobs, unsupported = plan_jobs(exp, plan_fp32_variants(exp), targets)
    assert {job.target.name for job in jobs} == {"local-cpu"}
    assert "local-hls4ml-csim: it runs fixed, which quantization.precisions (fp32, int8) does not list" in unsupported
    exp = exp.model_copy(update={"quantization": exp.quantization.model_copy(update={"precisions": ["fp32", "fixed"]})})
    jobs, unsupported = plan_jobs(exp, plan_fp32_variants(exp), targets)
    assert "local-hls4ml-csim" in {job.target.name for job in jobs}
    assert not [line for line in unsupported if line.startswith("local-hls4ml-csim")]
    assert not [line for line in unsupported if line.startswith("local-cpu:")]  # fixed is the FPGA targets' alone


def test_a_precision_no_target_runs_is_named_not_silently_dropped() -> None:
    """[fp32, int8_dynamic] on local-litert measured fp32 only, without a word about int8_dynamic."""
    exp = Experiment(pruning={"criteria": ["l1"], "ratios": [0.5]},
                     quantization={"precisions": ["fp32", "int8_dynamic"]}, targets=["local-litert"])
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    jobs, unsupported = plan_jobs(exp, plan_fp32_variants(exp), targets)
    assert {job.variant.quant.precision for job in jobs} == {"fp32"}
    assert "int8_dynamic: no target of the experiment runs it (each target file lists its precisions)" in unsupported
    both = exp.model_copy(update={"targets": [*exp.targets, *Experiment(targets=["local-cpu"]).targets]})
    targets = [(selection, get_target(selection.name)) for selection in both.targets]
    unsupported = plan_jobs(both, plan_fp32_variants(both), targets)[1]
    assert not any("no target of the experiment" in line for line in unsupported)
    # local-cpu runs it; local-litert's skipping it was said nowhere, though README lists such a precision as not run
    assert "local-litert: int8_dynamic not run (its target file's precisions: fp32, fp16, int8)" in unsupported


def test_a_precision_a_backend_has_no_export_for_is_said_to_be_by_design() -> None:
    """'local-cpu/torch: no int8 torch export' on every run read as a missing install."""
    exp = Experiment(quantization={"precisions": ["fp32", "int8"]}, targets=["local-cpu"])
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    _, unsupported = plan_jobs(exp, plan_fp32_variants(exp), targets)
    assert "local-cpu/torch: int8 not measured, by design (edgebench exports torch files in fp32, fp16 only)" in (
        unsupported)
