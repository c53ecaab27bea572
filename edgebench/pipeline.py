"""Runs an experiment: plan -> tasks on an executor (build, export, measure) -> store -> report.

The pipeline plans and stores; where and when each job runs is the executor's business (warm local
workers or a Ray cluster), so the pipeline never starts a process itself. Trained models and exported
artifacts are cached by content hash under the run directory, every result is stored as it arrives,
and finished jobs are skipped when an interrupted run of the same experiment is resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgebench import archive
from edgebench.archive import compressed_size
from edgebench.artifacts import artifact_path, artifact_ready, artifact_size
from edgebench.config import Experiment, TargetSelection
from edgebench.data import load_dataset
from edgebench.errors import NothingToRunError
from edgebench.executor.base import Task, TaskResult
from edgebench.executor.runners import Runner, runner_for
from edgebench.executor.settings import create_executor
from edgebench.executor.tasks import job_result
from edgebench.measure.job import JobResult
from edgebench.measure.machine import machine_info
from edgebench.plan import PlannedJob, check_qat_targets, plan_fp32_variants, plan_jobs, qat_models
from edgebench.preflight import check_model_fits_data, check_output_paths
from edgebench.run_cache import ModelCache, write_calibration, write_eval_data
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord
from edgebench.sweep import sweep_tasks
from edgebench.targets import TargetSpec, get_target
from edgebench.variants import VariantSpec

log = logging.getLogger(__name__)

#: progress callback: (stage, done, total, detail)
ProgressFn = Callable[[str, int, int, str], None]


@dataclass
class RunOutcome:
    """What ``run_experiment`` produced."""

    run_id: str
    store_url: str
    report_path: Path | None
    measured: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def available_targets(
    targets: list[tuple[TargetSelection, TargetSpec]], runners: dict[str, Runner]
) -> tuple[list[tuple[TargetSelection, TargetSpec]], list[str]]:
    """The targets whose runner can run jobs now; plus, for the others, why not.

    An unavailable target (a missing extra, no GPU, an unreachable host) is reported, not failed:
    the default experiment lists targets whose extras a lean install does not have.
    """
    ready, unavailable = [], []
    for selection, target in targets:
        reason = runners[target.name].available()
        if reason:
            unavailable.append(f"target {target.name}: {reason}")
        else:
            ready.append((selection, target))
    return ready, unavailable


def run_experiment(
    exp: Experiment,
    tags: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
    render: bool = True,
) -> RunOutcome:
    """Run (or resume) ``exp`` end to end and return where its results are.

    Everything decidable before work is checked before training or a store write: the output paths, which
    targets can run now and which jobs they get (NothingToRunError when none), the data, and the model on it.
    Every build, export and measurement is then a task of the experiment's executor (``exp.executor``);
    results are stored as they arrive, so a killed run loses only the jobs that were running.
    """
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    check_qat_targets(exp, targets)
    check_output_paths(exp)
    workdir = exp.workdir()
    runners = {target.name: runner_for(target, exp.run.job_timeout_s) for _, target in targets}
    ready, unavailable = available_targets(targets, runners)
    specs = plan_fp32_variants(exp)
    jobs, unsupported = plan_jobs(exp, specs, ready)
    models = specs + qat_models(exp, specs)  # what is trained: fp32 variants and quantization-trained models
    if not jobs:
        raise NothingToRunError("nothing could run: " + "; ".join(unavailable + unsupported + _idle(exp, ready)))
    splits = load_dataset(exp.dataset.name, **exp.dataset.kwargs)
    check_model_fits_data(exp, splits)

    store = Store.open(exp.store_url())
    try:
        run_id = store.find_resumable_run(exp.hash)
        if run_id is None:
            run_id = store.start_run(exp.name, exp.model_dump(mode="json"), exp.hash, machine_info(), tags)
        else:
            log.info("resuming run %s", run_id)
            for tag in tags:
                store.tag_run(run_id, tag)
        outcome = RunOutcome(run_id=run_id, store_url=exp.store_url(), report_path=None)

        cache = ModelCache(workdir)
        for spec in models:  # every quantized variant's parent is stored, measured or not (built ones as they land)
            if cache.has(spec):
                store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id, cache.facts(spec))
        eval_path = write_eval_data(splits, workdir)
        calibration = write_calibration(splits.x_train, exp.quantization.calibration_samples, workdir,
                                        (splits.x_val, splits.y_val))
        outcome.unsupported = unavailable + unsupported
        done = store.done_job_keys(run_id)
        todo = [job for job in jobs if job.key not in done]
        outcome.skipped = len(jobs) - len(todo)

        tasks = sweep_tasks(exp, models, todo, runners, workdir, eval_path, calibration)
        sweep = _SweepProgress(tasks, progress)
        lost = 0
        with create_executor(exp.executor, log_dir=workdir / "logs") as executor:
            for result in executor.run(tasks):
                if result.task.kind == "measure" and result.lost:  # not stored: the next run measures it
                    lost += 1
                    job: PlannedJob = result.task.context
                    outcome.failed.append(f"{job.variant.label} on {job.target.name}/{job.backend}: {result.error} "
                                          "(not stored; run the same command again to measure it)")
                elif result.task.kind == "measure":
                    _store_result(store, run_id, result.task.context, job_result(result), cache, workdir, outcome)
                elif result.task.kind == "build" and result.ok and isinstance(result.task.context, VariantSpec):
                    spec: VariantSpec = result.task.context
                    store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id,
                                         cache.facts(spec))
                elif not result.ok:
                    log.warning("%s failed: %s", result.key, result.error)
                sweep.finished(result)  # after storing: an interrupt from the progress display loses nothing
        sweep.close()
        outcome.stage_seconds.update(sweep.stage_seconds)
        if lost:  # left open: the same command resumes this run and measures what a lost board could not
            log.warning("%d jobs lost with their node or board; run the same command again to measure them", lost)
        else:
            store.finish_run(run_id)
        if render:
            from edgebench.report import render_report

            clock = time.perf_counter()
            outcome.report_path = render_report(store, run_id, exp.report_dir(), exp.report.objectives)
            outcome.stage_seconds["report"] = time.perf_counter() - clock
        return outcome
    finally:
        store.close()


def _idle(exp: Experiment, ready: list[tuple[TargetSelection, TargetSpec]]) -> list[str]:
    """Available targets that run none of the experiment's precisions."""
    return [
        f"target {target.name} runs {', '.join(target.precisions)}, none of quantization.precisions "
        f"({', '.join(exp.quantization.precisions)})"
        for _, target in ready
        if target.precisions is not None and not set(exp.quantization.precisions) & set(target.precisions)
    ]


def _store_result(store: Store, run_id: str, job: PlannedJob, result: JobResult, cache: ModelCache, workdir: Path,
                  outcome: RunOutcome) -> None:
    """Store one measurement (replacing an earlier row of the same job key: exactly once) and count it."""
    artifact = artifact_path(job, workdir)
    weights = job.variant.weights_spec
    if cache.has(weights):
        store.upsert_variant(job.variant.id, job.variant.model_dump(mode="json"), job.variant.label,
                             job.variant.parent_id, cache.facts(weights))
    size = artifact_size(artifact) if artifact_ready(artifact) else None
    if size is not None:  # what sparsity buys on disk shows only compressed: zeros take their full width in a dense artifact
        packed = {"compressed_bytes": compressed_size(artifact), "encoding": archive.ENCODING}
        result = result.model_copy(update={"details": {**result.details, "artifact": packed}})
    store.add_measurement(MeasurementRecord(run_id, job.key, job.variant.id, job.target.name, job.backend,
                                            result, job.settings, size))
    if result.status == "ok":
        outcome.measured += 1
    else:
        outcome.failed.append(f"{job.variant.label} on {job.target.name}/{job.backend}: {result.error}")


#: stage names of the progress bars and of ``RunOutcome.stage_seconds``, by task kind
STAGES = {"build": "variants", "export": "export", "measure": "measure"}


class _SweepProgress:
    """Progress per stage (and per measurement lane when there are several boards), and each stage's span.

    Stages overlap (a variant's exports start as soon as it is built), so a stage's seconds are the span
    from its first task's start to its last result.
    """

    def __init__(self, tasks: list[Task], progress: ProgressFn | None) -> None:
        self.progress = progress
        self.totals: dict[str, int] = {}
        for task in tasks:
            for bar in self._bars(task, per_lane=True):
                self.totals[bar] = self.totals.get(bar, 0) + 1
        self.lanes = {str(t.lane) for t in tasks if t.kind == "measure"}
        self.done = dict.fromkeys(self.totals, 0)
        self.spans: dict[str, tuple[float, float]] = {}
        for bar, total in self.totals.items():
            if self.progress and (" " not in bar or len(self.lanes) > 1):
                self.progress(bar, 0, total, "")

    def _bars(self, task: Task, per_lane: bool) -> list[str]:
        stage = STAGES[task.kind]
        return [stage, f"{stage} {task.lane}"] if task.kind == "measure" and per_lane else [stage]

    def finished(self, result: TaskResult) -> None:
        now = time.perf_counter()
        stage = STAGES[result.task.kind]
        start = now - (result.wall_s or 0.0)
        first, _ = self.spans.get(stage, (start, now))
        self.spans[stage] = (min(first, start), now)
        for bar in self._bars(result.task, per_lane=len(self.lanes) > 1):
            self.done[bar] += 1
            if self.progress:
                detail = _describe(result)
                self.progress(bar, self.done[bar], self.totals[bar], detail)

    def close(self) -> None:
        if self.progress:
            for bar, total in self.totals.items():
                if " " not in bar or len(self.lanes) > 1:
                    self.progress(bar, total, total, "done")

    @property
    def stage_seconds(self) -> dict[str, float]:
        return {stage: end - start for stage, (start, end) in self.spans.items()}


def _describe(result: TaskResult) -> str:
    context = result.task.context
    if isinstance(context, PlannedJob):
        return f"{context.variant.label} on {context.target.name}/{context.backend}"
    if isinstance(context, VariantSpec):
        return context.label
    return str(context or result.key)
