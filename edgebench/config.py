"""The experiment file: pydantic models of its YAML, validated with one clear line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgebench import yaml_file
from edgebench.errors import ConfigError, format_validation_error
from edgebench.measure.job import MeasureSettings
from edgebench.options import validate_options
from edgebench.preflight import check_experiment
from edgebench.store.metrics import get_metric
from edgebench.variants import DEFAULT_CALIBRATOR, Calibrator, Precision, Schedule, TrainSpec, VariantSpec, spec_hash

DEFAULT_EXPERIMENT = Path(__file__).resolve().parent / "experiments" / "default.yaml"


def _known_metric(name: str) -> str:
    get_metric(name)  # raises naming the allowed metrics
    return name


#: a metric name from ``edgebench.store.metrics`` (``accuracy``, ``latency_p50_ms``, ``size``...)
Objective = Annotated[str, AfterValidator(_known_metric)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """Which dataset and how to split it."""

    name: str = "digits"
    kwargs: dict[str, Any] = Field(default_factory=dict, description="e.g. path, seed, val_fraction")


class ModelConfig(_Strict):
    """Which zoo model."""

    name: str = "digits_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class PruningConfig(_Strict):
    """The pruning grid: every criterion x ratio x schedule becomes a variant."""

    criteria: list[str] = Field(default_factory=lambda: ["l1", "mean_activation", "random"])
    ratios: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.8])
    schedules: list[Schedule] = Field(default_factory=lambda: ["while_training"])
    unit: Literal["filters", "macs"] = "filters"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = Field(None, ge=1)
    prune_epochs: list[int] = Field(default_factory=list, description="while_training: epochs after which to prune")
    finetune_epochs: int = Field(10, ge=0)
    steps: int = Field(3, ge=1)
    criterion_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, ratios: list[float]) -> list[float]:
        bad = [r for r in ratios if not 0 < r < 1]
        if bad:
            raise ValueError(f"ratios must be fractions strictly between 0 and 1, got {bad}")
        return ratios


class QuantizationConfig(_Strict):
    """The precision grid applied to every pruned (and the baseline) model."""

    precisions: list[Precision] = Field(default_factory=lambda: ["fp32", "int8"])
    calibration_samples: int = Field(256, ge=1)
    fixed_point: str = "ap_fixed<16,6>"
    reuse_factor: int = Field(1, ge=1)
    calibrator: Calibrator = Field(
        DEFAULT_CALIBRATOR, description="int8 ONNX activation ranges: minmax | entropy | percentile "
        "(scripts/study_int8_calibration.py measures them)")


class TargetSelection(_Strict):
    """A target of the experiment, optionally restricted to some variants or with its own timing rules.

    Slow targets (the hls4ml C simulation takes ~20 s per variant) can measure a subset; the baseline
    is always included so speedups and accuracy drops have a reference.
    """

    name: str
    criteria: list[str] | None = Field(None, description="only these pruning criteria (None = all)")
    ratios: list[float] | None = Field(None, description="only these pruning ratios (None = all)")
    schedules: list[Schedule] | None = Field(None, description="only these schedules (None = all)")
    precisions: list[Precision] | None = Field(None, description="only these precisions (None = all)")
    measurement: dict[str, Any] = Field(default_factory=dict, description="overrides of `measurement` fields")

    def includes(self, spec: VariantSpec) -> bool:
        """Whether ``spec`` is measured on this target."""
        if self.precisions is not None and spec.quant.precision not in self.precisions:
            return False
        p = spec.prune
        if p is None:
            return True
        return (
            (self.criteria is None or p.criterion in self.criteria)
            and (self.ratios is None or p.ratio in self.ratios)
            and (self.schedules is None or p.schedule in self.schedules)
        )


class StoreConfig(_Strict):
    """Where results go: a SQLite path or a database URL."""

    url: str | None = Field(None, description="default: runs/<experiment name>/results.db")


class ReportConfig(_Strict):
    """Where the report is written and which objective pairs get Pareto fronts."""

    dir: str | None = Field(None, description="default: reports/<experiment name>")
    objectives: list[tuple[Objective, Objective]] = Field(
        default_factory=lambda: [
            ("accuracy", "latency_p50_ms"),
            ("accuracy", "size_bytes"),
            ("accuracy", "macs"),
        ]
    )


class RunConfig(_Strict):
    """Worker isolation and caching."""

    workdir: str | None = Field(None, description="artifact cache and run files; default runs/<name>")
    job_timeout_s: float = Field(300.0, gt=0)


class Experiment(_Strict):
    """A whole experiment file."""

    name: str = "default"
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    training: TrainSpec = TrainSpec()
    pruning: PruningConfig = PruningConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    targets: list[TargetSelection] = Field(
        default_factory=lambda: [TargetSelection(name="local-cpu")],
        min_length=1,
        description="target names, or {name: ..., criteria/ratios/precisions: [...], measurement: {...}}",
    )
    measurement: MeasureSettings = MeasureSettings()
    store: StoreConfig = StoreConfig()
    report: ReportConfig = ReportConfig()
    run: RunConfig = RunConfig()

    @field_validator("targets", mode="before")
    @classmethod
    def _names_to_selections(cls, targets: Any) -> Any:
        if isinstance(targets, list):
            return [{"name": t} if isinstance(t, str) else t for t in targets]
        return targets

    def measurement_for(self, target: TargetSelection) -> MeasureSettings:
        """The experiment's measurement settings with ``target``'s overrides applied."""
        return MeasureSettings.model_validate({**self.measurement.model_dump(), **target.measurement})

    @property
    def hash(self) -> str:
        """Content hash of the experiment; a re-run of the same file resumes the same run."""
        return spec_hash(self.model_dump(mode="json"))

    def workdir(self) -> Path:
        """Run directory (artifact cache, eval data, default store)."""
        return Path(self.run.workdir or f"runs/{self.name}")

    def store_url(self) -> str:
        """The results database URL or path."""
        return self.store.url or str(self.workdir() / "results.db")

    def report_dir(self) -> Path:
        """Where the HTML report goes."""
        return Path(self.report.dir or f"reports/{self.name}")


def load_experiment(path: Path | None = None) -> Experiment:
    """Read and validate an experiment file; ``None`` loads the built-in default."""
    path = DEFAULT_EXPERIMENT if path is None else Path(path)
    experiment = yaml_file.load(path, Experiment, "experiment file")
    _check_registered_names(experiment, str(path))
    check_experiment(experiment, str(path))
    return experiment


#: model factory parameters the pipeline sets from the dataset
_MODEL_ARGS_FROM_DATA = ("num_classes", "in_channels")


def _check_registered_names(experiment: Experiment, source: str) -> None:
    """Names and options of registered plug-ins are checked here so a typo fails before any training."""
    from edgebench.data import DATASETS, list_datasets
    from edgebench.models import MODELS, list_models
    from edgebench.prune import CRITERIA

    for i, target in enumerate(experiment.targets):
        try:
            experiment.measurement_for(target)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source=f"{source}: targets.{i}.measurement")) from None
    checks = [
        ("dataset.name", [experiment.dataset.name], list_datasets()),
        ("model.name", [experiment.model.name], list_models()),
        ("pruning.criteria", experiment.pruning.criteria, CRITERIA.names()),
    ]
    for field, values, allowed in checks:
        for value in values:
            if value not in allowed:
                raise ConfigError(f"{source}: {field}: unknown value '{value}'; allowed: {', '.join(allowed)}")
    exp = experiment
    validate_options(DATASETS.get(exp.dataset.name), exp.dataset.kwargs, f"{source}: dataset.kwargs")
    validate_options(MODELS.get(exp.model.name), exp.model.kwargs, f"{source}: model.kwargs", _MODEL_ARGS_FROM_DATA)
    for name, kwargs in exp.pruning.criterion_kwargs.items():
        if name not in exp.pruning.criteria:
            raise ConfigError(f"{source}: pruning.criterion_kwargs.{name}: not one of pruning.criteria "
                              f"({', '.join(exp.pruning.criteria)})")
        validate_options(CRITERIA.get(name), kwargs, f"{source}: pruning.criterion_kwargs.{name}")
