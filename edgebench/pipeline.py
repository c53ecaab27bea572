"""Runs an experiment: variants -> artifacts -> isolated measurements -> store -> report.

Each stage reads only what the previous one wrote. Trained models and exported
artifacts are cached by content hash under the run directory, and finished
jobs are skipped when an interrupted run of the same experiment is resumed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgebench import archive
from edgebench.archive import compressed_size
from edgebench.artifacts import ExportTask, artifact_path, artifact_size, export_all
from edgebench.config import Experiment, TargetSelection
from edgebench.data import DatasetSplits, load_dataset
from edgebench.errors import NothingToRunError
from edgebench.executor.runners import Runner, runner_for
from edgebench.measure.job import JobResult
from edgebench.measure.machine import machine_info
from edgebench.plan import PlannedJob, plan_fp32_variants, plan_jobs
from edgebench.preflight import check_model_fits_data, check_output_paths
from edgebench.prune import BuiltModel, build_fp32_model
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord
from edgebench.targets import TargetSpec, get_target
from edgebench.variants import VariantSpec, spec_hash

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


def _atomic_save(obj: object, path: Path) -> None:
    """Write via a temporary file so a killed run never leaves a half-written cache entry."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    if isinstance(obj, torch.nn.Module):
        torch.save(obj, tmp)
    else:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


class ModelCache:
    """Trained/pruned fp32 models cached by variant id under ``<workdir>/models``."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "models"
        self.dir.mkdir(parents=True, exist_ok=True)

    def model_path(self, spec: VariantSpec) -> Path:
        """The pickled module of ``spec`` (exporters load it in their own processes)."""
        return self.dir / f"{spec.id}.pt"

    def get(self, spec: VariantSpec) -> BuiltModel | None:
        model_path, facts_path = self.model_path(spec), self.dir / f"{spec.id}.json"
        if not (model_path.is_file() and facts_path.is_file()):
            return None
        try:
            model = torch.load(model_path, map_location="cpu", weights_only=False).eval()
            facts = json.loads(facts_path.read_text())
        except Exception as exc:  # a corrupt cache entry is rebuilt, not fatal
            log.warning("cached model %s unreadable (%s); rebuilding", model_path, exc)
            return None
        return BuiltModel(model=model, **facts)

    def put(self, spec: VariantSpec, built: BuiltModel) -> None:
        facts = {k: v for k, v in vars(built).items() if k != "model"}
        _atomic_save(built.model, self.model_path(spec))
        _atomic_save(facts, self.dir / f"{spec.id}.json")


def build_models(
    exp: Experiment, splits: DatasetSplits, cache: ModelCache, progress: ProgressFn | None = None
) -> dict[str, tuple[VariantSpec, BuiltModel]]:
    """Train the baseline and every pruned fp32 variant (cached), keyed by variant id."""
    specs = plan_fp32_variants(exp)
    built: dict[str, tuple[VariantSpec, BuiltModel]] = {}
    baseline: BuiltModel | None = None
    for i, spec in enumerate(specs):
        if progress:
            progress("variants", i, len(specs), spec.label)
        model = cache.get(spec)
        if model is None:
            model = build_fp32_model(spec, splits, baseline=baseline)
            cache.put(spec, model)
        if spec.kind == "baseline":
            baseline = model
        built[spec.id] = (spec, model)
    if progress:
        progress("variants", len(specs), len(specs), "done")
    return built


def _cached_npz(path: Path, make_arrays: Callable[[], dict[str, np.ndarray]]) -> Path:
    """Write ``make_arrays()`` to ``path`` once, via a temporary file so a killed run leaves no partial file."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **make_arrays())
        os.replace(tmp, path)
    return path


def write_eval_data(splits: DatasetSplits, workdir: Path) -> Path:
    """The test split as the npz every worker reads (written once per dataset content)."""
    key = spec_hash([splits.name, splits.x_test.shape, float(splits.x_test.sum()), int(splits.y_test.sum())])
    return _cached_npz(workdir / "data" / f"test-{key}.npz",
                       lambda: {"x": splits.x_test.astype(np.float32), "y": splits.y_test.astype(np.int64)})


def write_reference(spec: VariantSpec, built: BuiltModel, x: np.ndarray, n: int, workdir: Path) -> Path:
    """fp32 PyTorch logits on the first ``n`` test images, for the max-output-difference check."""

    def logits() -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {"logits": built.model.eval()(torch.from_numpy(x[:n])).numpy()}

    return _cached_npz(workdir / "reference" / f"{spec.id}.npz", logits)


def write_calibration(x_train: np.ndarray, n: int, workdir: Path) -> Path:
    """The first ``n`` training images, read by exporters that calibrate (int8)."""
    x = np.ascontiguousarray(x_train[:n], dtype=np.float32)
    return _cached_npz(workdir / "data" / f"calibration-{spec_hash([x.shape, float(x.sum())])}.npz",
                       lambda: {"x": x})


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
    """
    targets = [(selection, get_target(selection.name)) for selection in exp.targets]
    check_output_paths(exp)
    workdir = exp.workdir()
    runners = {target.name: runner_for(target, exp.run.job_timeout_s) for _, target in targets}
    ready, unavailable = available_targets(targets, runners)
    jobs, unsupported = plan_jobs(exp, plan_fp32_variants(exp), ready)
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

        clock = time.perf_counter()
        cache = ModelCache(workdir)
        fp32 = build_models(exp, splits, cache, progress)
        outcome.stage_seconds["variants"] = time.perf_counter() - clock
        for spec, built in fp32.values():  # every quantized variant's parent is stored, measured or not
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id, _facts(built))
        eval_path = write_eval_data(splits, workdir)
        calibration = write_calibration(splits.x_train, exp.quantization.calibration_samples, workdir)
        outcome.unsupported = unavailable + unsupported
        done = store.done_job_keys(run_id)
        todo = [job for job in jobs if job.key not in done]
        outcome.skipped = len(jobs) - len(todo)

        tasks = [
            ExportTask(job.artifact_format, job.target, job.export_quant, cache.model_path(job.variant.weights_spec),
                       calibration, artifact_path(job, workdir))
            for job in todo
        ]
        clock = time.perf_counter()
        export_errors = export_all(tasks, workdir / "logs", progress=_stage(progress, "export"))
        outcome.stage_seconds["export"] = time.perf_counter() - clock
        clock = time.perf_counter()

        for i, job in enumerate(todo):
            if progress:
                progress("measure", i, len(todo), f"{job.variant.label} on {job.target.name}/{job.backend}")
            result, size = _measure_job(job, runners[job.target.name], fp32, splits, eval_path, export_errors, workdir)
            built = fp32[job.variant.weights_spec.id][1]
            store.upsert_variant(job.variant.id, job.variant.model_dump(mode="json"), job.variant.label,
                                 job.variant.parent_id, _facts(built))
            store.add_measurement(MeasurementRecord(run_id, job.key, job.variant.id, job.target.name, job.backend,
                                                    result, job.settings, size))
            if result.status == "ok":
                outcome.measured += 1
            else:
                outcome.failed.append(f"{job.variant.label} on {job.target.name}/{job.backend}: {result.error}")
        if progress:
            progress("measure", len(todo), len(todo), "done")
        outcome.stage_seconds["measure"] = time.perf_counter() - clock
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


def _stage(progress: ProgressFn | None, stage: str) -> Callable[[int, int, str], None] | None:
    if progress is None:
        return None
    return lambda done, total, detail: progress(stage, done, total, detail)


def _facts(built: BuiltModel) -> dict[str, object]:
    return {k: v for k, v in vars(built).items() if k not in ("model", "history")}


def _measure_job(
    job: PlannedJob,
    runner: Runner,
    fp32: dict[str, tuple[VariantSpec, BuiltModel]],
    splits: DatasetSplits,
    eval_path: Path,
    export_errors: dict[Path, str | None],
    workdir: Path,
) -> tuple[JobResult, int | None]:
    """Measure one job; a failed export becomes a failed result, like a crashed worker."""
    artifact = artifact_path(job, workdir)
    error = export_errors.get(artifact)
    if error is not None:
        return JobResult(job_id=job.key, status="failed", error=f"export failed: {error}"), None
    weights_spec = job.variant.weights_spec
    reference = write_reference(weights_spec, fp32[weights_spec.id][1], splits.x_test,
                                job.measure.reference_samples, workdir)
    result = runner.run(job.to_job(artifact, eval_path, reference), [artifact, eval_path, reference])
    # what sparsity buys on disk shows only compressed: zeros take their full width in a dense artifact
    packed = {"compressed_bytes": compressed_size(artifact), "encoding": archive.ENCODING}
    return result.model_copy(update={"details": {**result.details, "artifact": packed}}), artifact_size(artifact)
