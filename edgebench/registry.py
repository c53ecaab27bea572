"""A small name -> object registry, one per kind (models, criteria, backends...).

Follows timm's habit: lowercase names, duplicates raise, unknown names list the
allowed ones so a typo in an experiment file is easy to fix.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Modules = Sequence[str] | Callable[[], Sequence[str]]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to registered objects of one kind.

    ``modules`` (a list, or a function returning one, for registries filled by discovered plug-ins) are
    imported on the first lookup: the modules that register entries can keep their heavy imports
    (runtimes, converters) without slowing down ``import edgebench``.
    """

    def __init__(self, kind: str, modules: Modules = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._modules = modules
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules() if callable(self._modules) else self._modules:
                importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name raises."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise naming the allowed names."""
        self._load()
        try:
            return self._items[name.lower()]
        except KeyError:
            allowed = ", ".join(self.names()) or "(none registered)"
            raise KeyError(f"unknown {self.kind} '{name}'; allowed: {allowed}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._items
