"""User-facing errors: one clear line naming the problem and the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from pydantic import ValidationError


class EdgebenchError(Exception):
    """Base class of errors the CLI prints as one line, without a traceback."""


class ConfigError(EdgebenchError, ValueError):
    """An experiment or target file has a wrong field or value (a ValueError, so pydantic validators may raise it)."""


class DatasetError(EdgebenchError):
    """A dataset path is missing or not in the expected format."""


class ArtifactError(EdgebenchError):
    """A model file or exported artifact is missing or corrupt."""


class UnsupportedModelError(EdgebenchError):
    """A backend or exporter cannot handle a layer of the model."""


def format_validation_error(exc: ValidationError, source: str) -> str:
    """Render pydantic errors as ``source: field.path: message (got value)`` lines."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; see the default experiment for allowed fields)"
        got = err.get("input")
        got_txt = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
        lines.append(f"{source}: {loc}: {msg}{got_txt}")
    return "\n".join(lines)


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
