"""User-facing errors: one clear line naming the problem and the fix."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Sequence
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


class ExitCode(IntEnum):
    """The ``edgebench`` command's exit statuses (``--help`` lists them with :func:`exit_codes_help`)."""

    OK = 0
    REGRESSION = 1
    BAD_INPUT = 2
    NOTHING_RAN = 3
    ALL_FAILED = 4
    WARNING = 5
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it


_EXIT_MEANINGS = {
    ExitCode.OK: "ok",
    ExitCode.REGRESSION: "`compare`'s gate fails (a regression, a result the candidate failed or lost a metric of, "
    "or nothing compared)",
    ExitCode.BAD_INPUT: "bad input (a file, field, option or path, named in one line; nothing stored is changed)",
    ExitCode.NOTHING_RAN: 'nothing could run (every job of `run` or `bench` was "not run": no target available, '
    "no export for any precision)",
    ExitCode.ALL_FAILED: "every job of `run` failed (nothing measured; the errors are printed and stored), or the "
    "runtime `bench` or `profile` measured with crashed or hung",
    ExitCode.WARNING: "`compare`'s gate warns (regressions only past a --warn threshold or on unstable "
    "measurements, results the candidate did not measure; none that fails it)",
    ExitCode.INTERRUPTED: "interrupted (finished jobs are kept)",
}


def exit_codes_help() -> str:
    """Every exit status with its meaning, for ``edgebench --help``."""
    return "Exit codes: " + "; ".join(f"{code.value} {_EXIT_MEANINGS[code]}" for code in ExitCode) + "."


class EdgebenchError(Exception):
    """Base class of errors the CLI prints as one line, without a traceback, exiting with ``exit_code``."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class ConfigError(EdgebenchError, ValueError):
    """An experiment or target file has a wrong field or value (a ValueError, so pydantic validators may raise it)."""


class InvalidFields(EdgebenchError):
    """A model built in Python (``Experiment(...)``) with a bad field: the one line, and pydantic's error for a
    caller that names its own source (a file). Not a ValueError: pydantic would wrap it as one of its own."""

    def __init__(self, validation: Any, model: Any) -> None:
        super().__init__(format_validation_error(validation, source=f"{model.__name__}(...)", model=model))
        self.validation = validation


class DatasetError(EdgebenchError):
    """A dataset path is missing or not in the expected format."""


class ArtifactError(EdgebenchError):
    """A model file or exported artifact is missing or corrupt."""


#: what to do about an artifact a runtime cannot load: a cached export is made again, a user's file is theirs
REEXPORT_HINT = "re-export it (one in a run's artifact cache: delete it, and the next run exports it again)"


class UnsupportedModelError(EdgebenchError):
    """A backend or exporter cannot handle a layer of the model."""


class OutputPathError(EdgebenchError):
    """A report, export, store or run directory cannot be created or written."""


class TrackingError(EdgebenchError):
    """Logging a stored run to a tracking server (MLflow) failed; the results store still holds the run."""


class RuntimeCrashError(EdgebenchError):
    """The runtime measuring one artifact (``bench``, ``profile``) crashed or hung: not the input's fault as such."""

    exit_code = ExitCode.ALL_FAILED


class NothingToRunError(EdgebenchError):
    """Every job of a run is "not run" (no target available, no exporter for any precision)."""

    exit_code = ExitCode.NOTHING_RAN


def first_line(text: object) -> str:
    """The first non-blank line of ``text`` (libraries raise multi-line messages)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to a misspelt ``word``; "" where none is close."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1)
    if not close:  # 'l1norm' for 'l1', 'resnet56' for 'resnet56_cifar': one choice the word extends or begins
        close = [c for c in choices if len(c) > 1 and len(word) > 1 and (word.startswith(c) or c.startswith(word))]
    return f" (did you mean '{close[0]}'?)" if len(close) == 1 else ""


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` with its line breaks folded into spaces, cut to ``limit`` characters (runtimes' messages often put
    the detail on the lines after the first: "invalid dimensions for input ...\n index: 1 Got: 3 Expected: 1")."""
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 2].rstrip() + " …"


#: how long a failure's stored one-line error may be; its full traceback is kept beside it
SUMMARY_CHARS = 300


def summarize(exc: BaseException, limit: int = SUMMARY_CHARS) -> str:
    """A failure in one line, the same whichever executor or worker caught it: ``Type: message``.

    Runtimes put the detail on the lines after the first, so the message is folded onto one line (then cut to
    ``limit``). Notes added with ``add_note`` (Python 3.11) are not the message and stay in the traceback; an
    exception without a message is its type alone.
    """
    message = one_line(exc, limit)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """One line: ``source: field.path: message (got value)`` for the first problem, then the other fields named; an
    unknown field of ``model`` (the model validated) with the fields allowed there."""
    raw = exc.errors()
    errors = _typos_first(raw)
    err = errors[0]
    msg = first_line(err["msg"].removeprefix("Value error, "))
    if err["type"] == "extra_forbidden":
        # a block validated by a model of its own (a runtime's target block) names its fields in the error's ctx
        allowed = err.get("ctx", {}).get("allowed") or (_fields_at(model, err["loc"][:-1]) if model else None)
        # a block this model does not describe (a runtime's target block): its missing required fields are choices
        hint = did_you_mean(str(err["loc"][-1]), allowed or _missing_beside(err, raw))
        msg = (f"unknown field{hint or ' (check its spelling)'}; allowed: {', '.join(allowed)}" if allowed else
               f"unknown field{hint or ' (check its spelling; see the default experiment for allowed fields)'}")
    got = err.get("input")
    got_txt = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    if err["type"] == "literal_error" and isinstance(got, str):  # "Input should be 'fp32', 'fp16' ... or 'fixed'"
        got_txt += did_you_mean(got, re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
    if err["type"] == "model_type" and isinstance(got, str) and model is not None and err["loc"]:
        block = _model_at(model, err["loc"])  # `model: digits_cnn` where a block of fields belongs
        if block is not None and "name" in block.model_fields:
            got_txt += f"; it is a block of fields: write {err['loc'][-1]}: {{name: {got}}}"
    if isinstance(got, bool) and err["type"] == "string_type":  # `name: off` is YAML 1.1's false
        got_txt += "; YAML reads yes/no/on/off/true/false as booleans: quote the text"
    if err["type"] in _BOUNDS and model is not None and (meaning := _description_at(model, err["loc"])):
        got_txt += f"; {err['loc'][-1]}: {meaning}"  # what the field means says which values make sense (null...)
    where = _loc(err) if err["loc"] or err["type"] != "value_error" else ""  # a model check names its own fields
    line = f"{source}: {where + ': ' if where else ''}{msg}{got_txt}"
    if len(errors) > 1:
        others = list(dict.fromkeys(_loc(e) for e in errors[1:]))
        line += f"; and {len(errors) - 1} more ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''})"
    return line


def _typos_first(errors: list[Any]) -> list[Any]:
    """``errors`` with the unknown fields beside a missing required one first (one that misspells it foremost), less
    the missing ones misspelt: pydantic lists ``label: Field required`` before ``lable``, so the line named the
    symptom, not the typo and its fix."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden" and _missing_beside(e, errors)]
    spelt = {t["loc"]: [name for name in _missing_beside(t, errors) if did_you_mean(str(t["loc"][-1]), [name])]
             for t in unknown}
    typos = sorted(unknown, key=lambda t: not spelt[t["loc"]])
    misspelt = {(*loc[:-1], name) for loc, names in spelt.items() for name in names}
    return typos + [e for e in errors if e not in typos and not (e["type"] == "missing" and e["loc"] in misspelt)]


def _missing_beside(err: Any, errors: list[Any]) -> list[str]:
    """The required fields missing from the block ``err`` is in."""
    return [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == err["loc"][:-1]]


#: pydantic's error types of a number out of its field's range
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _description_at(model: type[BaseModel], path: Sequence[Any]) -> str | None:
    """The description of the field at ``path`` inside ``model``, or None."""
    parent = _model_at(model, path[:-1]) if path else None
    field = parent.model_fields.get(path[-1]) if parent is not None else None
    return field.description if field is not None else None


def _fields_at(model: type[BaseModel], path: Sequence[Any]) -> list[str] | None:
    """The fields of the model at ``path`` inside ``model``; None where the path leads to no model (a dict of
    options)."""
    current = _model_at(model, path)
    return list(current.model_fields) if current is not None else None


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The model at ``path`` (field names, list indexes, union members' names) inside ``model``; None where the path
    leads to no model."""
    current: type[BaseModel] | None = model
    for key in path:
        if current is None:
            return None
        if isinstance(key, int) or (key not in current.model_fields and key == current.__name__):
            continue  # a list item or the union member pydantic tried: the model found for it stays
        field = current.model_fields.get(key)
        current = _model_in(field.annotation) if field is not None else None
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds: itself, or one inside ``list[...]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in get_args(annotation) if (found := _model_in(arg)) is not None), None)


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


class MissingExtraError(EdgebenchError):
    """An optional dependency is not installed; the message names the pip extra (or other source) that adds it."""

    def __init__(self, component: str, package: str, install: str) -> None:
        super().__init__(f"{component} needs {package}: {install}")


def extra_install_hint(extra: str) -> str:
    """The command that installs one of edgebench's pip extras: in the checkout edgebench runs from (editable), or
    next to an installed wheel (torch, already pinned there, stays as it is)."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "constraints.txt").is_file():
        return f"pip install -c constraints.txt -e '.[{extra}]'"
    return f"pip install 'edgebench[{extra}]'"


def require_module(module: str, extra: str | None, component: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``component`` and how to install it.

    Args:
        module: import name, e.g. ``paramiko``.
        extra: edgebench's pip extra that installs it; None when it comes from elsewhere (then ``package``
            should say where, e.g. "tensorrt (pip install tensorrt, or JetPack on Jetson)").
        component: what needs it, for the message ("SSH targets", "backend 'litert'").
        package: distribution name or where it comes from; defaults to ``module``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        install = extra_install_hint(extra) if extra else "install it"
        raise MissingExtraError(component, package or module, install) from None
