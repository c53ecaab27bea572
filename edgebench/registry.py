"""A small name -> object registry, one per kind (models, criteria, backends...).

Follows timm's habit: lowercase names, duplicates raise, unknown names list the allowed ones so a typo in an
experiment file is easy to fix. Every kind takes the user's plug-ins the same way (``edgebench.plugins``): an
import path ``package.module:attribute`` in place of a name, the experiment's ``plugins:`` files, and the
entry points of installed packages in the registry's ``group``.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import packages_distributions
from typing import Generic, TypeVar

from edgebench import plugins
from edgebench.errors import did_you_mean

Modules = Sequence[str] | Callable[[], Sequence[str]]

T = TypeVar("T")


#: every registry made, so a driver can tell whether its main script registered anything its workers need
_REGISTRIES: list[Registry] = []


def main_script_registers() -> bool:
    """Whether the running script (``__main__``) registered a model, criterion, backend... of its own: only then
    do spawned workers need to import it (otherwise its imports would only weigh on every worker's memory)."""
    return any(getattr(obj, "__module__", None) == "__main__" for r in _REGISTRIES for obj in r._items.values())


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    """Installed distributions by the top-level packages they hold."""
    return packages_distributions()


def _source_file(obj: object) -> str | None:
    return getattr(sys.modules.get(getattr(obj, "__module__", "") or ""), "__file__", None)


class Registry(Generic[T]):
    """Maps lowercase names to registered objects of one kind.

    ``modules`` (a list, or a function returning one, for registries filled by discovered plug-ins) are
    imported on the first lookup: the modules that register entries can keep their heavy imports
    (runtimes, converters) without slowing down ``import edgebench``. Then the plug-in files a parent
    process passed on are loaded, and the entry points of ``group`` (e.g. ``edgebench.models``) called by the name
    looked up (all of them where it is none of theirs, or the names are listed).
    """

    def __init__(self, kind: str, modules: Modules = (), group: str | None = None, base: type | None = None,
                 check: Callable[[type], str | None] | None = None) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        #: what a subclass of ``base`` lacks besides its abstract methods (a backend's formats), or None
        self.check = check
        self._items: dict[str, T] = {}
        #: the names entry points added, with their entry point and distribution (where errors and doctor say so)
        self._entry_points: dict[str, str] = {}
        self._modules = modules
        self._builtins_loaded = False
        self._local_loaded = False
        #: the names whose entry points were read (None: every one)
        self._entry_points_read: set[str | None] = set()
        #: why each entry point that cannot be this kind failed, by its name: looking that name up raises it
        self._broken: dict[str, str] = {}
        _REGISTRIES.append(self)

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._modules() if callable(self._modules) else self._modules:
                importlib.import_module(module)

    def _load_local(self) -> None:
        """The builtins and the plug-in files a parent process passed on."""
        if not self._local_loaded:
            self._load_builtins()
            self._local_loaded = True  # first: a plug-in file that looks a name up while it is imported must not recurse
            try:
                plugins.load_env_plugins()
            except BaseException:  # not loaded: the next lookup tries again (and says so again)
                self._local_loaded = False
                raise

    def _load(self, name: str | None = None) -> None:
        """The builtins, plug-in files and the entry points of ``group`` called ``name`` (None: all), each read once.
        Entry points are read by name so that an installed package whose entry point is broken stops the lookups of
        its own names only (with its error), not every experiment; ``edgebench doctor`` lists it."""
        self._load_local()
        if self.group is None or None in self._entry_points_read or name in self._entry_points_read:
            return
        self._entry_points_read.add(name)
        for ep_name, obj, dist, error in plugins.entry_point_objects(self.group, name):
            key = ep_name.lower()
            if error is not None:
                self._broken[key] = error
            elif not isinstance(obj, type(plugins)) and self._items.get(key) is not obj:
                where = f"entry point '{ep_name}' of {dist} (group {self.group})"
                if key in self._items:  # both sources: the user knows one of them only
                    self._broken[key] = (f"{self.kind} '{key}' is registered twice, by {self.origin(key) or 'edgebench'} "
                                         f"and by {where}; rename one of them")
                elif why := self._not_a_subclass(key, obj):  # listing its kind would trip on it
                    self._broken[key] = f"{where}: {why}"
                else:
                    self._items[key] = obj
                    self._entry_points[key] = where

    def _find(self, key: str) -> T | None:
        """The object registered as lowercase ``key``, None if none; PluginError when its entry point is broken."""
        self._load(key)
        if key not in self._items and key not in self._broken:
            self._load()  # an entry point naming a module registers its names (others than its own) on import
        if key in self._broken:
            raise plugins.PluginError(self._broken[key])
        return self._items.get(key)

    def load_reporting(self) -> list[str]:
        """Load every plug-in of this kind that loads, and return the one-line error of each entry point that does
        not (``edgebench doctor`` lists them)."""
        self._load()
        return list(self._broken.values())

    def origin(self, name: str) -> str | None:
        """Where the registered ``name`` comes from (an entry point and its distribution, a plug-in file, a module);
        None for edgebench's own."""
        key = name.lower()
        if key in self._entry_points:
            return self._entry_points[key]
        module = getattr(self._items[key], "__module__", None) or "?"
        if module.split(".")[0] == "edgebench":
            return None
        file = _source_file(self._items[key])
        if module.startswith(plugins.USER_FILE_MODULE_PREFIX):  # plugins: and --plugins files (edgebench.plugins.load_file)
            return f"plugins file {file}"
        dists = _distributions().get(module.split(".")[0])  # a package an entry point naming a module only imports
        return f"module {module} of {dists[0]}" if dists else f"module {module}" + (f" ({file})" if file else "")

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name raises, unless it comes from the same
        source file (a plug-in file edited and imported again in a notebook replaces its entries)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if not (getattr(obj, "__module__", None) or "").startswith("edgebench."):
                self._load_builtins()  # a user's name that clashes with edgebench's fails here, in the user's file
            old = self._items.get(key)  # a taken name first: whatever the class, it cannot have that name
            if old is not None and (_source_file(old) is None or _source_file(old) != _source_file(obj)):
                by = self.origin(key) or getattr(old, "__module__", "?")
                raise ValueError(f"{self.kind} '{key}' is already registered (by {by}); register yours under another name")
            if problem := self._not_a_subclass(key, obj):
                raise TypeError(problem)
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``, or the one an import path ``module:attribute`` names; KeyError
        naming the allowed names, PluginError (one line) when user code cannot be imported."""
        if plugins.is_import_path(name):
            obj = plugins.import_object(name)
        else:
            found = self._find(name.lower())
            if found is None:
                allowed = ", ".join(self.names()) or "(none registered)"
                broken = f"; an installed plug-in failed to load: {next(iter(self._broken.values()))}" \
                    if self._broken else ""  # the name may be one its module would have registered
                raise KeyError(f"unknown {self.kind} '{name}'{did_you_mean(name.lower(), self.names())}; allowed: "
                               f"{allowed} (or an import path module:attribute){broken}") from None
            obj = found
        if problem := self._not_a_subclass(name, obj):  # an import path or an entry point: never registered here
            raise plugins.PluginError(problem)
        return obj

    def _not_a_subclass(self, name: str, obj: object) -> str | None:
        """Why ``obj`` cannot be this registry's kind, or None: not a subclass of its ``base``, whose methods
        edgebench calls, or one that leaves an abstract method undefined (either would fail only after the
        training, or wherever the class is listed)."""
        if self.base is None:
            return None
        if isinstance(obj, type) and issubclass(obj, self.base):
            if missing := sorted(getattr(obj, "__abstractmethods__", ())):  # else a TypeError wherever it is made
                return (f"{self.kind} '{name}' is class {obj.__name__}, which leaves {', '.join(missing)} of "
                        f"{self.base.__qualname__} undefined: define {'it' if len(missing) == 1 else 'them'} "
                        f"(see {plugins.PLUGINS_DOC})")
            if self.check is not None and (lacks := self.check(obj)):
                return f"{self.kind} '{name}' is class {obj.__name__}, which {lacks}"
            return None
        what = f"class {obj.__name__}" if isinstance(obj, type) else f"{type(obj).__name__} {getattr(obj, '__name__', obj)!r}"
        base = f"{self.base.__module__}.{self.base.__qualname__}"
        article = "an" if self.kind[0] in "aeiou" else "a"
        return (f"{self.kind} '{name}' is {what}, not a subclass of {base}: {article} {self.kind} plug-in is a class "
                f"that subclasses it (see {plugins.PLUGINS_DOC})")

    def names(self) -> list[str]:
        """Registered names, sorted (those of broken entry points left out: :meth:`load_reporting` names them)."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered, or is an import path that resolves."""
        if isinstance(name, str) and plugins.is_import_path(name):
            try:
                self.get(name)
            except plugins.PluginError:
                return False
            return True
        return isinstance(name, str) and self._find(name.lower()) is not None
