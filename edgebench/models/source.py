"""Where a variant's starting model comes from: the zoo, the user's code, and trained weights.

``model:`` in an experiment names a factory three ways - a registered name (the zoo, or an installed package's
``edgebench.models`` entry point), an import path ``my_pkg.models:build_net``, or ``file: nets/resnet.py`` with
``factory: build_net`` - and may add ``weights:`` (a state dict or checkpoint, or a TorchScript / ``.pt2``
program that is the model itself). :func:`model_source` turns that into the :class:`ModelSource` a variant spec
carries (content digests in its id, paths to read); :func:`new_model` builds the model from a spec in any process.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebench import plugins
from edgebench.errors import ConfigError, did_you_mean, first_line
from edgebench.models import MODELS
from edgebench.models.code_closure import EDGEBENCH_DIR, user_code_files
from edgebench.plugins import PluginError, content_digest
from edgebench.variants import ModelSource, VariantSpec

if TYPE_CHECKING:
    from torch import nn

    from edgebench.config import ModelConfig
    from edgebench.data import DatasetSplits

#: factory parameters edgebench fills from the dataset when the factory takes them and ``model.kwargs`` does not
#: set them (so a factory may require them)
ARGS_FROM_DATA = ("num_classes", "in_channels", "input_size")


def users_code_file(factory: Callable[..., Any]) -> str | None:
    """The source file of a factory that is not edgebench's own (zoo ids stay as they were)."""
    try:
        file = inspect.getsourcefile(factory)
    except TypeError:  # a builtin or a C extension: nothing to hash
        return None
    return None if file is None or Path(file).resolve().is_relative_to(EDGEBENCH_DIR) else file


def resolve_factory(model: ModelConfig) -> Callable[..., Any]:
    """The callable ``model`` names; PluginError naming the file or module and the attribute."""
    if model.file is not None:
        factory = plugins.file_object(model.file, model.factory or "")
        where = f"{model.file}:{model.factory}"
    else:
        try:
            factory = MODELS.get(model.name)
        except KeyError:
            hint = did_you_mean(model.name.lower(), MODELS.names())
            raise PluginError(f"unknown value '{model.name}'{hint}; allowed: {', '.join(MODELS.names())} (or an import "
                              "path module:factory, or model.file with model.factory)") from None
        where = model.name
    if not callable(factory):
        raise PluginError(f"{where} is a {type(factory).__name__}, not a function or class that builds the model")
    return factory


def model_ref(model: ModelConfig, source: ModelSource | None) -> str:
    """The ``model`` of variant specs: the registered name or import path, ``file.py:factory``, or for a program
    the weights file's name."""
    if source is not None and source.program and model.file is None and "name" not in model.model_fields_set:
        return Path(source.weights or "").name
    if model.file is not None:
        return f"{Path(model.file).name}:{model.factory}"
    return model.name


def program_conflict(model: ModelConfig, fmt: str) -> str | None:
    """Why a program given as weights cannot go with ``model``'s other fields, or None."""
    if fmt == "state_dict" or (model.file is None and "name" not in model.model_fields_set and not model.kwargs):
        return None
    kind = fmt.replace("_", " ")
    return (f"{model.weights} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, the model itself: leave out model.name, "
            "model.file and model.kwargs, or give a state dict as weights")


def model_source(model: ModelConfig, plugin_files: Sequence[str] = (), dataset: str | None = None,
                 components: Sequence[Callable[..., Any]] = ()) -> ModelSource | None:
    """The user's files behind ``model`` with their digests (the code digest covers the factory's file, the plug-in
    files, the source of a ``dataset`` loader and of ``components`` - criteria, schedules... - that are not
    edgebench's, however they were registered, and the user's modules those files import); None for a zoo model
    with edgebench's own data and components."""
    from edgebench.data import DATASETS
    from edgebench.models.weights import detect_format

    code_files: list[str] = [str(Path(p).resolve()) for p in plugin_files]
    loader_file = users_code_file(DATASETS.get(dataset)) if dataset is not None else None
    code_files += [loader_file] if loader_file else []
    for file in filter(None, map(users_code_file, components)):  # one already hashed (a plug-in file) counts once
        if str(Path(file).resolve()) not in {str(Path(f).resolve()) for f in code_files}:
            code_files.append(file)
    weights = Path(model.weights).resolve() if model.weights else None
    fmt = detect_format(weights) if weights is not None else None
    if fmt in (None, "state_dict"):
        factory = resolve_factory(model)
        # model.file itself: a file of the same content elsewhere is the same module, which names that other path
        file = str(Path(model.file).resolve()) if model.file else users_code_file(factory)
        code_files = [*([file] if file else []), *code_files]
    if not code_files and weights is None:
        return None
    code_files = user_code_files(code_files)  # and the user's modules they import (a factory's helper module)
    return ModelSource(
        file=str(Path(model.file).resolve()) if model.file else None,
        code_digest=_code_digest(code_files) if code_files else None,
        code_files=tuple(code_files),
        weights=str(weights) if weights else None,
        weights_digest=content_digest(weights) if weights else None,
        weights_format=fmt,
        trust_checkpoint=model.trust_checkpoint,
    )


def _code_digest(files: Sequence[str]) -> str:
    return hashlib.sha256("".join(content_digest(f) for f in files).encode()).hexdigest()[:16]


def code_changed(source: ModelSource | None) -> bool:
    """Whether the user's code behind ``source`` is no longer what its digest (so the variant ids) says: a file
    edited since the run started. Files not on this machine (a Ray node that has the code elsewhere) are not
    judged."""
    if source is None or source.code_digest is None or not source.code_files:
        return False
    if not all(Path(f).is_file() for f in source.code_files):
        return False
    return _code_digest(source.code_files) != source.code_digest


def spec_factory(spec: VariantSpec) -> Callable[..., Any]:
    """The factory of ``spec``'s model, in whichever process builds it."""
    if spec.source is not None and spec.source.file is not None:
        return plugins.file_object(spec.source.file, spec.model.rpartition(":")[2])
    return MODELS.get(spec.model)


def factory_kwargs(factory: Callable[..., Any], spec: VariantSpec, splits: DatasetSplits) -> dict[str, Any]:
    """What ``factory`` is called with: the spec's kwargs and what it takes of num_classes, in_channels and
    input_size (one number for square images, (height, width) otherwise)."""
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    height, width = splits.input_shape[1:]
    from_data = {"num_classes": splits.num_classes, "in_channels": splits.input_shape[0],
                 "input_size": height if height == width else (height, width)}
    kwargs = {k: v for k, v in from_data.items() if k in params or (takes_any and k != "input_size")}
    return {**kwargs, **spec.model_kwargs}


class FactoryError(ConfigError):
    """The user's factory raised, or returned something that is not a module."""


def new_model(spec: VariantSpec, splits: DatasetSplits) -> nn.Module:
    """The model of ``spec`` for ``splits``: the factory's fresh model (seeded by ``spec.train.seed``) with the
    trained weights loaded when given, or the weights' program itself."""
    import torch
    from torch import nn

    from edgebench.models.weights import load_into, load_program, read_state_dict

    torch.manual_seed(spec.train.seed)
    source = spec.source
    if source is not None and source.program and source.weights:
        return load_program(Path(source.weights), source.weights_format or "torchscript")
    factory = spec_factory(spec)
    try:
        model = factory(**factory_kwargs(factory, spec, splits))
    except Exception as exc:  # the user's code: whatever it raises is the cause
        raise FactoryError(f"model {spec.model}: the factory raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise FactoryError(f"model {spec.model}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    if source is not None and source.weights:
        path = Path(source.weights)
        load_into(model, read_state_dict(path, source.trust_checkpoint), path)
    return model
