"""A run's work as executor tasks, one kind per step: build each variant (after an ``allocate`` task for an
allocation that measures latency), ``export`` each artifact, write each ``reference``, ``predict`` a variant's
p50 from the latency tables, time the machine's reference workload, ``measure``.

Every task carries a context of its kind's type (:data:`KINDS`: :class:`BuildVariant`, :class:`Allocate`,
:class:`Predict`, :class:`Export`, :class:`Reference`, :class:`Measure`, :class:`MachineSpeed`), so the pipeline
handles each finished task by its kind without guessing.
Tasks hand their products to each other through the run's cache files (``run_cache``, ``artifacts``),
never through return values, so any worker can run any task: a warm local process, or a Ray node that
sees the run directory at the same path. Each task names what it needs first (``after``): a measurement
waits for its artifact and reference, an export for its variant, a variant that reuses the baseline for
the baseline. Only what is missing becomes a task: a resumed run rebuilds nothing it already has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgebench.artifacts import ExportTask, artifact_path, artifact_ready, run_export
from edgebench.cache_files import replacing
from edgebench.config import DatasetConfig, Experiment
from edgebench.data import DatasetSplits
from edgebench.errors import ArtifactError, DatasetError, first_line
from edgebench.executor.base import HOST, Lane, Task, TaskContext
from edgebench.executor.runners import Runner
from edgebench.executor.tasks import call_task, measure_task
from edgebench.external import import_artifact
from edgebench.job import Job
from edgebench.measure import reference_workload
from edgebench.measure.energy import reads_one_process
from edgebench.models.source import code_changed, new_model
from edgebench.plan import PlannedJob
from edgebench.prune import build_fp32_model
from edgebench.prune.allocation import ALLOCATIONS
from edgebench.prune.allocation.latency.predict import TargetLatencyModel, prediction_path
from edgebench.prune.build import prepare_allocation, starts_from_baseline
from edgebench.run_cache import ModelCache, reference_path, reference_ready, write_reference
from edgebench.runtimes.base import get_exporter
from edgebench.targets import TargetSpec
from edgebench.variants import VariantSpec, spec_hash


@dataclass(frozen=True)
class BuildVariant:
    """Train/prune one fp32 variant into the model cache."""

    kind: ClassVar[str] = "build"
    #: the progress bar (and ``RunOutcome.stage_seconds`` entry) the task counts in
    stage: ClassVar[str] = "variants"
    spec: VariantSpec

    def describe(self) -> str:
        return self.spec.label


@dataclass(frozen=True)
class Allocate:
    """Measure what an allocation needs (the latency allocation's tables), shared by the variants that use it."""

    kind: ClassVar[str] = "allocate"
    stage: ClassVar[str] = "variants"
    #: the first variant that asked for it
    spec: VariantSpec
    allocation: str

    def describe(self) -> str:
        return f"{self.allocation} allocation of {self.spec.label}"


@dataclass(frozen=True)
class Predict:
    """Predict a variant's p50 on a target from the latency tables, before it is measured."""

    kind: ClassVar[str] = "predict"
    stage: ClassVar[str] = "predict"
    spec: VariantSpec
    target: str
    backend: str

    def describe(self) -> str:
        return f"predict {self.spec.label} on {self.target}/{self.backend}"


@dataclass(frozen=True)
class Export:
    """Export one artifact (shared by the measurements that read it)."""

    kind: ClassVar[str] = "export"
    stage: ClassVar[str] = "export"
    artifact: Path

    def describe(self) -> str:
        return self.artifact.name


@dataclass(frozen=True)
class Reference:
    """Write the fp32 PyTorch logits that measurements compare a variant's artifacts with."""

    kind: ClassVar[str] = "reference"
    stage: ClassVar[str] = "export"
    spec: VariantSpec

    def describe(self) -> str:
        return f"reference {self.spec.label}"


@dataclass(frozen=True)
class Measure:
    """Measure one planned job on its target."""

    kind: ClassVar[str] = "measure"
    stage: ClassVar[str] = "measure"
    job: PlannedJob
    #: the worker's job (its files on this machine): stored with the result, so `compare --remeasure` can run it again
    worker_job: Job | None = None
    #: the core of its side-by-side lane, where it measures beside the other lanes (None: one at a time)
    side_by_side_core: int | None = None

    def describe(self) -> str:
        return f"{self.job.variant.label} on {self.job.target.name}/{self.job.backend}"


@dataclass(frozen=True)
class MachineSpeed:
    """Time the shipped reference workload before the run's measurements: the machine's speed during the run."""

    kind: ClassVar[str] = "measure"
    stage: ClassVar[str] = "speed"  # a stage of its own: "measure" counts the experiment's measurements only

    def describe(self) -> str:
        return f"machine speed ({reference_workload.NAME})"


#: every kind of task a sweep makes; the pipeline has one result handler for each
SweepContext = BuildVariant | Allocate | Predict | Export | Reference | Measure | MachineSpeed
KINDS: tuple[type[SweepContext], ...] = (BuildVariant, Allocate, Predict, Export, Reference, Measure, MachineSpeed)


def _untimed(context: TaskContext, key: str, fn: Callable[..., object], *args: object, timeout_s: float,
             after: tuple[str, ...] = (), times: str | None = None) -> Task:
    task = call_task(key, context.kind, fn, *args, timeout_s=timeout_s, context=context, times=times)
    task.after = after
    return task


@dataclass(frozen=True)
class DataRef:
    """The experiment's ``dataset:`` section (JSON) and the digest of the splits the run's process loaded from it
    (:meth:`DatasetSplits.digest`; None: not checked): every worker loads the data again and must get those."""

    config_json: str
    digest: str | None = None


#: what a worker says when its load of the data differs from the run's process's
DATA_DIFFERS = ("the data loaded in this worker differs from the run's (an unseeded random split or shuffle?): "
                "every process of a run loads it again, so the loader must return the same arrays each time; seed it")


@functools.lru_cache(maxsize=2)
def _dataset(data: DataRef) -> DatasetSplits:
    """The experiment's dataset, loaded and preprocessed once per warm worker, checked against the run's."""
    splits = DatasetConfig.model_validate_json(data.config_json).load()
    if data.digest is not None and splits.digest() != data.digest:
        raise DatasetError(DATA_DIFFERS)
    return splits


def build_variant(spec: VariantSpec, data: DataRef, workdir: str,
                  baseline: VariantSpec | None) -> str:
    """Train/prune ``spec`` into the model cache (in a worker); ``baseline`` is read from the cache if built."""
    cache = ModelCache(Path(workdir))
    if not cache.has(spec):  # a build queued again after its node was lost may have finished there
        _same_code(spec)
        splits = _dataset(data)
        base = cache.get(baseline) if baseline is not None else None
        built = build_fp32_model(spec, splits, baseline=base, workdir=Path(workdir))
        _same_code(spec)  # an edit while it trained: the model built may not be the code the id names
        cache.put(spec, built)
    return spec.id


def _same_code(spec: VariantSpec) -> None:
    """ArtifactError where the user's code changed since the run started: the model would be cached under the id of
    the old code, and a later run of that code would measure it (an edit reverted after the run did)."""
    if code_changed(spec.source):
        files = ", ".join(Path(f).name for f in spec.source.code_files[:3])  # type: ignore[union-attr]
        raise ArtifactError(f"{spec.label}: the model's code ({files}) changed since this run started, so what it "
                            "would build is not the model its id names; edit it between runs, not during one, then "
                            "run the same command again")


def allocate_variant(spec: VariantSpec, data: DataRef, workdir: str) -> str:
    """Let ``spec``'s allocation measure what it needs on the unpruned model (in a worker holding the host's
    cores); it keeps the result under ``workdir`` for the builds."""
    prepare_allocation(spec, _dataset(data), Path(workdir))
    return spec.id


def _allocation_task(spec: VariantSpec, data: DataRef, workdir: Path, timeout_s: float) -> Task | None:
    """A timed task for an allocation that times models (the latency allocation), shared by the variants whose
    architecture, allocation and ratio are the same; None for the others."""
    prune = spec.prune
    if prune is None or not prune.allocation or not ALLOCATIONS.get(prune.allocation).timed:
        return None
    key = spec_hash([spec.model, spec.model_kwargs, spec.dataset, spec.dataset_kwargs, prune.allocation,
                     prune.allocation_kwargs, prune.ratio, prune.round_to])
    # its own workers per allocation and the settings that pick its target and runtime: never an export's
    where = spec_hash([prune.allocation_kwargs.get(name) for name in ("target", "backend")])[:8]
    task = _untimed(Allocate(spec, prune.allocation), f"allocate:{key}", allocate_variant, spec, data,
                    str(workdir), timeout_s=timeout_s, times=f"{prune.allocation}-{where}")
    task.timed = True  # it measures latency: nothing else may run on this host's cores meanwhile
    return task


def predict_variant(spec: VariantSpec, data: DataRef, workdir: str, target: TargetSpec, backend: str) -> str:
    """Write ``spec``'s p50 on ``target``/``backend`` predicted by the latency tables (in a worker holding the
    host's cores: the tables and the unpruned model are timed), calibrated on the unpruned architecture.

    Returns the prediction's path, or why there is none: a prediction that cannot be made (a layer the runtime
    cannot load alone) must not cost the measurement that waits for it, so it is reported, not raised.
    """
    built = ModelCache(Path(workdir)).get(spec)
    if built is None:
        raise ArtifactError(f"variant {spec.label} is not in the model cache under {workdir}/models")
    splits = _dataset(data)
    example = torch.as_tensor(splits.x_train[:1])
    try:
        model = TargetLatencyModel(target, backend, Path(workdir) / "latency")
        prediction = model.predict(built.model, new_model(spec, splits), example)
    except Exception as exc:  # any failure of the model is news, never the end of the measurement
        return f"no latency prediction for {spec.label} on {target.name}/{backend}: {first_line(exc)}"
    path = prediction_path(Path(workdir), spec.id, target.name, backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(prediction.model_dump_json())
    return str(path)


def predictable(job: PlannedJob) -> bool:
    """Whether the latency tables can predict ``job``'s target and runtime: they time one-layer ONNX models on this
    host, so a local target whose runtime loads ONNX."""
    return job.artifact_format == "onnx" and job.target.kind == "local"


def _predict_task(job: PlannedJob, data: DataRef, workdir: Path, after: tuple[str, ...],
                  timeout_s: float) -> Task | None:
    """A timed task predicting ``job``'s p50 when its experiment asks (``measurement.predict_latency``) and the
    prediction applies: a pruned fp32 variant, ONNX on a local target; None otherwise."""
    if not job.measure.predict_latency or job.variant.external is not None:  # another tool's artifact: no model
        return None
    weights = job.variant.weights_spec
    if (weights.kind == "baseline" or job.variant.quant.precision != "fp32" or not predictable(job)
            or prediction_path(workdir, weights.id, job.target.name, job.backend).is_file()):
        return None
    task = _untimed(Predict(weights, job.target.name, job.backend), f"predict:{weights.id}:{job.target.name}:"
                    f"{job.backend}", predict_variant, weights, data, str(workdir), job.target, job.backend,
                    timeout_s=timeout_s, after=after, times=job.backend)
    task.timed = True  # it times layers and the unpruned model: nothing else may run on this host's cores meanwhile
    return task


def reference_for(spec: VariantSpec, workdir: str, eval_data: str, n: int) -> str:
    """Write the logits of the PyTorch model ``spec``'s artifact is exported from on the first ``n`` eval images (in a
    worker)."""
    built = ModelCache(Path(workdir)).get(spec)
    if built is None:
        raise ArtifactError(f"variant {spec.label} is not in the model cache under {workdir}/models")
    return str(write_reference(spec, built, np.load(eval_data)["x"], n, Path(workdir)))


def sweep_tasks(
    exp: Experiment,
    specs: list[VariantSpec],
    jobs: list[PlannedJob],
    runners: dict[str, Runner],
    workdir: Path,
    eval_path: Path,
    calibration: Path,
    side_by_side: list[int] | None = None,
    data_digest: str | None = None,
    input_spec: Mapping[str, Any] | None = None,
) -> list[Task]:
    """The tasks that build, export and measure what ``jobs`` still need, each after what it reads.

    ``side_by_side``: cores that passed the interference check (``executor.side_by_side``); the measurements
    that asked for parallel lanes and can have them (:func:`wants_side_by_side`) take one core each, in turn.
    ``data_digest``: the digest of the splits the run loaded, which every worker's load must match.
    ``input_spec``: what the artifacts must be fed, written into each where its format has a place for it.
    """
    turn = 0
    data = DataRef(exp.dataset.model_dump_json(), data_digest)
    timeout_s = exp.run.build_timeout_s
    builds = _build_tasks(specs, data, workdir, timeout_s)
    cache = ModelCache(workdir)
    prepared: dict[str, Task] = {}  # exports and references, shared by the jobs that read them
    fp32_artifacts = _fp32_artifacts(jobs, workdir)
    derived: dict[str, str] = {}  # export that starts from an fp32 artifact -> the export that writes that file
    measures: list[Task] = []
    by_id = {spec.id: spec for spec in specs}
    for job in jobs:
        external = job.variant.external
        # an external artifact is compared with the PyTorch model it was made from (its parent), when it names one
        weights = job.variant.weights_spec if external is None else by_id.get(external.parent_id or "")
        build_key = f"build:{weights.id}" if weights is not None else None  # none: an artifact with parent null
        built_by = (build_key,) if build_key in builds else ()
        artifact = artifact_path(job, workdir)
        n_reference = job.measure.reference_samples
        reference = reference_path(weights, workdir, n_reference) if weights is not None else None
        reference_key = f"reference:{weights.id}-{n_reference}" if weights is not None else ""
        if not artifact_ready(artifact) and external is not None:  # its "export" is a copy into the cache
            prepared.setdefault(f"export:{artifact.name}", _untimed(
                Export(artifact), f"export:{artifact.name}", import_artifact, job.variant, artifact, timeout_s=timeout_s))
        elif not artifact_ready(artifact):
            derives = get_exporter(job.artifact_format, job.target.blocks).derives_from_fp32
            source = (fp32_artifacts.get(_model_format(job))
                      if derives and job.export_quant.precision != "fp32" and job.export_quant.qat is None else None)
            export = ExportTask(job.artifact_format, job.target, job.export_quant, cache.model_path(weights),
                                calibration, artifact, fp32_source=source, input_spec=input_spec)
            if source is not None:
                derived[f"export:{artifact.name}"] = f"export:{source.name}"
            prepared.setdefault(f"export:{artifact.name}",
                                _untimed(Export(artifact), f"export:{artifact.name}", run_export, export,
                                         timeout_s=timeout_s, after=built_by))
        if weights is not None and reference is not None and not reference_ready(reference):
            prepared.setdefault(reference_key, _untimed(
                Reference(weights), reference_key, reference_for, weights, str(workdir), str(eval_path),
                n_reference, timeout_s=timeout_s, after=built_by))
        predict = _predict_task(job, data, workdir, built_by, timeout_s)
        if predict is not None:
            prepared.setdefault(predict.key, predict)
        runner = runners[job.target.name]
        lane = runner.lane()
        core = None
        if side_by_side and wants_side_by_side(job, lane):
            core, turn = side_by_side[turn % len(side_by_side)], turn + 1
            lane = Lane(HOST, frozenset({core}))
        worker_job = job.to_job(artifact, eval_path, reference)
        files = tuple(f for f in (artifact, eval_path, reference) if f is not None)
        task = measure_task(worker_job, runner.task_timeout(), lane=lane, resources=runner.resources(),
                            fn=runner.run, args=(worker_job, files), context=Measure(job, worker_job, core))
        predicted = predict.key if predict is not None else ""
        task.after = (*built_by, *(key for key in (f"export:{artifact.name}", reference_key, predicted)
                                   if key in prepared))
        measures.append(task)
    # first in line for the host's cores, so it runs before the builds start
    speed = [measure_task(reference_workload.reference_job(workdir), 300.0, context=MachineSpeed())] if measures else []
    for key, source_key in derived.items():
        if source_key in prepared:  # this sweep writes the fp32 file: wait for it rather than convert the model again
            prepared[key].after, prepared[key].continues = (*prepared[key].after, source_key), source_key
    return [*speed, *builds.values(), *prepared.values(), *measures]


def _model_format(job: PlannedJob) -> tuple[str, str, tuple[tuple[str, object], ...]]:
    """The trained model, artifact format and exporter settings of ``job``'s artifact, whatever its precision."""
    return job.variant.weights_spec.id, job.artifact_format, job.export_options


def _fp32_artifacts(jobs: list[PlannedJob], workdir: Path) -> dict[tuple[str, str, tuple[tuple[str, object], ...]], Path]:
    """The fp32 artifact the sweep has or writes for each (model, format, exporter settings): where an exporter that
    ``derives_from_fp32`` starts the model's other precisions (after the export that writes it, if any)."""
    found: dict[tuple[str, str, tuple[tuple[str, object], ...]], Path] = {}
    for job in jobs:
        if job.variant.external is None and job.export_quant.precision == "fp32" and job.export_quant.qat is None:
            found.setdefault(_model_format(job), artifact_path(job, workdir))
    return found


def wants_side_by_side(job: PlannedJob, lane: Lane) -> bool:
    """Whether ``job`` asked for a pinned side-by-side lane and can have one: single-thread, on this host's cores
    (not a board, not a target already pinned to cores of its own), with no energy meter that would count the
    other lanes' energy in its reading (:func:`meter_keeps_lanes_apart`)."""
    return (job.measure.parallel_lanes and job.target.threads == 1 and lane == Lane(HOST)
            and meter_keeps_lanes_apart(job))


def meter_keeps_lanes_apart(job: PlannedJob) -> bool:
    """Whether ``job``'s energy meter (if any) reads its own process alone: a package, board or wall meter reads
    every lane's work at once."""
    return reads_one_process(job.target.energy)


def _build_tasks(specs: list[VariantSpec], data: DataRef, workdir: Path, timeout_s: float) -> dict[str, Task]:
    """A build task per variant not in the model cache, after the baseline it starts from and its allocation."""
    cache = ModelCache(workdir)
    baseline = next((s for s in specs if s.kind == "baseline"), None)
    builds: dict[str, Task] = {}
    for spec in specs:
        if cache.has(spec):
            continue
        uses_baseline = starts_from_baseline(spec)
        after = [f"build:{baseline.id}"] if uses_baseline and baseline is not None and not cache.has(baseline) else []
        allocation = _allocation_task(spec, data, workdir, timeout_s)
        if allocation is not None:
            builds.setdefault(allocation.key, allocation)
            after.append(allocation.key)
        builds[f"build:{spec.id}"] = _untimed(BuildVariant(spec), f"build:{spec.id}", build_variant, spec,
                                              data, str(workdir),
                                              baseline if uses_baseline else None, timeout_s=timeout_s,
                                              after=tuple(after))
    return builds
