"""A run's work as executor tasks: build each variant (after a timed task for an allocation that measures latency),
export each artifact, write references, measure.

Tasks hand their products to each other through the run's cache files (``run_cache``, ``artifacts``),
never through return values, so any worker can run any task: a warm local process, or a Ray node that
sees the run directory at the same path. Each task names what it needs first (``after``): a measurement
waits for its artifact and reference, an export for its variant, a variant that reuses the baseline for
the baseline. Only what is missing becomes a task: a resumed run rebuilds nothing it already has.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from edgebench.artifacts import ExportTask, artifact_path, artifact_ready, run_export
from edgebench.config import Experiment
from edgebench.data import DatasetSplits, load_dataset
from edgebench.errors import ArtifactError
from edgebench.executor.base import HOST, Lane, Task
from edgebench.executor.runners import LocalRunner, Runner
from edgebench.executor.tasks import call_task, measure_task
from edgebench.plan import PlannedJob
from edgebench.prune import build_fp32_model
from edgebench.prune.allocation import ALLOCATIONS
from edgebench.prune.build import prepare_allocation
from edgebench.run_cache import ModelCache, reference_path, write_reference
from edgebench.targets import TargetSpec
from edgebench.variants import VariantSpec, spec_hash

#: a variant build may train for a long time; the experiment's job timeout is for measurements
BUILD_TIMEOUT_S = 24 * 3600.0


@functools.lru_cache(maxsize=2)
def _dataset(name: str, kwargs_json: str) -> DatasetSplits:
    """The dataset, loaded once per warm worker."""
    return load_dataset(name, **json.loads(kwargs_json))


def build_variant(spec: VariantSpec, dataset: str, dataset_kwargs_json: str, workdir: str,
                  baseline: VariantSpec | None) -> str:
    """Train/prune ``spec`` into the model cache (in a worker); ``baseline`` is read from the cache if built."""
    cache = ModelCache(Path(workdir))
    if not cache.has(spec):  # a build queued again after its node was lost may have finished there
        splits = _dataset(dataset, dataset_kwargs_json)
        base = cache.get(baseline) if baseline is not None else None
        cache.put(spec, build_fp32_model(spec, splits, baseline=base, workdir=Path(workdir)))
    return spec.id


def allocate_variant(spec: VariantSpec, dataset: str, dataset_kwargs_json: str, workdir: str) -> str:
    """Let ``spec``'s allocation measure what it needs on the unpruned model (in a worker holding the host's
    cores); it keeps the result under ``workdir`` for the builds."""
    prepare_allocation(spec, _dataset(dataset, dataset_kwargs_json), Path(workdir))
    return spec.id


def _allocation_task(spec: VariantSpec, dataset: str, dataset_kwargs: str, workdir: Path) -> Task | None:
    """A timed task for an allocation that times models (the latency allocation), shared by the variants whose
    architecture, allocation and ratio are the same; None for the others."""
    prune = spec.prune
    if prune is None or not prune.allocation or not ALLOCATIONS.get(prune.allocation).timed:
        return None
    key = spec_hash([spec.model, spec.model_kwargs, spec.dataset, spec.dataset_kwargs, prune.allocation,
                     prune.allocation_kwargs, prune.ratio, prune.round_to])
    task = call_task(f"allocate:{key}", "build", allocate_variant, spec, dataset, dataset_kwargs, str(workdir),
                     timeout_s=BUILD_TIMEOUT_S, context=f"{prune.allocation} allocation of {spec.label}")
    task.timed = True  # it measures latency: nothing else may run on this host's cores meanwhile
    return task


def reference_for(spec: VariantSpec, workdir: str, eval_data: str, n: int) -> str:
    """Write the fp32 PyTorch logits of ``spec`` on the first ``n`` eval images (in a worker)."""
    built = ModelCache(Path(workdir)).get(spec)
    if built is None:
        raise ArtifactError(f"variant {spec.label} is not in the model cache under {workdir}/models")
    return str(write_reference(spec, built, np.load(eval_data)["x"], n, Path(workdir)))


def measure_lane(target: TargetSpec, runner: Runner) -> tuple[Lane, dict[str, float]]:
    """What a target's measurement holds alone, and the Ray resources that stand for it.

    A local target holds this host's cores (only those it is pinned to, with ``ray: {cores: [...]}``); a
    remote board is its own lane, named by its Ray resource when the target declares one.
    """
    resources = dict(target.ray.resources) if target.ray else {}
    if resources:
        return Lane(",".join(sorted(resources))), resources
    if isinstance(runner, LocalRunner):
        cores = frozenset(target.ray.cores) if target.ray and target.ray.cores else None
        return Lane(HOST, cores), resources
    return Lane(runner.lane), resources


def _timeout(target: TargetSpec, job_timeout_s: float) -> float:
    """How long a measurement task may take: a remote board's own command timeout and retries bound it."""
    if target.ssh is None:
        return job_timeout_s
    ssh = target.ssh
    return (ssh.command_timeout_s + 3 * ssh.connect_timeout_s) * (ssh.retries + 1) + 60.0


def sweep_tasks(
    exp: Experiment,
    specs: list[VariantSpec],
    jobs: list[PlannedJob],
    runners: dict[str, Runner],
    workdir: Path,
    eval_path: Path,
    calibration: Path,
) -> list[Task]:
    """The tasks that build, export and measure what ``jobs`` still need, each after what it reads."""
    cache = ModelCache(workdir)
    dataset_kwargs = json.dumps(exp.dataset.kwargs, sort_keys=True)
    baseline = next((s for s in specs if s.kind == "baseline"), None)
    builds: dict[str, Task] = {}
    for spec in specs:
        if cache.has(spec):
            continue
        # pruning while training trains from scratch; every other kind starts from the trained baseline
        uses_baseline = spec.kind != "baseline" and not (spec.prune is not None and spec.prune.schedule == "while_training")
        task = call_task(f"build:{spec.id}", "build", build_variant, spec, exp.dataset.name, dataset_kwargs,
                         str(workdir), baseline if uses_baseline else None, timeout_s=BUILD_TIMEOUT_S, context=spec)
        after = [f"build:{baseline.id}"] if uses_baseline and baseline is not None and not cache.has(baseline) else []
        allocation = _allocation_task(spec, exp.dataset.name, dataset_kwargs, workdir)
        if allocation is not None:
            builds.setdefault(allocation.key, allocation)
            after.append(allocation.key)
        task.after = tuple(after)
        builds[task.key] = task

    prepared: dict[str, Task] = {}  # exports and references, shared by the jobs that read them
    measures: list[Task] = []
    for job in jobs:
        weights = job.variant.weights_spec
        built_by = tuple(k for k in (f"build:{weights.id}",) if k in builds)
        after = list(built_by)
        artifact = artifact_path(job, workdir)
        if not artifact_ready(artifact):
            key = f"export:{artifact.name}"
            if key not in prepared:
                spec_task = ExportTask(job.artifact_format, job.target, job.export_quant, cache.model_path(weights),
                                       calibration, artifact)
                prepared[key] = call_task(key, "export", run_export, spec_task, timeout_s=BUILD_TIMEOUT_S,
                                          context=artifact.name)
                prepared[key].after = built_by
            after.append(key)
        reference = reference_path(weights, workdir)
        if not reference.is_file():
            key = f"reference:{weights.id}"
            if key not in prepared:
                prepared[key] = call_task(key, "export", reference_for, weights, str(workdir), str(eval_path),
                                          job.measure.reference_samples, context=f"reference {weights.label}")
                prepared[key].after = built_by
            after.append(key)
        runner = runners[job.target.name]
        lane, resources = measure_lane(job.target, runner)
        worker_job = job.to_job(artifact, eval_path, reference)
        task = measure_task(worker_job, _timeout(job.target, exp.run.job_timeout_s), lane=lane, resources=resources,
                            fn=runner.run, args=(worker_job, (artifact, eval_path, reference)), context=job)
        task.after = tuple(after)
        measures.append(task)
    return [*builds.values(), *prepared.values(), *measures]
