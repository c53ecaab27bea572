"""User-facing errors: one clear line naming the problem and the fix."""

from __future__ import annotations

from pydantic import ValidationError


class EdgebenchError(Exception):
    """Base class of errors the CLI prints as one line, without a traceback."""


class ConfigError(EdgebenchError):
    """An experiment or target file has a wrong field or value."""


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
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; see the default experiment for allowed fields)"
        got = err.get("input")
        got_txt = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
        lines.append(f"{source}: {loc}: {msg}{got_txt}")
    return "\n".join(lines)
