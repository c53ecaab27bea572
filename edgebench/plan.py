"""Experiment -> variants and measurement jobs, without side effects.

Planning reads the experiment and target files, digests the files the user's model, weights and dataset options
name (their content is part of the variant ids), and imports the plug-ins the experiment names (their code is too);
nothing is trained, exported, probed or written. Whether a target can run now is asked of its runner by the
pipeline, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgebench.config import Experiment, PruningConfig, TargetSelection
from edgebench.errors import ConfigError
from edgebench.job import Job, MeasureSettings
from edgebench.models.source import model_ref
from edgebench.prune.allocation.base import PAPER
from edgebench.prune.criteria import CRITERIA
from edgebench.prune.schedules import SCHEDULES
from edgebench.prune.sparse import SPARSE_METHODS
from edgebench.runtimes.base import Exporter, get_backend, get_exporter
from edgebench.sampling import CALIBRATION_DRAW
from edgebench.targets import TargetSpec
from edgebench.variants import LowRankSpec, PruneSpec, QuantSpec, SparseSpec, VariantSpec, spec_hash

#: allocations the structured engine expresses through ``scope`` (their variants keep their original ids)
_SCOPE_ALLOCATIONS = {"uniform": "layer", "global": "global"}


def resolved_allocation(p: PruningConfig, allocation: str | None, criterion: str) -> str | None:
    """The allocation a criterion's variants use: the listed one, ``paper`` resolved to the criterion's own
    (``Criterion.paper_allocation``), or - with neither an allocation nor a scope set - the paper's; None means
    ``scope`` decides."""
    name = allocation or (PAPER if p.scope is None else None)
    return CRITERIA.get(criterion).paper_allocation if name == PAPER else name


def prune_spec(p: PruningConfig, criterion: str, ratio: float, schedule: str, allocation: str | None) -> PruneSpec:
    """One structured variant's spec: only the fields its schedule reads are set (the others cannot change its
    artifact, so they stay out of its id), and ``uniform`` / ``global`` are expressed as ``scope``."""
    name = resolved_allocation(p, allocation, criterion)
    scope = _SCOPE_ALLOCATIONS.get(name, "layer") if name else (p.scope or "layer")
    named = None if name is None or name in _SCOPE_ALLOCATIONS else name
    reads = SCHEDULES.get(schedule).reads
    return PruneSpec(
        criterion=criterion,
        ratio=ratio,
        schedule=schedule,
        unit=p.unit,
        scope=scope,
        round_to=p.round_to,
        prune_epochs=tuple(p.prune_epochs) if "prune_epochs" in reads else (),
        finetune_epochs=p.finetune_epochs if "finetune_epochs" in reads else 0,
        steps=p.steps if "steps" in reads else 1,
        criterion_kwargs=p.criterion_kwargs.get(criterion, {}),
        allocation=named,
        allocation_kwargs=p.allocation_kwargs.get(named, {}) if named else {},
        revision=CRITERIA.get(criterion).revision,
        keep=tuple(p.keep),
    )


def plan_fp32_variants(exp: Experiment) -> list[VariantSpec]:
    """The baseline, one fp32 variant per criterion x ratio x schedule x allocation (each once, however many
    allocation entries resolve to it), per sparse method x sparsity and per rank ratio."""
    source = exp.model_source()
    base = VariantSpec(
        model=model_ref(exp.model, source),
        model_kwargs=exp.model.kwargs,
        source=source,
        dataset=exp.dataset.name,
        dataset_kwargs=exp.dataset.kwargs,
        data_digest=exp.dataset.digest(),
        preprocess=exp.dataset.preprocess,
        train=exp.training,
    )
    p = exp.pruning
    variants = [base]
    for allocation in p.allocation or [None]:
        for schedule in p.schedules:
            for criterion in p.criteria:
                for ratio in p.ratios:
                    spec = base.model_copy(update={"prune": prune_spec(p, criterion, ratio, schedule, allocation)})
                    if spec.id not in {v.id for v in variants}:
                        variants.append(spec)
    if exp.sparse is not None:
        for method in exp.sparse.methods:
            for sparsity in exp.sparse.sparsities:
                sparse = SparseSpec(method=method, sparsity=sparsity, kwargs=exp.sparse.method_kwargs.get(method, {}),
                                    revision=SPARSE_METHODS.get(method).revision)
                variants.append(base.model_copy(update={"sparse": sparse}))
    if exp.lowrank is not None:
        lr = exp.lowrank
        for rank_ratio in lr.rank_ratios:
            lowrank = LowRankSpec(rank_ratio=rank_ratio, energy_transfer=lr.energy_transfer,
                                  bn_rectification=lr.bn_rectification)
            variants.append(base.model_copy(update={"lowrank": lowrank}))
    return variants


def at_precision(spec: VariantSpec, precision: str, exp: Experiment) -> VariantSpec:
    """``spec`` at another precision, with those of the experiment's quantization settings that change its artifact.

    Only static int8 is calibrated and only fixed point has a type and reuse factor, so an fp32 (or fp16) id
    never moves with the calibration setting, and an int8 variant's parent is the fp32 variant that is stored.
    """
    q = exp.quantization
    quant = QuantSpec(precision=precision)
    if precision == "int8":
        quant = QuantSpec(precision="int8", calibration_samples=q.calibration_samples, calibrator=q.calibrator)
    elif precision == "fixed":
        quant = QuantSpec(precision="fixed", fixed_point=q.fixed_point, reuse_factor=q.reuse_factor)
    return spec.model_copy(update={"quant": quant})


def qat_models(exp: Experiment, fp32_specs: list[VariantSpec]) -> list[VariantSpec]:
    """The quantization-trained models to build: one per QAT setting for each variant whose training run hosts it."""
    return [spec.model_copy(update={"quant": QuantSpec(qat=qat)})
            for qat in exp.quantization.qat for spec in fp32_specs if spec.hosts_qat]


def _variants_at(exp: Experiment, fp32_specs: list[VariantSpec], precision: str, exporter: Exporter) -> list[VariantSpec]:
    """Every variant at ``precision``: each fp32 spec calibrated (or as is); where the exporter takes them, its
    mixed-precision int8 (``max_drop``) and each QAT setting that exports to ``precision``."""
    variants = [at_precision(spec, precision, exp) for spec in fp32_specs]
    max_drop = exp.quantization.max_drop
    if precision == "int8" and max_drop is not None and exporter.takes_max_drop:
        variants += [v.model_copy(update={"quant": v.quant.model_copy(update={"max_drop": max_drop})})
                     for v in variants[: len(fp32_specs)]]
    qat_ok = precision in exporter.qat_precisions
    if qat_ok:
        variants += [model.model_copy(update={"quant": QuantSpec(precision=precision, qat=model.quant.qat)})
                     for model in qat_models(exp, fp32_specs)
                     if precision in model.quant.qat.precisions and exporter.takes_qat(model.quant.qat)]
    return variants


@dataclass(frozen=True)
class PlannedJob:
    """A (variant, target, backend) measurement to run."""

    variant: VariantSpec
    target: TargetSpec
    backend: str
    artifact_format: str
    export_options: tuple[tuple[str, object], ...]
    measure: MeasureSettings
    #: what the exporter writes; fp32 where the runtime applies the precision (TensorRT fp16 from fp32 ONNX)
    export_quant: QuantSpec

    @property
    def artifact_key(self) -> str:
        """Cache key of the exported artifact: the variant, the format and target settings that change it, and the
        versions of the packages that write it."""
        exporter = get_exporter(self.artifact_format, self.target.blocks)
        revision, versions = exporter.revision, exporter.converter_versions()
        variant = self.variant
        if self.export_quant.calibrator != variant.quant.calibrator and self.export_quant.precision == variant.quant.precision:
            # the exporter ignores the asked calibrator: one file for every calibrator, that of the one it uses
            variant = variant.model_copy(update={"quant": self.export_quant})
        calibrated = self.export_quant.precision in ("int8", "fixed") and self.export_quant.qat is None
        return spec_hash([variant.id, self.artifact_format, dict(self.export_options), self.export_quant.precision,
                          *([revision] if revision else []),  # revision 0 keeps the keys artifacts had before it
                          *([versions] if versions else []),  # so does a plug-in exporter that declares no converters
                          *([f"calibration-draw-{CALIBRATION_DRAW}"] if calibrated else [])])

    @property
    def settings(self) -> dict[str, object]:
        """What besides the variant determines the figures (matched on by compare)."""
        return {
            "threads": self.target.threads,
            "device": self.target.device,
            "precision": self.variant.quant.precision,
            "scenario": self.measure.scenario,
            "batch_size": self.measure.effective_batch_size,
            "backend_options": self.target.backend_options.get(self.backend, {}),
            "export_options": dict(self.export_options),
            "artifact_format": self.artifact_format,
            "artifact_precision": self.export_quant.precision,
            # recorded with every int8 measurement; absent elsewhere so other jobs keep their keys
            **({"calibrator": self.export_quant.calibrator} if self.export_quant.calibrator else {}),
        }

    @property
    def key(self) -> str:
        """Stable key: a resumed run skips jobs whose key is already stored."""
        return spec_hash([self.variant.id, self.target.name, self.backend, self.settings])

    def to_job(self, artifact: Path, eval_data: Path, reference: Path | None) -> Job:
        """The worker's job for this measurement, reading the given local files."""
        return Job(
            job_id=self.key,
            variant_id=self.variant.id,
            target=self.target.name,
            backend=self.backend,
            artifact=str(artifact.resolve()),
            threads=self.target.threads,
            device=self.target.device,
            precision=self.variant.quant.precision,
            backend_options=self.target.backend_options.get(self.backend, {}),
            eval_data=str(eval_data.resolve()),
            reference=str(reference.resolve()) if reference else None,
            # predictions and lanes are the controller's business: a device's worker never sees the flags
            measure=self.measure.model_copy(update={"predict_latency": False, "parallel_lanes": False}),
            energy=self.target.energy,
        )


def ignored_calibrator(exp: Experiment, targets: list[tuple[TargetSelection, TargetSpec]]) -> list[str]:
    """A line per target and backend whose int8 export calibrates its own way, not by ``quantization.calibrator``
    (LiteRT: min and max only): its int8 measurements record the calibrator its file was made with."""
    calibrator = exp.quantization.calibrator
    if "int8" not in exp.quantization.precisions:
        return []
    lines = []
    for _, target in targets:
        for backend in target.backends:
            exporter = get_exporter(target.artifact_format(backend), target.blocks)
            if "int8" in exporter.precisions and exporter.calibrators is not None and calibrator not in exporter.calibrators:
                lines.append(f"{target.name}/{backend}: int8 is calibrated by {' or '.join(exporter.calibrators)}, not "
                             f"quantization.calibrator '{calibrator}' (which ONNX Runtime's int8 uses)")
    return lines


def check_qat_targets(exp: Experiment, targets: list[tuple[TargetSelection, TargetSpec]]) -> None:
    """ConfigError (one line) for a QAT setting that none of the experiment's targets can take: no backend of
    theirs exports its precisions from trained quantizers (float scales on an hls4ml-only experiment, 4 bits on a
    LiteRT-only one, say)."""
    for i, qat in enumerate(exp.quantization.qat):
        wanted = set(qat.precisions) & set(exp.quantization.precisions)
        exporters = [(target, get_exporter(target.artifact_format(backend), target.blocks))
                     for _, target in targets for backend in target.backends]
        takers = [target.name for target, exporter in exporters
                  if wanted & set(exporter.qat_precisions) & set(target.precisions or wanted) and exporter.takes_qat(qat)]
        if not takers:
            raise ConfigError(f"quantization.qat.{i} ({qat.tag}): no target of the experiment takes a quantization-"
                              f"trained {' or '.join(sorted(wanted))} artifact ({', '.join(t.name for _, t in targets)}); "
                              "ONNX Runtime/OpenVINO take int8, LiteRT int8 at 8 bits, hls4ml fixed from scales: power_of_two")


def plan_jobs(
    exp: Experiment, fp32_specs: list[VariantSpec], targets: list[tuple[TargetSelection, TargetSpec]]
) -> tuple[list[PlannedJob], list[str]]:
    """Every (variant x precision, target, backend) job of ``exp``; plus the combinations no exporter makes."""
    jobs, unsupported = [], []
    for selection, target in targets:
        target_jobs, target_unsupported = plan_target_jobs(exp, fp32_specs, selection, target)
        jobs += target_jobs
        unsupported += target_unsupported
    if targets and (nowhere := [p for p in exp.quantization.precisions
                                if all(t.precisions is not None and p not in t.precisions for _, t in targets)]):
        unsupported.append(f"{', '.join(nowhere)}: no target of the experiment runs "
                           f"{'it' if len(nowhere) == 1 else 'them'} (each target file lists its precisions)")
    return jobs, unsupported


def _as_exported(quant: QuantSpec, exporter: Exporter) -> QuantSpec:
    """``quant`` as ``exporter`` writes it: an int8 calibrator it has not (LiteRT calibrates by min and max only)
    becomes the one it uses, so the measurement records the calibrator behind its file."""
    if quant.calibrator is None or exporter.calibrators is None or quant.calibrator in exporter.calibrators:
        return quant
    return quant.model_copy(update={"calibrator": exporter.calibrators[0]})


def plan_target_jobs(
    exp: Experiment, fp32_specs: list[VariantSpec], selection: TargetSelection, target: TargetSpec
) -> tuple[list[PlannedJob], list[str]]:
    """The jobs of one target: per backend, its artifact format and every precision it can run."""
    jobs, unsupported = [], []
    measure_settings = exp.measurement_for(selection)
    if target.precisions is not None:
        # fixed point is the FPGA targets' precision alone, and theirs: neither kind says it of the other's
        excluded = [p for p in exp.quantization.precisions if p not in target.precisions
                    and p != "fixed" and "fixed" not in target.precisions]
        if excluded and set(target.precisions) & set(exp.quantization.precisions):
            unsupported.append(f"{target.name}: {', '.join(excluded)} not run (its target file's precisions: "
                               f"{', '.join(target.precisions)})")
    for backend_name in target.backends:
        backend = get_backend(backend_name)
        fmt = target.artifact_format(backend_name)
        exporter = get_exporter(fmt, target.blocks)
        options = tuple(sorted(exporter.options().items()))
        for precision in exp.quantization.precisions:
            if target.precisions is not None and precision not in target.precisions:
                continue
            # the runtime's own fp16 (TensorRT, OpenVINO's hint) from the fp32 file, even where an fp16 file exists
            runtime_applied = precision in backend.builds_from_fp32
            if precision not in exporter.precisions and not runtime_applied:
                unsupported.append(f"{target.name}/{backend_name}: {precision} not measured, by design (edgebench "
                                   f"exports {fmt} files in {', '.join(exporter.precisions)} only)")
                continue
            for variant in _variants_at(exp, fp32_specs, precision, exporter):
                export_quant = QuantSpec() if runtime_applied else _as_exported(variant.quant, exporter)
                if selection.includes(variant):
                    jobs.append(PlannedJob(variant, target, backend_name, fmt, options, measure_settings, export_quant))
    if target.precisions is not None and not set(target.precisions) & set(exp.quantization.precisions):
        # listed by the experiment, yet none of its precisions is one this target runs: say so, not nothing
        unsupported.append(f"{target.name}: it runs {', '.join(target.precisions)}, which quantization.precisions "
                           f"({', '.join(exp.quantization.precisions)}) does not list")
    return jobs, unsupported


def plan_external_jobs(
    exp: Experiment, externals: list[VariantSpec], targets: list[tuple[TargetSelection, TargetSpec]]
) -> tuple[list[PlannedJob], list[str]]:
    """A job for every external artifact on every backend of every target that loads its format (and runs its
    precision); plus the artifacts no target can load."""
    jobs, unsupported = [], []
    for spec in externals:
        assert spec.external is not None
        found = [
            PlannedJob(spec, target, backend, spec.external.format, (), exp.measurement_for(selection), spec.quant)
            for selection, target in targets
            if selection.includes(spec) and (target.precisions is None or spec.quant.precision in target.precisions)
            for backend in target.backends
            if spec.external.format in get_backend(backend).formats
        ]
        if not found:
            unsupported.append(f"artifact {spec.external.label}: no available target loads {spec.external.format} at "
                               f"{spec.quant.precision}")
        jobs += found
    return jobs, unsupported
