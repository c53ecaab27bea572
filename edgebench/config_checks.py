"""The experiment's checks beyond its fields' own: the user's files (plug-ins, model factory, weights, external
artifacts), the registered names and their options, and the constraints between fields (``check_experiment``),
each failing with a ConfigError that names the experiment file and the field. ``edgebench.config`` runs them
when an experiment loads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import ValidationError

from edgebench import yaml_file
from edgebench.errors import ConfigError, did_you_mean, format_validation_error
from edgebench.external import FORMATS, check_artifacts
from edgebench.job import MeasureSettings
from edgebench.options import validate_options
from edgebench.quantization.ap_types import ap_type_problem
from edgebench.targets import target_name
from edgebench.variants import Precision

if TYPE_CHECKING:
    from edgebench.config import Experiment, PruningConfig

# the checks' warnings keep the logger they had in edgebench.config, so a user's logging settings for it still apply
log = logging.getLogger("edgebench.config")

def _check_user_files(exp: Experiment, source: str) -> None:
    """The plug-in files import, the model's factory resolves, its weights file exists and can go with it, and the
    external artifacts are files edgebench measures."""
    from edgebench.models.source import program_conflict, resolve_factory
    from edgebench.models.weights import detect_format
    from edgebench.plugins import PluginError, use_plugin_files

    try:
        use_plugin_files(exp.plugins, [exp.model.file] if exp.model.file else [])
    except PluginError as exc:
        raise ConfigError(f"{source}: plugins: {exc}") from None
    model = exp.model
    fmt = None
    if model.weights is not None:
        if not Path(model.weights).is_file():
            raise ConfigError(f"{source}: model.weights: {model.weights} is not a file")
        if (suffix := Path(model.weights).suffix.lower()) in FORMATS:  # torch.load said "Unsupported operand 8"
            raise ConfigError(f"{source}: model.weights: {model.weights} is an exported model ({FORMATS[suffix]}), not "
                              "PyTorch weights: list it under artifacts: to measure it as given, or give a state dict "
                              "or checkpoint")
        fmt = detect_format(Path(model.weights))
        conflict = program_conflict(model, fmt)
        if conflict:
            raise ConfigError(f"{source}: model.weights: {conflict}")
    if fmt in (None, "state_dict"):
        try:
            resolve_factory(model)
        except PluginError as exc:
            raise ConfigError(f"{source}: {'model.file' if model.file else 'model.name'}: {exc}") from None
    _check_starting_point(exp, fmt, source)
    check_artifacts(exp.artifacts, source)


#: the built-in datasets whose ``kwargs.path`` edgebench itself reads (a user's loader may mean its own thing)
_PATH_DATASETS = ("npz", "imagefolder", "cifar10", "cifar100")


def check_dataset_beside(exp: Experiment, base: Path, source: str) -> None:
    """A relative dataset path read from the working directory, missing there but present in ``base`` (the
    experiment file's folder, where the model's files are read from): the likeliest slip, named with both fixes."""
    value = exp.dataset.kwargs.get("path")
    if exp.dataset.name not in _PATH_DATASETS or not isinstance(value, str):
        return
    given = Path(value).expanduser()
    if given.is_absolute() or given.exists() or not (base / given).exists():
        return
    raise ConfigError(f"{source}: dataset.kwargs.path: {value} is not in the working directory ({Path.cwd()}), "
                      f"where relative dataset paths are read from, but the experiment file's folder has it: write "
                      f"path: {(base / given).resolve()}, or run edgebench from {base}")


def _check_starting_point(exp: Experiment, fmt: str | None, source: str) -> None:
    """Training from scratch needs epochs; trained weights may be measured as given; a program is not trained."""
    epochs = exp.training.epochs
    if fmt is None and epochs == 0:
        raise ConfigError(f"{source}: training.epochs: 0 would measure untrained weights; give model.weights (trained "
                          "weights to start from) or train for at least 1 epoch")
    prunes = bool(exp.pruning.criteria and exp.pruning.ratios and exp.pruning.schedules)
    if fmt in ("torchscript", "exported_program"):
        kind = "TorchScript" if fmt == "torchscript" else "torch.export (.pt2)"
        name = Path(exp.model.weights or "").name
        program = f"model.weights: {name} is a {kind} program: edgebench measures and quantizes it as given"
        code = "give the model's Python code (model.name or model.file) with a state dict as weights"
        if epochs:
            raise ConfigError(f"{source}: {program}, but cannot fine-tune it (an exported graph cannot switch to "
                              f"training mode); set training.epochs: 0, or {code}")
        if prunes or exp.sparse is not None or exp.lowrank is not None:
            raise ConfigError(f"{source}: {program}, but cannot prune it (its layers are compiled into the program, "
                              f"where torch-pruning cannot cut filters); set pruning.criteria: [] and leave out sparse: "
                              f"and lowrank:, or {code}")
    if epochs == 0 and prunes and "while_training" in exp.pruning.schedules:
        # An experiment without a pruning section gets the default grid: say so, and how to have none.
        grid = "" if "pruning" in exp.model_fields_set else " (the default pruning grid: the experiment has no pruning: section)"
        raise ConfigError(f"{source}: pruning.schedules: while_training{grid} prunes during the training run (with "
                          "model.weights: during fine-tuning), and training.epochs is 0; train for at least 1 epoch, "
                          "use schedule oneshot_finetune, or set pruning: {criteria: []} for no pruned variants")


def _check_batch_has_offline(settings: MeasureSettings, target_block: dict[str, Any], where: str) -> None:
    """A batch_size over 1 that would be timed one image a call (single_stream's batch is always 1) is an error,
    unless the target's own block chose single_stream over an offline experiment's batch."""
    chose_single = "scenario" in target_block and "batch_size" not in target_block
    if settings.scenario == "single_stream" and settings.batch_size > 1 and not chose_single:
        raise ConfigError(f"{where}: measurement.batch_size is {settings.batch_size}, but the scenario is single_stream, "
                          "which times one image a call; add scenario: offline to time batches of "
                          f"{settings.batch_size}, or drop batch_size")


#: experiments whose loader's unseen data this process has warned about
_WARNED_UNSEEN_DATA: set[str] = set()


def _warn_unseen_data(exp: Experiment, source: str) -> None:
    """Warn (once) where the user's dataset loader names no file or folder in its options and does not say it reads
    none (``reads_files = False``): the variant ids cannot follow its data, so a rewritten dataset reuses models
    trained on the old one (a battery's loader read a fixed path, and relabelled data was measured with the old
    models, without a word)."""
    from edgebench.data import DATASETS
    from edgebench.models.source import users_code_file

    loader = DATASETS.get(exp.dataset.name)
    if exp.dataset.digest() is not None or users_code_file(loader) is None or getattr(loader, "reads_files", True) is False:
        return  # the data is named, edgebench's own, or made from the options and the loader's code (both followed)
    if exp.hash not in _WARNED_UNSEEN_DATA:
        _WARNED_UNSEEN_DATA.add(exp.hash)
        log.warning("%s: dataset %s names no file or folder in dataset.kwargs, so edgebench cannot see its data "
                    "change: models cached from a run on other data would be reused; make the data's path a "
                    "parameter of the loader, set in dataset.kwargs (def load(path) with path: data.npz), so its "
                    "content is part of the variant ids; a loader that reads no file says so with "
                    "load.reads_files = False", source, exp.dataset.name)


def _check_registered_names(experiment: Experiment, source: str) -> None:
    """Names and options of registered plug-ins are checked here so a typo fails before any training."""
    from edgebench.data import DATASETS
    from edgebench.models.source import ARGS_FROM_DATA, resolve_factory
    from edgebench.models.weights import detect_format
    from edgebench.plugins import PluginError
    from edgebench.prune import CRITERIA, SCHEDULES
    from edgebench.prune.allocation import ALLOCATIONS, PAPER
    from edgebench.prune.criteria.base import RETIRED_CRITERIA
    from edgebench.prune.sparse import SPARSE_METHODS
    from edgebench.targets import unknown_target

    for i, target in enumerate(experiment.targets):
        if problem := unknown_target(target.name):  # before any work, naming the experiment file
            raise ConfigError(f"{source}: targets.{i}: {problem}")
        try:
            settings = experiment.measurement_for(target)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source=f"{source}: targets.{i}.measurement",
                                                      model=MeasureSettings)) from None
        yaml_file.refuse_bools_as_numbers(target.measurement, settings, f"{source}: targets.{i}.measurement")
        _check_batch_has_offline(settings, target.measurement, f"{source}: targets.{i} ({target.name})")
    for value in experiment.pruning.criteria:
        if value in RETIRED_CRITERIA:
            raise ConfigError(f"{source}: pruning.criteria: '{value}' {RETIRED_CRITERIA[value]}")
    exp = experiment
    checks = [
        ("dataset.name", [exp.dataset.name], DATASETS, []),
        ("pruning.criteria", exp.pruning.criteria, CRITERIA, []),
        ("pruning.schedules", exp.pruning.schedules, SCHEDULES, []),
        ("pruning.allocation", exp.pruning.allocation or [], ALLOCATIONS, [PAPER]),
        ("sparse.methods", exp.sparse.methods if exp.sparse else [], SPARSE_METHODS, []),
    ]
    for field, values, registry, also in checks:
        for value in (v for v in values if v not in also):
            try:
                registry.get(value)
            except KeyError:
                allowed = ", ".join([*also, *registry.names()])
                hint = did_you_mean(value.lower(), [*also, *registry.names()])
                raise ConfigError(f"{source}: {field}: unknown value '{value}'{hint}; allowed: {allowed} "
                                  "(or an import path module:attribute)") from None
            except PluginError as exc:
                raise ConfigError(f"{source}: {field}: {exc}") from None
    validate_options(DATASETS.get(exp.dataset.name), exp.dataset.kwargs, f"{source}: dataset.kwargs")
    _warn_unseen_data(exp, source)
    if exp.model.weights is None or detect_format(Path(exp.model.weights)) == "state_dict":
        filled = [arg for arg in ARGS_FROM_DATA if arg not in exp.model.kwargs]  # a value set there is checked
        validate_options(resolve_factory(exp.model), exp.model.kwargs, f"{source}: model.kwargs", filled)
    _check_kwargs(exp.pruning.criterion_kwargs, exp.pruning.criteria, CRITERIA.get,
                  f"{source}: pruning.criterion_kwargs", "pruning.criteria", ())
    _check_kwargs(exp.pruning.allocation_kwargs, _allocations_used(exp.pruning), ALLOCATIONS.get,
                  f"{source}: pruning.allocation_kwargs", "pruning.allocation (or the criteria's paper allocations)",
                  ())
    _check_allocations(exp.pruning, source)
    if exp.sparse is not None:
        _check_kwargs(exp.sparse.method_kwargs, exp.sparse.methods, SPARSE_METHODS.get,
                      f"{source}: sparse.method_kwargs", "sparse.methods", ("sparsity",))


def _allocations_used(pruning: PruningConfig) -> list[str]:
    """The registered allocations the experiment's variants use: the listed ones, with ``paper`` (listed, or the
    default when neither allocation nor scope is set) standing for the criteria's own."""
    from edgebench.prune import CRITERIA
    from edgebench.prune.allocation import PAPER

    listed = pruning.allocation or ([PAPER] if pruning.scope is None else [])
    used: list[str] = []
    for name in listed:
        for resolved in [CRITERIA.get(c).paper_allocation for c in pruning.criteria] if name == PAPER else [name]:
            if resolved not in used:
                used.append(resolved)
    return used


def _check_allocations(pruning: PruningConfig, source: str) -> None:
    """Each allocation built with its options (which checks their values: a target it measures on, a budget), and
    the ratio unit it fixes, so a bad value fails at load rather than in the middle of a sweep."""
    from edgebench.prune.allocation import ALLOCATIONS

    for name in _allocations_used(pruning):
        cls = ALLOCATIONS.get(name)
        if cls.ratio_of is not None and pruning.unit != "filters":
            raise ConfigError(f"{source}: pruning.unit: {pruning.unit} does not apply to allocation {name}, whose "
                              f"ratios are fractions of {cls.ratio_of} removed; remove unit or that allocation")
        try:
            cls(**pruning.allocation_kwargs.get(name, {}))
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{source}: pruning.allocation_kwargs.{name}: {exc}") from None


def _check_kwargs(kwargs_by_name: dict[str, dict[str, Any]], names: list[str], get: Any, where: str, listed_in: str,
                  exclude: tuple[str, ...]) -> None:
    """Options of plug-ins listed in ``listed_in``, validated against each plug-in's signature."""
    for name, kwargs in kwargs_by_name.items():
        if name not in names:
            raise ConfigError(f"{where}.{name}: not one of {listed_in} ({', '.join(names) or 'none'})")
        validate_options(get(name), kwargs, f"{where}.{name}", exclude)


#: experiments whose pruning at the last epoch this process has warned about
_WARNED_LATE_PRUNING: set[str] = set()


def check_experiment(exp: Experiment, source: str) -> None:
    """Constraints between fields of ``exp``; ConfigError naming ``source`` and the fields."""
    pruning, epochs = exp.pruning, exp.training.epochs
    _check_grids_not_empty(exp, source)
    late = [e for e in pruning.prune_epochs if not 0 <= e < epochs]
    if late and pruning.criteria and "while_training" in pruning.schedules:
        raise ConfigError(f"{source}: pruning.prune_epochs: {late} outside the training run (training.epochs: {epochs}, "
                          f"so epochs 0..{epochs - 1}); lower them or train longer")
    if (epochs - 1 in pruning.prune_epochs and pruning.criteria and "while_training" in pruning.schedules
            and exp.hash not in _WARNED_LATE_PRUNING):  # once: the CLI's file load and api.run both check it
        _WARNED_LATE_PRUNING.add(exp.hash)
        log.warning("%s: pruning.prune_epochs includes the last epoch (%d): filters removed then get no training "
                    "after, so those variants lose accuracy a later pruning step would recover; prune earlier or train "
                    "longer", source, epochs - 1)
    _check_qat_epochs(exp, source)
    if problem := ap_type_problem(exp.quantization.fixed_point):
        raise ConfigError(f"{source}: quantization.fixed_point: '{exp.quantization.fixed_point}': {problem}")
    # a target's ratios select pruning ratios, sparsities and rank ratios alike
    ratio_grids = [("pruning.ratios", pruning.ratios),
                   *([("sparse.sparsities", exp.sparse.sparsities)] if exp.sparse is not None else []),
                   *([("lowrank.rank_ratios", exp.lowrank.rank_ratios)] if exp.lowrank is not None else [])]
    seen: dict[str, str] = {}  # target name -> the entry naming it: results are stored per target name
    for i, selection in enumerate(exp.targets):
        name = target_name(selection.name)
        if (other := seen.get(name)) == selection.name:
            raise ConfigError(f"{source}: targets: '{selection.name}' is listed twice; give one entry per target")
        if other is not None:
            raise ConfigError(f"{source}: targets: '{other}' and '{selection.name}' both name target {name}, whose "
                              "results would overwrite each other; keep one, or rename one target file")
        seen[name] = selection.name
        grids = (
            ("criteria", selection.criteria, "pruning.criteria", pruning.criteria),
            ("ratios", selection.ratios, " or ".join(name for name, _ in ratio_grids),
             [ratio for _, grid in ratio_grids for ratio in grid]),
            ("schedules", selection.schedules, "pruning.schedules", pruning.schedules),
            ("precisions", selection.precisions, "quantization.precisions", exp.quantization.precisions),
            ("methods", selection.methods, "sparse.methods (and lrpet with lowrank:)",
             [*(exp.sparse.methods if exp.sparse is not None else []), *(["lrpet"] if exp.lowrank is not None else [])]),
        )
        if selection.precisions == []:  # every variant, the baseline too, is of some precision
            raise ConfigError(f"{source}: targets.{i}.precisions is empty, so target '{selection.name}' would measure "
                              "nothing; name some of quantization.precisions, or leave the field out (all of them)")
        for field, chosen, grid_field, grid in grids:
            extra = [v for v in chosen or () if v not in grid]
            if extra:
                raise ConfigError(f"{source}: targets.{i}.{field}: {', '.join(map(str, extra))} not in {grid_field} "
                                  f"({', '.join(map(str, grid)) or 'empty'}), so target '{selection.name}' would "
                                  "measure nothing for it")


def _check_grids_not_empty(exp: Experiment, source: str) -> None:
    """An empty list that silently drops variants: criteria without ratios or schedules, a sparse: or lowrank:
    block without values, no precision at all; or silently means a default (allocation: [])."""
    pruning = exp.pruning
    for field in ("ratios", "schedules"):
        if pruning.criteria and not getattr(pruning, field):
            raise ConfigError(f"{source}: pruning.{field} is empty, so criteria {', '.join(pruning.criteria)} make no "
                              f"variant; list {field}, or set pruning.criteria: [] for no pruned variants")
    if pruning.allocation == []:
        raise ConfigError(f"{source}: pruning.allocation is empty; list allocations, or leave it out for each "
                          "criterion's paper allocation")
    blocks = {"sparse": (exp.sparse, ("methods", "sparsities")), "lowrank": (exp.lowrank, ("rank_ratios",))}
    for block, (config, fields) in blocks.items():
        for field in fields:
            if config is not None and not getattr(config, field):
                raise ConfigError(f"{source}: {block}.{field} is empty, so the {block}: block makes no variant; list "
                                  f"{field}, or remove the {block}: block")
    if not exp.quantization.precisions and not exp.artifacts:
        raise ConfigError(f"{source}: quantization.precisions is empty, so nothing is exported; list at least one of "
                          f"{', '.join(get_args(Precision))}")


def _check_qat_epochs(exp: Experiment, source: str) -> None:
    """Each QAT start epoch within the run, and after the last pruning step of while_training variants (the
    quantizers wrap the final architecture)."""
    from edgebench.prune.schedules import default_prune_epochs

    epochs = exp.training.epochs
    prune_epochs = exp.pruning.prune_epochs or default_prune_epochs(epochs)
    prunes_while_training = bool(exp.pruning.criteria) and "while_training" in exp.pruning.schedules
    last = max(prune_epochs) if prunes_while_training and prune_epochs else None
    for i, qat in enumerate(exp.quantization.qat):
        start = qat.start_epoch
        if start is not None and start >= epochs:
            raise ConfigError(f"{source}: quantization.qat.{i}.start_epoch: {start} is outside the training run "
                              f"(training.epochs: {epochs}, so epochs 0..{epochs - 1})")
        if start is not None and last is not None and start <= last:
            raise ConfigError(f"{source}: quantization.qat.{i}.start_epoch: {start} is not after the last pruning "
                              f"step (epoch {last}); quantizers wrap the pruned architecture, so start at {last + 1} or later")
