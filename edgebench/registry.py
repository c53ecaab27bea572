"""A small name -> object registry, one per kind (models, criteria, backends...).

Follows timm's habit: lowercase names, duplicates raise, unknown names list the
allowed ones so a typo in an experiment file is easy to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to registered objects of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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
        try:
            return self._items[name.lower()]
        except KeyError:
            allowed = ", ".join(self.names()) or "(none registered)"
            raise KeyError(f"unknown {self.kind} '{name}'; allowed: {allowed}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items
