"""Typed options of plug-ins, validated when a file is loaded rather than when the plug-in is first called.

Datasets, models, criteria and energy meters take their options as keyword arguments; the signature is the
one declaration of what they accept: :func:`options_model` turns it into a pydantic model (annotations are
the types, defaults the defaults, unknown keys forbidden), so a misspelt ``kwargs`` key or a wrong type in an
experiment or target file fails at load with the allowed keys listed, before any training or timed window.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from edgebench.errors import ConfigError, did_you_mean


@cache
def options_model(fn: Callable[..., Any], exclude: tuple[str, ...] = ()) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword parameters (a class: its ``__init__``), minus ``exclude``."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    hints = typing.get_type_hints(target, include_extras=True)  # Annotated[float, Field(gt=0)] bounds an option
    fields: dict[str, Any] = {}
    parameters = inspect.signature(target).parameters
    for name, param in parameters.items():
        if name == "self" or name in exclude or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    # a **kwargs parameter takes any other key (a factory passing them on to timm or torchvision); not object's own
    # (*args, **kwargs), which a class without an __init__ of its own shows and which takes none
    takes_any = target is not object.__init__ and any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    extra = "allow" if takes_any else "forbid"
    return create_model(f"{getattr(fn, '__name__', 'plugin')}_options", __config__=ConfigDict(extra=extra), **fields)


def validate_options(
    fn: Callable[..., Any], options: Mapping[str, Any], where: str, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """``options`` checked against ``fn``'s signature (or ``fn`` itself when it is a pydantic model, as backends'
    ``Options`` are); ConfigError naming ``where``, the key and the allowed keys.

    Types are checked strictly (a quoted number is not a number) because the plug-in gets the values as
    written: returned unchanged, so content hashes of specs do not change either.
    """
    is_model = isinstance(fn, type) and issubclass(fn, BaseModel)
    model = fn if is_model else options_model(fn, tuple(exclude))
    try:
        # the plug-in receives the values as written, so no coercion: strict JSON rules, as YAML gives JSON-like
        # data ('0.5' is not a float, 1 is not a bool; a list is a tuple, a string a path)
        model.model_validate_json(json.dumps(dict(options), default=str), strict=True)
    except ValidationError as exc:
        allowed = ", ".join(model.model_fields) or "none"
        errors = exc.errors()
        # an unknown key first: a misspelt required option is also a missing one, and the typo is what to fix
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown option '{key}'{did_you_mean(key, model.model_fields)}; allowed: "
                              f"{allowed}") from None
        if err["type"] == "missing":
            raise ConfigError(f"{where}: option '{key}' is required; allowed: {allowed}") from None
        raise ConfigError(f"{where}: option '{key}': {err['msg']} (got {err.get('input')!r})") from None
    return dict(options)
