"""The experiment file: pydantic models of its YAML, validated with one clear line per problem."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgebench import yaml_file
from edgebench.config_checks import (
    _allocations_used,
    _check_registered_names,
    _check_user_files,
    check_dataset_beside,
    check_experiment,
)
from edgebench.errors import InvalidFields
from edgebench.executor.settings import ExecutorConfig
from edgebench.external import ArtifactConfig
from edgebench.job import MeasureSettings
from edgebench.store.metrics import get_metric

if TYPE_CHECKING:
    from edgebench.data import DatasetSplits

from edgebench.variants import (
    DEFAULT_CALIBRATOR,
    Calibrator,
    ModelSource,
    Precision,
    Preprocess,
    QatSpec,
    Schedule,
    TrainSpec,
    VariantSpec,
    hash_payload,
    spec_hash,
)

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = Path(__file__).resolve().parent / "experiments" / "default.yaml"

#: the longest experiment name, in bytes: file systems take 255 for a name, and file names are built from it
MAX_NAME_BYTES = 200


def _known_metric(name: str) -> str:
    from edgebench.store.schema import StoreError

    try:
        get_metric(name)
    except StoreError as exc:  # as a ValueError, so the message names the file and field
        raise ValueError(str(exc)) from None
    return name


#: a metric name from ``edgebench.store.metrics`` (``accuracy``, ``latency_p50_ms``, ``size``...)
Objective = Annotated[str, AfterValidator(_known_metric)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetConfig(_Strict):
    """Which dataset (a registered name, or an import path to the user's loader: ``edgebench.data.user``), its
    loader's options, and the preprocessing the model's weights expect."""

    name: str = Field("digits", description="digits, cifar10, cifar100, npz, imagefolder, an entry point, or an import path "
        "my_pkg.data:load to your loader")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="e.g. path, seed, val_fraction")
    preprocess: Preprocess | None = Field(None, description="resize, center_crop, normalize: {mean, std}; applied "
                                          "to every split (training, calibration, every target's accuracy)")

    @field_validator("preprocess")
    @classmethod
    def _nothing_declared_is_none(cls, value: Preprocess | None) -> Preprocess | None:
        return None if value == Preprocess() else value

    def digest(self) -> str | None:
        """What the files and directories named in ``kwargs`` hold (None: no paths, as for the bundled datasets)."""
        from edgebench.data.fingerprint import data_digest
        from edgebench.data.read_files import read_by

        return data_digest(self.kwargs, read_by(self.name))

    def load(self) -> DatasetSplits:
        """The dataset's splits, preprocessed (in the process that calls this: the driver, a build worker)."""
        from edgebench.data import load_dataset

        return load_dataset(self.name, self.preprocess, **self.kwargs)


class ModelConfig(_Strict):
    """Which model (``edgebench.models.source``): a registered name or an import path, or a factory in a Python
    file; optionally trained weights to start from. Relative paths are read from the experiment file's directory."""

    name: str = Field("digits_cnn", description="zoo or entry-point name, or an import path my_pkg.models:build_net")
    file: str | None = Field(None, description="a Python file defining the factory (with factory:)")
    factory: str | None = Field(None, description="the function (or class) in file that builds the model")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory (checked against its "
        "signature)")
    weights: str | None = Field(None, description="trained weights: a state dict or checkpoint (torch.save), or a "
                                "TorchScript / torch.export (.pt2) program that is the model itself")
    trust_checkpoint: bool = Field(False, description="let the checkpoint unpickle arbitrary Python objects "
                                   "(only for files from a source you trust)")

    @model_validator(mode="after")
    def _one_factory(self) -> ModelConfig:
        if self.file is not None and self.factory is None and "name" in self.model_fields_set:
            raise ValueError(f"model.name names a zoo model or an import path; for the function in model.file that "
                             f"builds the model, write factory: {self.name} instead of name: {self.name}")
        if (self.file is None) != (self.factory is None):
            raise ValueError("model.file and model.factory go together: the Python file and the name of the "
                             "function in it that builds the model")
        if self.file is not None and "name" in self.model_fields_set:
            raise ValueError("give model.name or model.file (with factory), not both")
        return self


T = TypeVar("T")

#: a grid's values: one listed twice would make the same variants twice, stored once
Grid = Annotated[list[T], AfterValidator(yaml_file.no_repeats)]


class PruningConfig(_Strict):
    """The pruning grid: every criterion x ratio x schedule becomes a variant."""

    criteria: Grid[str] = Field(default_factory=lambda: ["l1", "mean_activation", "random"], description="filter criteria: "
        "bn_scale, bn_stats, chip, firing, hessian_radius, l1, mean_activation, nisp, random, sosp_h, taylor_activation, "
        "taylor_bn, taylor_weight, thinet, or a plug-in's")
    ratios: Grid[float] = Field(default_factory=lambda: [0.25, 0.5, 0.8], description="fraction of the filters (unit: filters) "
        "or of the MACs (unit: macs) each variant removes")
    schedules: Grid[Schedule] = Field(default_factory=lambda: ["while_training"], description="when filters go: while_training, "
        "oneshot_finetune, iterative, scratch, scratch_b, or a plug-in's")
    unit: Literal["filters", "macs"] = Field("filters", description="what a ratio counts (macs: the filter ratio that removes "
        "that share of MACs is searched)")
    scope: Literal["layer", "global"] | None = Field(
        None, description="layer: every layer loses the same fraction (allocation uniform); global: one ranking of "
        "layer-normalised scores (allocation global); neither scope nor allocation: each criterion's paper allocation"
    )
    round_to: int | None = Field(None, ge=1, description="each layer keeps a multiple of this many filters (widths hardware "
        "likes), at least this many")
    prune_epochs: Grid[int] = Field(default_factory=list, description="while_training: epochs after which to prune")
    finetune_epochs: int = Field(10, ge=0, description="oneshot_finetune and iterative: retraining epochs after each pruning "
        "step")
    steps: int = Field(3, ge=1, description="iterative: pruning steps, the ratio ramping to the target")
    criterion_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="options per criterion, e.g. {thinet: "
        "{rescale: false}}")
    allocation: Grid[str] | None = Field(
        None, description="per-layer ratio allocations, each a grid value: paper (each criterion's own, the default) | "
        "uniform | global_raw | global | sensitivity | gradient_bound | latency (replaces scope; uniform = scope "
        "layer, global = scope global)"
    )
    allocation_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="options per allocation, e.g. "
        "{latency: {budget_ms: 0.5}}")
    keep: list[str] = Field(
        default_factory=list, description="conv layers (model.named_modules() names) whose filters are never "
        "removed: those torch-pruning cannot cut (a channel split, a shuffle), which a refused run names"
    )
    check_removal: bool = Field(
        True, description="before any training, check that removing filters gives the outputs of zeroing what reads "
        "them, for every group no LayerNorm/GroupNorm normalises (false: prune a model whose other ops reduce over "
        "channels, e.g. x.mean(1), which that check cannot tell from channels torch-pruning maps wrongly)"
    )

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, ratios: list[float]) -> list[float]:
        return _fractions(ratios, "ratios")

    @field_validator("allocation", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _scope_or_allocation(self) -> PruningConfig:
        if self.allocation is not None and self.scope == "global":
            raise ValueError("set either scope or allocation (allocation: global is scope: global)")
        return self


def _fractions(values: list[float], field: str) -> list[float]:
    bad = [v for v in values if not 0 < v < 1]
    if bad:
        raise ValueError(f"{field} must be fractions strictly between 0 and 1, got {bad}")
    return values


class SparseConfig(_Strict):
    """Unstructured-sparsity variants: every method x sparsity (``prune/sparse/``)."""

    methods: Grid[str] = Field(default_factory=lambda: ["magnitude"], description="magnitude, snip, rigl, scl")
    sparsities: Grid[float] = Field(default_factory=lambda: [0.5, 0.8, 0.9], description="fraction of the weights zeroed")
    method_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict, description="options per method")

    @field_validator("sparsities")
    @classmethod
    def _sparsities_in_range(cls, values: list[float]) -> list[float]:
        return _fractions(values, "sparsities")


class LowRankConfig(_Strict):
    """Low-rank variants (LRPET, ``prune/lowrank.py``): one per rank ratio."""

    rank_ratios: Grid[float] = Field(default_factory=lambda: [0.5, 0.25], description="kept fraction of full rank")
    energy_transfer: bool = Field(True, description="move the cut singular values' energy onto the kept ones")
    bn_rectification: bool = Field(True, description="project each conv with its following BatchNorm's scale folded in")

    @field_validator("rank_ratios")
    @classmethod
    def _ratios_in_range(cls, values: list[float]) -> list[float]:
        return _fractions(values, "rank_ratios")


class QuantizationConfig(_Strict):
    """The precision grid applied to every pruned (and the baseline) model."""

    precisions: Annotated[list[Precision], AfterValidator(yaml_file.no_repeats)] = Field(
        default_factory=lambda: ["fp32", "int8"], description="each variant at these precisions: int8 is static "
        "(calibrated), int8_dynamic quantizes activations at run time, fixed is hls4ml's fixed point")
    calibration_samples: int = Field(256, ge=1, description="training images that calibrate int8 ranges and check fixed-point "
        "overflow, drawn at random (seed 0) with each class in its share")
    fixed_point: str = Field("ap_fixed<16,6>", description="hls4ml type of the fixed variants (ap_fixed<W,I>, ap_ufixed, "
        "rounding and overflow modes)")
    reuse_factor: int = Field(1, ge=1, description="hls4ml reuse factor: multiplications per multiplier (1: fully parallel)")
    calibrator: Calibrator = Field(
        DEFAULT_CALIBRATOR, description="int8 ONNX activation ranges: minmax | entropy | percentile "
        "(scripts/study_int8_calibration.py measures them)")
    max_drop: float | None = Field(
        None, gt=0, lt=1, description="adds mixed-precision int8 variants (ONNX Runtime, OpenVINO): int8 except the "
        "layers whose quantization costs most, kept fp32 one at a time until the validation accuracy is within "
        "max_drop of fp32 (a fraction: 0.005 = 0.5 points)")
    qat: list[QatSpec] = Field(
        default_factory=list, description="quantization-aware-training settings, each a lineage of variants beside "
        "the calibrated ones: {weight_bits, activation_bits: 2..8, scales: float | power_of_two, layer_bits, "
        "start_epoch}; trained in the baseline's and each while_training variant's own training run")

    @model_validator(mode="after")
    def _qat_exports_somewhere(self) -> QuantizationConfig:
        for i, qat in enumerate(self.qat):
            if not set(qat.precisions) & set(self.precisions):
                raise ValueError(f"qat.{i} ({qat.tag}) exports to {' or '.join(qat.precisions)}, none of precisions "
                                 f"({', '.join(self.precisions)}); add one, or scales: power_of_two for fixed point")
        if self.max_drop is not None and "int8" not in self.precisions:
            raise ValueError("max_drop keeps layers of int8 variants in fp32; add int8 to precisions")
        return self


class TargetSelection(_Strict):
    """A target of the experiment, optionally restricted to some variants or with its own timing rules.

    Slow targets (the hls4ml C simulation takes ~20 s per variant) can measure a subset; the baseline
    is always included so speedups and accuracy drops have a reference.
    """

    name: str = Field(description="a target file's name (`edgebench targets` lists them) or a path to one")
    criteria: list[str] | None = Field(None, description="only these pruning criteria (None = all)")
    ratios: list[float] | None = Field(None, description="only these pruning ratios (None = all)")
    schedules: list[Schedule] | None = Field(None, description="only these schedules (None = all)")
    precisions: list[Precision] | None = Field(None, description="only these precisions (None = all)")
    methods: list[str] | None = Field(
        None, description="only these sparse / low-rank methods, e.g. [magnitude, lrpet] (None = all); "
        "ratios also filter sparsities and rank ratios"
    )
    measurement: dict[str, Any] = Field(default_factory=dict, description="overrides of `measurement` fields")

    def includes(self, spec: VariantSpec) -> bool:
        """Whether ``spec`` is measured on this target."""
        if self.precisions is not None and spec.quant.precision not in self.precisions:
            return False
        if spec.prune is not None:
            p = spec.prune
            return (
                (self.criteria is None or p.criterion in self.criteria)
                and (self.ratios is None or p.ratio in self.ratios)
                and (self.schedules is None or p.schedule in self.schedules)
            )
        if spec.sparse is not None:
            method, ratio = spec.sparse.method, spec.sparse.sparsity
        elif spec.lowrank is not None:
            method, ratio = spec.lowrank.method, spec.lowrank.rank_ratio
        else:
            return True
        return (self.methods is None or method in self.methods) and (self.ratios is None or ratio in self.ratios)


class StoreConfig(_Strict):
    """Where results go: a SQLite path or a database URL."""

    url: str | None = Field(None, description="default: <run.workdir>/results.db, which is runs/<experiment "
                                              "name>/results.db when run.workdir is unset")


class ReportConfig(_Strict):
    """Where the report is written and which objective pairs get Pareto fronts."""

    dir: str | None = Field(None, description="default: reports/<experiment name>")
    objectives: list[tuple[Objective, Objective]] = Field(
        default_factory=lambda: [
            ("accuracy", "latency_p50_ms"),
            ("accuracy", "size_bytes"),
            ("accuracy", "macs"),
        ],
        description="the report's Pareto pairs (X, Y): metric names or their store columns; a higher-is-better "
                    "metric (accuracy, throughput) paired with a lower-is-better one goes on Y either way",
    )

    @field_validator("objectives")
    @classmethod
    def _two_metrics_each(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        from edgebench.store.metrics import one_metric_twice

        for a, b in pairs:
            if problem := one_metric_twice(a, b):
                raise ValueError(problem)
        return pairs


class MlflowConfig(_Strict):
    """Log every finished run to MLflow (extra ``mlflow``)."""

    uri: str = Field(description="tracking URI: http://host:5000, sqlite:///mlflow.db (file:///path/mlruns only with "
                                 "MLFLOW_ALLOW_FILE_STORE=true: MLflow keeps its file store in maintenance mode)")
    experiment: str | None = Field(None, description="MLflow experiment name; default: this experiment's name")


class TrackingConfig(_Strict):
    """Where results are logged besides the store and the report."""

    mlflow: MlflowConfig | None = Field(None, description="log every finished run to MLflow")


class RunConfig(_Strict):
    """Worker isolation and caching."""

    workdir: str | None = Field(None, description="artifact cache and run files; default runs/<name>")
    job_timeout_s: float = Field(300.0, gt=0, description="a measurement (load, timed window, accuracy) running longer is "
        "stopped and stored as failed")
    build_timeout_s: float = Field(24 * 3600.0, gt=0, description="a build, export or reference task (training a "
        "variant, a conversion) running longer is stopped and fails the jobs that need it; lower it for a plug-in "
        "that may hang, which otherwise holds the host's measurements back")


class Experiment(_Strict):
    """A whole experiment file."""

    name: str = Field("default", description="names the run's directories, runs/<name>/ and reports/<name>/")
    plugins: list[str] = Field(default_factory=list, description="Python files imported first: they register "
                               "models, datasets, criteria, backends or energy meters of their own")
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    training: TrainSpec = TrainSpec()
    pruning: PruningConfig = PruningConfig()
    sparse: SparseConfig | None = Field(None, description="unstructured-sparsity variants (none when absent)")
    lowrank: LowRankConfig | None = Field(None, description="low-rank variants (none when absent)")
    quantization: QuantizationConfig = QuantizationConfig()
    targets: list[TargetSelection] = Field(
        default_factory=lambda: [TargetSelection(name="local-cpu")],
        min_length=1,
        description="target names, or {name: ..., criteria/ratios/precisions: [...], measurement: {...}}",
    )
    measurement: MeasureSettings = MeasureSettings()
    store: StoreConfig = StoreConfig()
    report: ReportConfig = ReportConfig()
    tracking: TrackingConfig = TrackingConfig()
    run: RunConfig = RunConfig()
    executor: ExecutorConfig = ExecutorConfig()
    artifacts: list[ArtifactConfig] = Field(default_factory=list, description="files other tools made, measured as "
                                            "variants: {path, label, precision, parent}")

    def __init__(self, **data: Any) -> None:
        """``Experiment(training={...}, ...)`` in Python: a bad field is an EdgebenchError with the one line a file's
        would have, not pydantic's multi-line ValidationError."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidFields(exc, Experiment) from None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # a path here would put the store and the report outside runs/ and reports/ (name: ../../x)
        if not value.strip() or value in (".", "..") or any(sep in value for sep in ("/", "\\")):
            raise ValueError(f"'{value}' is not a plain name; it names the directories runs/<name>/ and "
                             "reports/<name>/: use letters, digits, '-', '_' or '.' (set run.workdir or report.dir "
                             "for other places)")
        # spaces around it or a newline would not show in listings and messages; a control character or a name
        # past the file system's 255 bytes would fail only when the first directory is made
        if (value != value.strip() or any(not c.isprintable() for c in value)
                or len(value.encode()) > MAX_NAME_BYTES):
            raise ValueError(f"{value!r} is not a plain name; it names the directories runs/<name>/ and "
                             f"reports/<name>/: use at most {MAX_NAME_BYTES} letters, digits, '-', '_' or '.', "
                             "without spaces around it or control characters")
        return value

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
        """Content hash of the experiment; a re-run of the same file resumes the same run (sections added
        later count only when set, so runs stored before them still resume). Where the jobs run (``executor``)
        is left out: a run started locally resumes on Ray and back; so are where results are logged (``tracking``),
        how they are drawn (``report``) and how long a job or build may take (``run.job_timeout_s``,
        ``run.build_timeout_s``)."""
        added = {"sparse": None, "lowrank": None, "pruning": {"allocation": None, "allocation_kwargs": {}, "check_removal": True,
                             "keep": []},
                 "quantization": {"calibrator": DEFAULT_CALIBRATOR, "qat": [], "max_drop": None}, "plugins": [],
                 "model": {"file": None, "factory": None, "weights": None, "trust_checkpoint": False},
                 "dataset": {"preprocess": None}, "artifacts": []}
        data = self.model_dump(mode="json", exclude={"executor", "tracking"})
        # how results are drawn and how long a job may take count as their defaults (published hashes stay)
        data["report"] = ReportConfig().model_dump(mode="json")
        data["run"]["job_timeout_s"] = RunConfig().job_timeout_s
        data["run"].pop("build_timeout_s", None)
        data["targets"] = [hash_payload(t, {"methods": None}) for t in data["targets"]]
        source = self.model_source()
        if source is not None:  # edited code or retrained weights start a new run rather than resume the old one
            data["source"] = [source.code_digest, source.weights_digest]
        if (digest := self.dataset.digest()) is not None:  # so does rewritten data
            data["data_digest"] = digest
        if user_targets := self._target_digests():  # so does an edited target file (threads 1 -> 2 mixed in one run)
            data["target_files"] = user_targets
        if self.artifacts:  # so do other contents under an artifact's path (an ONNX file's external data too)
            from edgebench.external import artifact_digest

            data["artifact_digests"] = [artifact_digest(Path(a.path)) for a in self.artifacts if Path(a.path).is_file()]
        return spec_hash(hash_payload(data, added))

    def _target_digests(self) -> list[str | None]:
        """Content digests of the user's own target files (empty when every target is one edgebench ships)."""
        from edgebench.plugins import content_digest
        from edgebench.targets import users_target_file

        files = [users_target_file(selection.name) for selection in self.targets]
        return [content_digest(f) if f else None for f in files] if any(files) else []

    def model_source(self) -> ModelSource | None:
        """The user's model file, weights and plug-ins behind ``model``, with their digests (None: a zoo model on
        edgebench's own data, criteria, schedules, allocations and sparse methods)."""
        from edgebench.models.source import model_source
        from edgebench.prune import CRITERIA, SCHEDULES
        from edgebench.prune.allocation import ALLOCATIONS
        from edgebench.prune.sparse import SPARSE_METHODS

        # the code that decides what a variant is, wherever it comes from (plug-in file, import path, entry point)
        components = [*map(CRITERIA.get, self.pruning.criteria), *map(SCHEDULES.get, self.pruning.schedules),
                      *map(ALLOCATIONS.get, _allocations_used(self.pruning)),
                      *map(SPARSE_METHODS.get, self.sparse.methods if self.sparse else [])]
        return model_source(self.model, self.plugins, self.dataset.name, components)

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
    path = DEFAULT_EXPERIMENT if path is None else _shipped_or(Path(path))
    return _checked(yaml_file.load(path, Experiment, "experiment file"), path.resolve().parent, str(path))


def _shipped_or(path: Path) -> Path:
    """``path``, or where it names none, the experiment shipped with edgebench under that name (``qat_digits``,
    ``qat_digits.yaml`` or README's ``edgebench/experiments/qat_digits.yaml``: a wheel install has no checkout)."""
    if path.exists() or path.parent not in (Path("."), Path("edgebench/experiments")):  # another folder: a typo
        return path
    shipped = DEFAULT_EXPERIMENT.parent / path.with_suffix(".yaml").name
    if not shipped.is_file() or path.suffix not in ("", ".yaml"):
        return path
    log.warning("%s is not a file here: running edgebench's shipped experiment %s", path, shipped.stem)
    return shipped


def check_loaded(experiment: Experiment, source: str = "experiment") -> Experiment:
    """An Experiment built in Python, given the checks a file gets at load (relative paths: from the working
    directory); ConfigError naming ``source`` and the field."""
    return _checked(experiment, Path.cwd(), source)


def _checked(experiment: Experiment, base: Path, source: str) -> Experiment:
    experiment = _paths_from(experiment, base)
    check_dataset_beside(experiment, base, source)
    _check_user_files(experiment, source)
    _check_registered_names(experiment, source)
    check_experiment(experiment, source)
    return experiment


def _paths_from(exp: Experiment, base: Path) -> Experiment:
    """``exp`` with the relative paths of the user's files (model file and weights, plug-ins) made absolute from
    ``base``, the experiment file's directory, so they do not depend on where edgebench runs."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else str((base / Path(value).expanduser()).resolve())

    model = exp.model.model_copy(update={k: absolute(getattr(exp.model, k)) for k in ("file", "weights")
                                         if getattr(exp.model, k) is not None})
    artifacts = [a.model_copy(update={"path": absolute(a.path)}) for a in exp.artifacts]
    return exp.model_copy(update={"model": model, "plugins": [absolute(p) for p in exp.plugins], "artifacts": artifacts})
