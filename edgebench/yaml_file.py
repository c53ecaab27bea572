"""Reading the YAML files users write (experiments, targets) into validated pydantic models, one way.

Every problem is one line naming the file: not found, not UTF-8, empty, a YAML syntax error (with
line:column), a key given twice in one mapping (YAML would keep the last silently), a top level that is not a
mapping, or a field that fails validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgebench.errors import ConfigError, InvalidFields, first_line, format_validation_error

M = TypeVar("M", bound=BaseModel)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping."""


def _mapping_without_repeats(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges a mapping; its keys may be overridden
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"'{key}' is given twice in one mapping; keep one",
                                                    key_node.start_mark)
        seen.add(key if isinstance(key, str) else id(key_node))
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def no_repeats(values: list[Any] | None) -> list[Any] | None:
    """A list field's values when none is listed twice (a second fp32 or onnxruntime would be measured twice
    and stored once)."""
    repeated = sorted({str(v) for v in values or [] if list(values or []).count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed twice; give each once")
    return values


#: suffixes of model files (artifacts, weights) given where a YAML file is read
_MODEL_SUFFIXES = {".onnx", ".tflite", ".pt", ".pth", ".pt2", ".safetensors", ".ckpt", ".bin", ".engine", ".plan"}


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (an empty file is an error: write ``{}`` for all defaults)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give the {what} in it (a .yaml file)")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        if path.suffix.lower() in _MODEL_SUFFIXES:  # `edgebench run model.onnx`: the command meant is another
            article = "an" if what[0] in "aeiou" else "a"
            raise ConfigError(f"{path} is a model file, not {article} {what}: `edgebench bench {path}` measures an artifact "
                              "as given; an experiment lists one under artifacts:, and trained weights as "
                              "model.weights") from None
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{where}: not valid YAML: {reason}") from None
    if data is None:  # nothing but comments, or nothing at all: more likely a slip than a wish for every default
        raise ConfigError(f"{path}: the {what} is empty; give at least one field (an empty mapping {{}} takes every default)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got a {type(data).__name__}")
    # YAML reads 1:, true: and ~: as a number, a boolean and null; a field name is text
    if (key := next((k for k in data if not isinstance(k, str)), "")) != "":
        raise ConfigError(f"{path}: {key!r} is not a field name: YAML read it as a {type(key).__name__}, and fields "
                          "are named by text (quote the key to make it text)")
    _refuse_surrogates(data, path, "")
    return data


def _refuse_surrogates(value: Any, path: Path, where: str) -> None:
    """ConfigError for a text holding a lone UTF-16 surrogate: YAML's ``"\\ud83d\\ude80"`` escapes decode to two
    of them, not one character, and such a text cannot be printed, stored or written to a report."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_surrogates(key, path, where)
            _refuse_surrogates(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_surrogates(item, path, f"{where}.{i}")
    elif isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        code = next(f"\\u{ord(c):04x}" for c in value if 0xD800 <= ord(c) <= 0xDFFF)
        raise ConfigError(f"{path}: {where or 'a key'}: a UTF-16 surrogate escape ({code}) is not a character; write "
                          "the character itself, or a \\U0001F680-style escape of all 8 digits")


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """``model`` validated from ``data``; ConfigError with one line per problem, each naming ``source``."""
    if (key := next((k for k in data if not isinstance(k, str)), "")) != "":  # a model's __init__(**data) fails on it
        raise ConfigError(f"{source}: {key!r} is not a field name: fields are named by text")
    try:
        made = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source, model=model)) from None
    except InvalidFields as exc:  # a model whose __init__ words its own errors: named by the file here
        raise ConfigError(format_validation_error(exc.validation, source=source, model=model)) from None
    refuse_bools_as_numbers(data, made, source)
    return made


def refuse_bools_as_numbers(given: Any, made: Any, source: str, where: str = "") -> None:
    """ConfigError where a YAML ``true``/``false`` in ``given`` became a number in ``made`` (its validated form):
    pydantic reads ``epochs: true`` as 1, which is a typo or a misplaced line, not a count."""
    if isinstance(given, bool):
        if isinstance(made, int | float) and not isinstance(made, bool):
            raise ConfigError(f"{source}: {where}: a number is expected, not {str(given).lower()}")
        return
    if isinstance(given, dict):
        for key, item in given.items():
            inner = getattr(made, str(key), None) if isinstance(made, BaseModel) else (
                made.get(key) if isinstance(made, dict) else None)
            refuse_bools_as_numbers(item, inner, source, f"{where}.{key}" if where else str(key))
    elif isinstance(given, list) and isinstance(made, list | tuple) and len(given) == len(made):
        for i, (item, inner) in enumerate(zip(given, made, strict=True)):
            refuse_bools_as_numbers(item, inner, source, f"{where}.{i}")


def load(path: Path, model: type[M], what: str, defaults: dict[str, Any] | None = None) -> M:
    """Read ``path`` and validate it as ``model`` (``defaults`` fill fields the file does not set)."""
    data = read_mapping(path, what)
    return validate(model, {**(defaults or {}), **data}, str(path))
