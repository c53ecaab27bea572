"""Experiment -> list of variants and measurement jobs (no side effects)."""

from __future__ import annotations

from dataclasses import dataclass

from edgebench.config import Experiment
from edgebench.measure.job import MeasureSettings
from edgebench.targets import TargetSpec
from edgebench.variants import PruneSpec, QuantSpec, VariantSpec, spec_hash


def plan_fp32_variants(exp: Experiment) -> list[VariantSpec]:
    """The baseline followed by one fp32 variant per criterion x ratio x schedule."""
    base = VariantSpec(
        model=exp.model.name,
        model_kwargs=exp.model.kwargs,
        dataset=exp.dataset.name,
        dataset_kwargs=exp.dataset.kwargs,
        train=exp.training,
    )
    p = exp.pruning
    variants = [base]
    for schedule in p.schedules:
        for criterion in p.criteria:
            for ratio in p.ratios:
                prune = PruneSpec(
                    criterion=criterion,
                    ratio=ratio,
                    schedule=schedule,
                    unit=p.unit,
                    scope=p.scope,
                    round_to=p.round_to,
                    prune_epochs=tuple(p.prune_epochs) if schedule == "while_training" else (),
                    finetune_epochs=p.finetune_epochs if schedule in ("oneshot_finetune", "iterative") else 0,
                    steps=p.steps if schedule == "iterative" else 1,
                    criterion_kwargs=p.criterion_kwargs.get(criterion, {}),
                )
                variants.append(base.model_copy(update={"prune": prune}))
    return variants


def quantized(spec: VariantSpec, precision: str, exp: Experiment) -> VariantSpec:
    """``spec`` at another precision, with the experiment's quantization settings."""
    q = exp.quantization
    quant = QuantSpec(precision=precision, calibration_samples=q.calibration_samples)
    if precision == "fixed":
        quant = QuantSpec(precision="fixed", fixed_point=q.fixed_point, reuse_factor=q.reuse_factor)
    return spec.model_copy(update={"quant": quant})


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
        """Cache key of the exported artifact: the variant, the format and target settings that change it."""
        return spec_hash([self.variant.id, self.artifact_format, dict(self.export_options), self.export_quant.precision])

    @property
    def settings(self) -> dict[str, object]:
        """What besides the variant determines the figures (matched on by compare)."""
        return {
            "threads": self.target.threads,
            "device": self.target.device,
            "precision": self.variant.quant.precision,
            "scenario": self.measure.scenario,
            "batch_size": self.measure.batch_size if self.measure.scenario == "offline" else 1,
            "backend_options": self.target.backend_options.get(self.backend, {}),
            "export_options": dict(self.export_options),
            "artifact_format": self.artifact_format,
            "artifact_precision": self.export_quant.precision,
        }

    @property
    def key(self) -> str:
        """Stable key: a resumed run skips jobs whose key is already stored."""
        return spec_hash([self.variant.id, self.target.name, self.backend, self.settings])
