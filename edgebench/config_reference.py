"""The experiment file's fields as a Markdown reference (edgebench/docs/experiment.md, shipped in the wheel), read off the
schema itself."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: where the reference is kept: inside the package, so an installed edgebench carries it beside plugins.md
REFERENCE_FILE = Path(__file__).resolve().parent / "docs" / "experiment.md"

HEADER = """# Experiment file reference

Every field an experiment file (YAML) takes, with its type, default and meaning, written from the schema by
`python scripts/write_experiment_reference.py` (a test fails when this file and the schema disagree). A section
left out takes its defaults; a field that is not listed here is refused at load with the allowed names. Plug-ins'
options (`kwargs`, `criterion_kwargs`, `allocation_kwargs`, `method_kwargs`) are checked against the plug-in's own
signature. Target files (`targets/*.yaml`) are described in README ("Bring your own model, dataset and target").
"""


def experiment_reference() -> str:
    """The Markdown reference of :class:`edgebench.config.Experiment`."""
    from edgebench.config import Experiment

    sections: list[str] = []
    _section(Experiment, "", sections, set())
    return HEADER + "".join(sections)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(its section's defaults)"
    return f"`{json.dumps(value, default=_plain)}`"


def _plain(value: Any) -> Any:
    """A default's value as JSON shows it: a section by the fields it sets."""
    return value.model_dump(mode="json", exclude_defaults=True) if isinstance(value, BaseModel) else str(value)


def _section(model: type[BaseModel], path: str, out: list[str], seen: set[type[BaseModel]]) -> None:
    seen.add(model)
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    title = path or "top level"
    out.append(f"\n## {title}\n<a id=\"{model.__name__.lower()}\"></a>\n\n{doc}\n\n"
               "| field | type | default | meaning |\n|---|---|---|---|\n")
    nested = []
    for name, field in model.model_fields.items():
        meaning = (field.description or "").replace("\n", " ").replace("|", "\\|")
        if not meaning and _models(field.annotation):
            meaning = "its section below"
        out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |\n")
        nested += [(f"{path}.{name}" if path else name, m) for m in _models(field.annotation) if m not in seen]
    for where, sub in nested:
        if sub not in seen:
            _section(sub, where, out, seen)
