"""Runs an experiment: plan -> tasks on an executor (build, export, measure) -> store -> report.

The pipeline plans and stores; where and when each job runs is the executor's business (warm local
workers or a Ray cluster), so the pipeline never starts a process itself. Trained models and exported
artifacts are cached by content hash under the run directory, every result is stored as it arrives,
and finished jobs are skipped when an interrupted run of the same experiment is resumed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgebench.artifacts import artifact_path, artifact_ready
from edgebench.cache_files import try_lock
from edgebench.config import Experiment, TargetSelection
from edgebench.data import DatasetSplits
from edgebench.errors import NothingToRunError, first_line, one_line
from edgebench.executor.base import HOST, Lane, Task, TaskResult
from edgebench.executor.host_lanes import HostLanes, LockHolder, default_lock_dir, open_lock_dir
from edgebench.executor.runners import Runner, runner_for
from edgebench.executor.settings import check_executor, create_executor
from edgebench.executor.side_by_side import SideBySide, interference_check, lane_cores, stand_in
from edgebench.executor.tasks import job_result
from edgebench.external import as_given, check_inputs, external_facts, external_specs
from edgebench.job import Job, JobResult
from edgebench.measure.machine import machine_info
from edgebench.measure.reference_workload import speed_failure, speed_record
from edgebench.paths import missing_dirs, remove_empty
from edgebench.plan import (
    PlannedJob,
    check_qat_targets,
    ignored_calibrator,
    plan_external_jobs,
    plan_fp32_variants,
    plan_jobs,
    qat_models,
)
from edgebench.preflight import check_measurement_env, check_model_fits_data, check_output_paths, drop_refused
from edgebench.prune.allocation.latency.predict import prediction_path, read_prediction
from edgebench.prune.allocation.latency.table import layer_onnx
from edgebench.run_cache import ModelCache, write_calibration, write_eval_data
from edgebench.runtimes.base import get_exporter
from edgebench.store import Store, StoreError
from edgebench.store.connection import shown_url
from edgebench.store.record import MeasurementRecord
from edgebench.store.store import new_run_id
from edgebench.sweep import (
    Allocate,
    BuildVariant,
    Export,
    MachineSpeed,
    Measure,
    Predict,
    Reference,
    meter_keeps_lanes_apart,
    predictable,
    sweep_tasks,
    wants_side_by_side,
)
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
    #: of the jobs measured, those a resumed run had stored as failed: measured again, the new result replacing it
    retried: int = 0
    failed: list[str] = field(default_factory=list)
    #: of ``failed``, the jobs lost with their node, board or SSH host: not stored, measured by a resumed run
    lost: int = 0
    unsupported: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: the interference check of side-by-side lanes, when measurements asked for them
    side_by_side: SideBySide | None = None
    #: ``<task>: <warning>`` for what a worker warned while building, exporting or measuring (once each)
    warnings: list[str] = field(default_factory=list)


def available_targets(
    targets: list[tuple[TargetSelection, TargetSpec]], runners: dict[str, Runner]
) -> tuple[list[tuple[TargetSelection, TargetSpec]], list[str]]:
    """The targets whose runner can run jobs now; plus, for the others, why not.

    An unavailable target (a missing extra, no GPU, an unreachable host) is reported, not failed:
    the default experiment lists targets whose extras a lean install does not have. An available target
    keeps only the backends that can run here; each other one is reported the same way.
    """
    ready, unavailable = [], []
    for selection, target in targets:
        runner = runners[target.name]
        if reason := runner.available():
            unavailable.append(f"target {target.name}: {reason}")
            continue
        missing = runner.unavailable_backends()
        unavailable += [f"target {target.name}/{name}: {why}" for name, why in missing.items()]
        ready.append((selection, target.model_copy(
            update={"backends": [name for name in target.backends if name not in missing]})))
    return ready, unavailable


def _input_record(splits: DatasetSplits) -> dict[str, object]:
    """What every artifact of the run takes as input: its shape (C, H, W), the classes its outputs score, and the
    normalisation of [0, 1] pixels (the training split's own statistics when none was declared: a deployment must
    apply the same, and nothing else records them); and the accuracy of always answering the test split's most
    common class, the chance level a measured accuracy is read against."""
    scaling = splits.scaling
    majority = float(np.bincount(splits.y_test).max() / len(splits.y_test)) if len(splits.y_test) else None
    return {"shape": list(splits.input_shape), "classes": splits.num_classes, "majority_class_rate": majority,
            "normalize": None if scaling is None else {"mean": scaling.mean, "std": scaling.std,
                                                       "from": "declared" if scaling.declared else "training split"}}


def artifact_input(splits: DatasetSplits) -> dict[str, object]:
    """What an exported file must be fed, as it carries it (ONNX metadata ``edgebench.input``, an hls4ml project's
    ``edgebench.json``): the run's input record but the test split's statistics, plus the layout."""
    record = {key: value for key, value in _input_record(splits).items() if key != "majority_class_rate"}
    return {"layout": "NCHW", **record}


def _say_passed_over(store: Store, exp: Experiment) -> None:
    """Warn about the unfinished runs of ``exp``'s name a new run does not resume, saying why: what they hold stays
    as it is. A run of this very experiment was passed over for its host, its edgebench or a live process (said
    where it was passed over); another's differs in the fields named, or in the content of the files it reads. The
    latest is named with why; older ones are counted in the same line (each run interrupted while a file was being
    fixed had added a warning to every later run's output)."""
    runs = store.runs()
    passed = runs[(runs["name"] == exp.name) & runs["finished_at"].isna() & (runs["experiment_hash"] != exp.hash)]
    if passed.empty:
        return
    latest = passed.sort_values("started_at").iloc[-1]
    stored = {k: v for k, v in (store.get_run(latest["id"]).get("experiment") or {}).items() if k != "input"}
    changed = _changed_fields(stored, _run_record(exp))  # "input" is the run's record of its data, no field
    why = (f"its experiment differs: {'; '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}" if changed else
           "the content of the model's code or weights, the data or a target file changed since")
    older = (f"; so are {len(passed) - 1} older unfinished run(s) of it (`edgebench runs` lists them, `edgebench "
             "delete` removes them)") if len(passed) > 1 else ""
    log.warning("unfinished run %s of '%s' (%d result(s) stored) is not resumed: %s; a new run starts and that "
                "one stays as it is%s", latest["id"], exp.name, latest["n_measurements"], why, older)


def _run_record(exp: Experiment) -> dict[str, Any]:
    """``exp``'s fields as a run stores them: its store URL without a database password (`import` copies it)."""
    recorded = exp.model_dump(mode="json")
    if recorded["store"]["url"]:
        recorded["store"]["url"] = shown_url(recorded["store"]["url"])
    return recorded


def _changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``field: old -> new`` for each leaf that differs between two experiment records (a moved project's absolute
    ``model.file``, say); a long value is cut with an ellipsis."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {one_line(repr(a), 60)} -> {one_line(repr(b), 60)}")
    return changed


def _warning_line(warning: str, tasks: list[str]) -> str:
    """``<task>: <warning>``, naming how many other tasks gave the same warning."""
    others = f" and {len(tasks) - 1} other task(s)" if len(tasks) > 1 else ""
    return f"{tasks[0]}{others}: {warning}"


class ReportInterrupted(KeyboardInterrupt):
    """Ctrl-C while the report of a run whose every job is stored was rendered: nothing is left to resume."""

    def __init__(self, run_id: str, store_url: str) -> None:
        super().__init__(run_id)
        self.run_id, self.store_url = run_id, store_url


@dataclass(frozen=True)
class _Prepared:
    """What a run will do, decided before anything is trained or stored."""

    runners: dict[str, Runner]
    specs: list[VariantSpec]
    jobs: list[PlannedJob]
    #: why targets or jobs will not run (reported with the outcome)
    unsupported: list[str]
    splits: DatasetSplits
    #: the baseline model's fp32 weights, for the side-by-side check's stand-in layer
    weight_bytes: int = 0


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
    created = missing_dirs(exp.workdir(), exp.report_dir())
    with contextlib.ExitStack() as stack:
        try:
            prepared = _prepare(exp, render)
            store = stack.enter_context(Store.open(exp.store_url()))
            run = _OpenRun.open(store, exp, prepared, tags)
        except BaseException:  # refused before any work (a read-only store too): no bare runs/<name>/ or
            remove_empty(created)  # reports/<name>/ left behind
            raise
        try:
            run.drain(prepared, progress)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what `runs` and `compare` show until it is resumed
            store.mark_run(run.run_id, "interrupted")
            raise
        return run.finish(render)


def _prepare(exp: Experiment, render: bool) -> _Prepared:
    """Plan ``exp`` and check what can be checked before any work (the report directory only where a report is
    rendered); NothingToRunError when no job can run."""
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    check_qat_targets(exp, targets)
    for line in ignored_calibrator(exp, targets):
        log.warning("%s", line)
    check_output_paths(exp, report=render)
    check_measurement_env()
    check_executor(exp.executor)
    return _planned(exp, targets)


def _planned(exp: Experiment, targets: list[tuple[TargetSelection, TargetSpec]]) -> _Prepared:
    """The jobs of ``exp`` on ``targets`` (whose output paths were checked), with its data loaded and checked."""
    runners = {target.name: runner_for(target, exp.run.job_timeout_s, exp.executor.type) for _, target in targets}
    ready, unavailable = available_targets(targets, runners)
    specs = plan_fp32_variants(exp)
    jobs, unsupported = plan_jobs(exp, specs, ready)
    externals = external_specs(exp.artifacts, specs, f"experiment '{exp.name}'")
    external_jobs, external_unsupported = plan_external_jobs(exp, externals, ready)
    jobs, unsupported = jobs + external_jobs, unsupported + external_unsupported
    if not jobs:
        raise NothingToRunError("nothing could run: " + "; ".join(unavailable + unsupported + _idle(exp, ready)))
    splits = exp.dataset.load()
    model = check_model_fits_data(exp, splits)
    jobs, refused = drop_refused(jobs, model, splits.input_shape)
    if not jobs:
        raise NothingToRunError("nothing could run: " + "; ".join(unavailable + unsupported + refused))
    unsupported += refused
    for spec in externals:  # at the batch each of its jobs feeds it
        check_inputs(spec, splits.input_shape, splits.num_classes,
                     {1 if j.measure.scenario == "single_stream" else j.measure.batch_size
                      for j in jobs if j.variant.id == spec.id}, splits.scaling)
    models = specs + qat_models(exp, specs)  # what is trained: fp32 variants and quantization-trained models
    weight_bytes = sum(p.numel() for p in model.parameters()) * 4
    return _Prepared(runners, models, jobs, unavailable + unsupported, splits, weight_bytes)


def _idle(exp: Experiment, ready: list[tuple[TargetSelection, TargetSpec]]) -> list[str]:
    """Available targets that run none of the experiment's precisions."""
    return [
        f"target {target.name} runs {', '.join(target.precisions)}, none of quantization.precisions "
        f"({', '.join(exp.quantization.precisions)})"
        for _, target in ready
        if target.precisions is not None and not set(exp.quantization.precisions) & set(target.precisions)
    ]


class _OpenRun:
    """A run started (or resumed) in the store; each finished task is handled by its kind's handler."""

    def __init__(self, store: Store, exp: Experiment, outcome: RunOutcome, lock: IO[str] | None,
                 input_shape: tuple[int, ...]) -> None:
        self.store = store
        self.lock = lock  # held while this process drives the run: a second process beside it starts its own
        self.exp = exp
        self.run_id = outcome.run_id
        self.outcome = outcome
        self.workdir = exp.workdir().resolve()  # tasks on a Ray node run in the raylet's directory, not ours
        self.cache = ModelCache(self.workdir)
        self.input_shape = input_shape  # of one image: an external artifact's MACs are counted for it
        self.external_facts: dict[str, dict[str, object]] = {}  # by variant id: each graph is read once
        self.lost: list[str] = []  # jobs lost with their node, board or SSH host, for the report's 'Not run'

    @classmethod
    def open(cls, store: Store, exp: Experiment, prepared: _Prepared, tags: tuple[str, ...]) -> _OpenRun:
        """Resume the unfinished run of ``exp`` (adding ``tags``) or start one; store the variants already built."""
        locks = exp.workdir() / "locks"
        held: list[IO[str]] = []

        def claim(run_id: str) -> bool:  # an unfinished run nobody drives any more (killed, or lost jobs)
            try:  # host-wide: a process of this experiment in another directory sharing the store sees it too
                open_lock_dir(default_lock_dir())
                lock = try_lock(default_lock_dir() / f"run-{run_id}")
            except OSError:  # no shared lock directory (or another user's lock file): this directory's
                lock = try_lock(locks / f"run-{run_id}")
            held.extend([lock] if lock else [])
            return lock is not None

        machine = machine_info()
        run_id = store.find_resumable_run(exp.hash, claim, machine)
        if run_id is None:
            _say_passed_over(store, exp)
            run_id = new_run_id()
            claim(run_id)  # before the run is visible to a process started beside this one
            recorded = {**_run_record(exp), "input": _input_record(prepared.splits)}  # what an artifact must be fed
            store.start_run(exp.name, recorded, exp.hash, machine, tags, run_id)
        else:
            log.info("resuming run %s", run_id)
            store.mark_run(run_id, "running")
            for tag in tags:
                store.tag_run(run_id, tag)
        run = cls(store, exp, RunOutcome(run_id, exp.store_url(), None, unsupported=prepared.unsupported),
                  held[0] if held else None, prepared.splits.input_shape)
        for spec in prepared.specs:  # every quantized variant's parent is stored, measured or not (built ones as they land)
            run.store_variant(spec)
        return run

    def drain(self, prepared: _Prepared, progress: ProgressFn | None) -> None:
        """Run the tasks of the jobs not stored yet on the experiment's executor, handling results as they finish."""
        eval_path = write_eval_data(prepared.splits, self.workdir)
        splits = prepared.splits
        calibration = write_calibration(splits.x_train, splits.y_train, self.exp.quantization.calibration_samples, self.workdir,
                                        (splits.x_val, splits.y_val))
        # a resumed run measures its stored failures again: what failed may have been the machine's (a full disk)
        done, stored = self.store.done_job_keys(self.run_id, ok_only=True), self.store.done_job_keys(self.run_id)
        todo = [job for job in prepared.jobs if job.key not in done]
        self.outcome.skipped = len(prepared.jobs) - len(todo)
        self.outcome.retried = sum(job.key in stored for job in todo)
        lanes = self._side_by_side([job for job in todo if wants_side_by_side(job, prepared.runners[job.target.name].lane())],
                                   prepared.weight_bytes)
        if metered := sorted({f"{job.target.name} (energy.type: {job.target.energy['type']})" for job in todo
                              if job.measure.parallel_lanes and job.target.energy and not meter_keeps_lanes_apart(job)}):
            self.outcome.unsupported.append(
                f"side-by-side lanes not used for {', '.join(metered)}: the meter reads more than the job's own "
                "process (a package, board or wall), so lanes measured at once would count each other's energy")
        if threaded := sorted({f"{job.target.name} ({job.target.threads} threads)" for job in todo
                               if job.measure.parallel_lanes and job.target.threads != 1}):
            self.outcome.unsupported.append(f"side-by-side lanes not used for {', '.join(threaded)}: a lane is one "
                                            "core, for single-thread measurements")
        asked = [job for job in todo if job.measure.predict_latency and job.variant.external is None]
        predicted = {job.target.name for job in asked if predictable(job)}  # local-cpu's torch beside its ORT: said
        if unpredicted := sorted({f"{job.target.name}/{job.backend}" for job in asked
                                  if job.target.name not in predicted}):
            self.outcome.unsupported.append(f"latency not predicted on {', '.join(unpredicted)}: the tables time "
                                            "one-layer ONNX models, on local targets whose runtime loads ONNX")
        tasks = sweep_tasks(self.exp, prepared.specs, todo, prepared.runners, self.workdir, eval_path, calibration,
                            side_by_side=lanes, data_digest=splits.digest(), input_spec=artifact_input(splits))
        sweep = _SweepProgress(tasks, progress)
        warned: dict[str, list[str]] = {}  # warning -> the tasks that gave it (every worker loading the data, ...)
        with create_executor(self.exp.executor, log_dir=self.workdir / "logs") as executor:
            for result in executor.run(tasks):
                context = result.task.context
                RESULT_HANDLERS[type(context)](self, result, context)
                for warning in result.warnings:
                    warned.setdefault(warning, []).append(context.describe())
                if result.warnings:
                    self.outcome.warnings = [_warning_line(w, where) for w, where in warned.items()]
                sweep.finished(result)  # after storing: an interrupt from the progress display loses nothing
        sweep.close()
        self.outcome.stage_seconds.update(sweep.stage_seconds)

    def _side_by_side(self, jobs: list[PlannedJob], weight_bytes: int) -> list[int] | None:
        """The cores ``jobs`` (which asked for parallel lanes) may measure on at once, or None when the
        interference check refuses them (the reason goes into the outcome). The check holds every core's
        host-wide lane lock: no other edgebench process measures meanwhile. It times a stand-in layer for the
        baseline model's ``weight_bytes`` (``side_by_side.stand_in``)."""
        if not jobs:
            return None
        check_dir = self.workdir / "side-by-side"
        check_dir.mkdir(parents=True, exist_ok=True)
        shape, input_shape = stand_in(weight_bytes)
        artifact = check_dir / f"{shape.op.lower()}-{shape.c_in}x{shape.c_out}.onnx"
        layer_onnx(shape, artifact)
        batch = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        timing = jobs[0].measure.model_copy(update={"max_time_s": min(jobs[0].measure.max_time_s, 5.0)})
        host, holder = HostLanes(), LockHolder("side-by-side interference check")
        try:
            while not host.acquire(holder, Lane(HOST)):
                time.sleep(0.5)
            verdict = interference_check(lane_cores(), artifact, "onnxruntime", batch, timing)
        finally:
            host.release(holder)
        self.outcome.side_by_side = verdict
        if not verdict.ok:
            log.warning("side-by-side lanes refused: %s", verdict.reason)
            self.outcome.unsupported.append(f"side-by-side lanes refused (measured one at a time): {verdict.reason}")
            return None
        log.info("side-by-side lanes on cores %s: %s", verdict.cores, verdict.reason)
        return list(verdict.cores)

    def finish(self, render: bool) -> RunOutcome:
        """Close the run (unless jobs were lost: the same command resumes it) and render its report."""
        self.store.set_not_run(self.run_id, [*self.outcome.unsupported, *self.lost])  # the report says it, later too
        if self.outcome.lost:  # left open: the same command resumes this run and measures what a lost board could not
            log.warning("%d jobs lost with their node or board; run the same command again to measure them", self.outcome.lost)
            self.store.mark_run(self.run_id, "incomplete")  # not 'running': no process drives it now
        else:
            self.store.finish_run(self.run_id)
        if self.lock is not None:
            if not self.outcome.lost:  # a finished run is never claimed again: its lock file would only pile up
                Path(self.lock.name).unlink(missing_ok=True)
            self.lock.close()
        if render:
            from edgebench.report import render_report

            clock = time.perf_counter()
            try:
                self.outcome.report_path = render_report(self.store, self.run_id, self.exp.report_dir(),
                                                         self.exp.report.objectives)
            except KeyboardInterrupt:
                raise ReportInterrupted(self.run_id, self.outcome.store_url) from None
            self.outcome.stage_seconds["report"] = time.perf_counter() - clock
        if self.exp.tracking.mlflow is not None and not self.outcome.lost:
            from edgebench.tracking.mlflow_log import log_run

            clock = time.perf_counter()
            mlflow = self.exp.tracking.mlflow
            log_run(self.store, self.run_id, mlflow.uri, mlflow.experiment or self.exp.name, self.outcome.report_path
                    and self.outcome.report_path.parent)
            self.outcome.stage_seconds["mlflow"] = time.perf_counter() - clock
        return self.outcome

    def store_variant(self, spec: VariantSpec, unbuilt_too: bool = False) -> None:
        """Store ``spec`` with the facts of its weights once they are built (a quantized variant: its fp32 weights),
        or with none when ``unbuilt_too`` (a job that failed is then listed under the variant's label); an external
        artifact with where it came from."""
        if spec.external is not None:
            if spec.id not in self.external_facts:
                self.external_facts[spec.id] = external_facts(spec, self.input_shape)
            self.store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id,
                                      self.external_facts[spec.id])
            return
        weights = spec.weights_spec
        if self.cache.has(weights) or unbuilt_too:
            facts = self.cache.facts(weights) if self.cache.has(weights) else {}
            self.store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id, facts)

    def _variant_built(self, result: TaskResult, context: BuildVariant) -> None:
        if result.ok:
            self.store_variant(context.spec)
        else:
            log.warning("%s failed: %s", result.key, result.error)

    def _made_file(self, result: TaskResult, context: Allocate | Export | Reference) -> None:
        """An allocation, export or reference: its product is a file the measurements read; only a failure is news."""
        if not result.ok:
            log.warning("%s failed: %s", result.key, result.error)

    def _machine_speed(self, result: TaskResult, context: MachineSpeed) -> None:
        """The reference workload's figure: stored with the run's machine (every reading, a resumed run adds one)."""
        measured = job_result(result)
        record = speed_record(measured)
        if record is None:
            log.warning("%s", speed_failure(measured))
            return
        self.store.add_machine_speed(self.run_id, record)

    def _predicted(self, result: TaskResult, context: Predict) -> None:
        """A latency prediction: a file its measurement's record reads, or why there is none (logged)."""
        if not result.ok:
            log.warning("%s failed: %s", result.key, result.error)
        elif not Path(str(result.value)).is_file():
            log.warning("%s", result.value)

    def _measured(self, result: TaskResult, context: Measure) -> None:
        """Store one measurement (replacing an earlier row of the same job key: exactly once) and count it."""
        job = context.job
        where = f"{job.variant.label} on {job.target.name}/{job.backend}"
        measured = job_result(result)
        if result.lost or measured.unreachable:  # its node, board or SSH host went away: the next run measures it
            self.outcome.lost += 1
            self.lost.append(f"{where}: {result.error or measured.error} (lost; run the same command again to measure it)")
            self.outcome.failed.append(f"{where}: {result.error or measured.error} (not stored; run the same command "
                                       "again to measure it)")
            return
        # the tables predict fp32 variants (sweep.Predict): an int8 file of the same weights has no prediction
        if (measured.status == "ok" and job.measure.predict_latency and job.variant.external is None
                and job.variant.quant.precision == "fp32"):
            prediction = prediction_path(self.workdir, job.variant.weights_spec.id, job.target.name, job.backend)
            if prediction.is_file():
                measured = measured.model_copy(update={"latency_prediction": read_prediction(prediction)})
        lanes = self.outcome.side_by_side
        if context.side_by_side_core is not None and lanes is not None and measured.status == "ok":
            # measured at once with the other lanes: which core, and the check that allowed it (its three p50s)
            measured.details["side_by_side"] = {"core": context.side_by_side_core, "lanes": list(lanes.cores),
                                                "check": lanes.reason}
        self.store_variant(job.variant, unbuilt_too=True)
        artifact = artifact_path(job, self.workdir)
        if measured.error and job.variant.external is not None:
            measured = measured.model_copy(update={"error": as_given(measured.error, artifact, job.variant.external)})
        size, compressed = get_exporter(job.artifact_format, job.target.blocks).sizes(artifact) if artifact_ready(
            artifact) else (None, None)
        def record(result: JobResult) -> MeasurementRecord:
            return MeasurementRecord(self.run_id, job.key, job.variant.id, job.target.name, job.backend, result,
                                     job.settings, size_bytes=size, compressed_bytes=compressed,
                                     job=_absolute(context.worker_job))

        try:
            self.store.add_measurement(record(measured))
        except StoreError:  # the store itself failed (full, locked, gone): the run stops, the same command resumes
            raise
        except Exception as exc:  # this result alone cannot be stored (e.g. details a plug-in backend filled with
            # what JSON cannot hold): its job fails, and a resumed run does not meet it again and stop there
            measured = JobResult(job_id=measured.job_id, status="failed",
                                 error=f"its result could not be stored: {type(exc).__name__}: {first_line(exc)}")
            self.store.add_measurement(record(measured))
        if measured.status == "ok":
            self.outcome.measured += 1
        else:
            self.outcome.failed.append(f"{where}: {measured.error}")


def _absolute(job: Job | None) -> Job | None:
    """``job`` with absolute file paths: `compare --remeasure` may run from another directory (a CI checkout)."""
    if job is None:
        return None
    files = {key: str(Path(path).resolve()) for key in ("artifact", "eval_data", "reference")
             if (path := getattr(job, key))}
    return job.model_copy(update=files)


#: one handler per kind of task (``sweep.KINDS``), called with the result and the task's typed context
RESULT_HANDLERS: dict[type, Callable[[_OpenRun, TaskResult, Any], None]] = {
    MachineSpeed: _OpenRun._machine_speed,
    BuildVariant: _OpenRun._variant_built,
    Allocate: _OpenRun._made_file,
    Predict: _OpenRun._predicted,
    Export: _OpenRun._made_file,
    Reference: _OpenRun._made_file,
    Measure: _OpenRun._measured,
}


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
        stage = task.context.stage
        return [stage, f"{stage} {task.lane}"] if task.kind == "measure" and per_lane else [stage]

    def finished(self, result: TaskResult) -> None:
        now = time.perf_counter()
        stage = result.task.context.stage
        start = now - (result.wall_s or 0.0)
        first, _ = self.spans.get(stage, (start, now))
        self.spans[stage] = (min(first, start), now)
        for bar in self._bars(result.task, per_lane=len(self.lanes) > 1):
            self.done[bar] += 1
            if self.progress:
                detail = result.task.context.describe()
                self.progress(bar, self.done[bar], self.totals[bar], detail)

    def close(self) -> None:
        if self.progress:
            for bar, total in self.totals.items():
                if " " not in bar or len(self.lanes) > 1:
                    self.progress(bar, total, total, "done")

    @property
    def stage_seconds(self) -> dict[str, float]:
        return {stage: end - start for stage, (start, end) in self.spans.items()}
