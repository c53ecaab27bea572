"""Runs an experiment: variants -> artifacts -> isolated measurements -> store -> report.

Each stage reads only what the previous one wrote. Trained models and exported
artifacts are cached by content hash under the run directory, and finished
jobs are skipped when an interrupted run of the same experiment is resumed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgebench.backends.base import get_backend
from edgebench.config import Experiment
from edgebench.data import DatasetSplits, load_dataset
from edgebench.errors import EdgebenchError
from edgebench.export.base import get_exporter
from edgebench.measure.job import Job, JobResult
from edgebench.measure.machine import machine_info
from edgebench.measure.worker import run_isolated
from edgebench.plan import PlannedJob, plan_fp32_variants, quantized
from edgebench.prune import BuiltModel, build_fp32_model
from edgebench.store import Store
from edgebench.targets import TargetSpec, get_target, target_unavailable_reason
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

    def get(self, spec: VariantSpec) -> BuiltModel | None:
        model_path, facts_path = self.dir / f"{spec.id}.pt", self.dir / f"{spec.id}.json"
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
        _atomic_save(built.model, self.dir / f"{spec.id}.pt")
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
        if spec.prune is None:
            baseline = model
        built[spec.id] = (spec, model)
    if progress:
        progress("variants", len(specs), len(specs), "done")
    return built


def write_eval_data(splits: DatasetSplits, workdir: Path) -> Path:
    """The test split as the npz every worker reads (written once per dataset content)."""
    key = spec_hash([splits.name, splits.x_test.shape, float(splits.x_test.sum()), int(splits.y_test.sum())])
    path = workdir / "data" / f"test-{key}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, x=splits.x_test.astype(np.float32), y=splits.y_test.astype(np.int64))
        os.replace(tmp, path)
    return path


def write_reference(spec: VariantSpec, built: BuiltModel, x: np.ndarray, n: int, workdir: Path) -> Path:
    """fp32 PyTorch logits on the first ``n`` test images, for the max-output-difference check."""
    path = workdir / "reference" / f"{spec.id}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            logits = built.model.eval()(torch.from_numpy(x[:n])).numpy()
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, logits=logits)
        os.replace(tmp, path)
    return path


def plan_jobs(
    exp: Experiment, fp32: dict[str, tuple[VariantSpec, BuiltModel]], targets: list[TargetSpec]
) -> tuple[list[PlannedJob], list[str]]:
    """Every (variant x precision, target, backend) that can run here; plus what cannot, and why.

    An unavailable target or backend (a missing extra, no GPU, an unreachable host) is reported, not
    failed: the default experiment lists targets whose extras a lean install does not have.
    """
    jobs, unsupported = [], []
    for target in targets:
        reason = target_unavailable_reason(target)
        if reason:
            unsupported.append(f"target {target.name}: {reason}")
            continue
        for backend_name in target.backends:
            backend = get_backend(backend_name)
            fmt = backend.formats[0]
            exporter = get_exporter(fmt)
            for precision in exp.quantization.precisions:
                if target.precisions is not None and precision not in target.precisions:
                    continue
                if precision not in exporter.precisions:
                    unsupported.append(f"{target.name}/{backend_name}: no {precision} {fmt} export")
                    continue
                for spec, _ in fp32.values():
                    jobs.append(PlannedJob(quantized(spec, precision, exp), target, backend_name, fmt))
    return jobs, unsupported


def export_artifact(job: PlannedJob, built: BuiltModel, calibration: np.ndarray, workdir: Path) -> Path:
    """Export (or reuse) the artifact of ``job``'s variant in its backend's format."""
    exporter = get_exporter(job.artifact_format)
    reason = exporter.available()
    if reason:
        raise EdgebenchError(f"{job.artifact_format} export unavailable: {reason}")
    out_dir = workdir / "artifacts"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{job.variant.id}{exporter.suffix}"
    if path.exists():
        return path
    tmp = out_dir / f"{job.variant.id}.tmp{exporter.suffix}"
    result = exporter.export(built.model, job.variant.quant, calibration, tmp)
    final = path if result == tmp else out_dir / f"{job.variant.id}{result.suffix}"
    os.replace(result, final)
    return final


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory artifact."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def measure(job: Job, target: TargetSpec, timeout_s: float) -> JobResult:
    """Run one job locally in an isolated worker, or on the target over SSH."""
    if target.kind == "ssh":
        from edgebench.remote import run_job_remote

        files = [Path(job.artifact), Path(job.eval_data)] + ([Path(job.reference)] if job.reference else [])
        return run_job_remote(job, target, files)
    return run_isolated(job, timeout_s)


def run_experiment(
    exp: Experiment,
    tags: tuple[str, ...] = (),
    progress: ProgressFn | None = None,
    render: bool = True,
) -> RunOutcome:
    """Run (or resume) ``exp`` end to end and return where its results are."""
    targets = [get_target(name) for name in exp.targets]
    workdir = exp.workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    splits = load_dataset(exp.dataset.name, **exp.dataset.kwargs)

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

        fp32 = build_models(exp, splits, ModelCache(workdir), progress)
        eval_path = write_eval_data(splits, workdir)
        calibration = splits.x_train[: exp.quantization.calibration_samples].astype(np.float32)
        jobs, outcome.unsupported = plan_jobs(exp, fp32, targets)
        done = store.done_job_keys(run_id)

        for i, job in enumerate(jobs):
            if progress:
                progress("measure", i, len(jobs), f"{job.variant.label} on {job.target.name}/{job.backend}")
            if job.key in done:
                outcome.skipped += 1
                continue
            weights_spec = job.variant.weights_spec
            built = fp32[weights_spec.id][1]
            store.upsert_variant(job.variant.id, job.variant.model_dump(mode="json"), job.variant.label,
                                 job.variant.parent_id, _facts(built))
            result, size = _export_and_measure(exp, job, built, calibration, eval_path, splits, workdir)
            settings = dict(job.settings, scenario=exp.measurement.scenario, batch_size=result.batch_size)
            store.add_measurement(run_id, job.key, job.variant.id, job.target.name, job.backend, settings,
                                  result.model_dump(), size)
            if result.status == "ok":
                outcome.measured += 1
            else:
                outcome.failed.append(f"{job.variant.label} on {job.target.name}/{job.backend}: {result.error}")
        if progress:
            progress("measure", len(jobs), len(jobs), "done")
        store.finish_run(run_id)
        if render:
            from edgebench.report import render_report

            outcome.report_path = render_report(store, run_id, exp.report_dir(), exp.report.objectives)
        return outcome
    finally:
        store.close()


def _facts(built: BuiltModel) -> dict[str, object]:
    return {k: v for k, v in vars(built).items() if k not in ("model", "history")}


def _export_and_measure(
    exp: Experiment, job: PlannedJob, built: BuiltModel, calibration: np.ndarray, eval_path: Path,
    splits: DatasetSplits, workdir: Path,
) -> tuple[JobResult, int | None]:
    """Export then measure; an export error becomes a failed result, like a crashed worker."""
    job_id = job.key
    try:
        artifact = export_artifact(job, built, calibration, workdir)
    except Exception as exc:
        log.warning("export of %s for %s failed: %s", job.variant.label, job.backend, exc)
        return JobResult(job_id=job_id, status="failed", error=f"export failed: {exc}"), None
    reference = write_reference(job.variant.weights_spec, built, splits.x_test, exp.measurement.reference_samples,
                                workdir)
    worker_job = Job(
        job_id=job_id,
        variant_id=job.variant.id,
        target=job.target.name,
        backend=job.backend,
        artifact=str(artifact.resolve()),
        threads=job.target.threads,
        device=job.target.device,
        precision=job.variant.quant.precision,
        backend_options=job.target.backend_options.get(job.backend, {}),
        eval_data=str(eval_path.resolve()),
        reference=str(reference.resolve()),
        measure=exp.measurement,
        energy=job.target.energy,
    )
    return measure(worker_job, job.target, exp.run.job_timeout_s), artifact_size(artifact)
