"""User-facing errors: one clear line naming the problem and the fix."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import ValidationError


class EdgebenchError(Exception):
    """Base class of errors the CLI prints as one line, without a traceback, exiting with ``exit_code``."""

    #: the CLI's exit status for this error: 2 is bad input (see ``edgebench --help``)
    exit_code = 2


class ConfigError(EdgebenchError, ValueError):
    """An experiment or target file has a wrong field or value (a ValueError, so pydantic validators may raise it)."""


class DatasetError(EdgebenchError):
    """A dataset path is missing or not in the expected format."""


class ArtifactError(EdgebenchError):
    """A model file or exported artifact is missing or corrupt."""


class UnsupportedModelError(EdgebenchError):
    """A backend or exporter cannot handle a layer of the model."""


class OutputPathError(EdgebenchError):
    """A report, export, store or run directory cannot be created or written."""


class NothingToRunError(EdgebenchError):
    """Every job of a run is "not run" (no target available, no exporter for any precision): exit code 3."""

    exit_code = 3


def first_line(text: object) -> str:
    """The first non-blank line of ``text`` (libraries raise multi-line messages)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` with its line breaks folded into spaces, cut to ``limit`` characters (runtimes' messages often put
    the detail on the lines after the first: "invalid dimensions for input ...\n index: 1 Got: 3 Expected: 1")."""
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 2].rstrip() + " …"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: ``source: field.path: message (got value)`` for the first problem, then the other fields named."""
    errors = exc.errors()
    err = errors[0]
    msg = first_line(err["msg"].removeprefix("Value error, "))
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling; see the default experiment for allowed fields)"
    got = err.get("input")
    got_txt = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    where = _loc(err) if err["loc"] or err["type"] != "value_error" else ""  # a model check names its own fields
    line = f"{source}: {where + ': ' if where else ''}{msg}{got_txt}"
    if len(errors) > 1:
        others = list(dict.fromkeys(_loc(e) for e in errors[1:]))
        line += f"; and {len(errors) - 1} more ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''})"
    return line


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


class MissingExtraError(EdgebenchError):
    """An optional dependency is not installed; the message names the pip extra (or other source) that adds it."""

    def __init__(self, component: str, package: str, install: str) -> None:
        super().__init__(f"{component} needs {package}: {install}")


def extra_install_hint(extra: str) -> str:
    """The command that installs one of edgebench's pip extras."""
    return f"pip install -c constraints.txt -e '.[{extra}]'"


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
