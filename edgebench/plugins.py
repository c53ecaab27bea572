"""Plug-ins from the user's code, for every registry kind: import paths, Python files and entry points.

Three ways in, one mechanism (``edgebench.registry.Registry`` calls these):

- an import path ``package.module:attribute`` wherever a registered name is accepted (``model.name``,
  ``dataset.name``, ``pruning.criteria``, a target's ``backends``, ``energy.type``);
- ``plugins: [my_plugins.py]`` in an experiment: each file is imported once per process (the run's warm
  workers inherit the list through ``EDGEBENCH_PLUGINS``), and registers what it defines with the usual
  decorators (``@MODELS.register("my_net")``);
- entry points of installed packages, in the groups ``edgebench.models``, ``edgebench.datasets``,
  ``edgebench.criteria``, ``edgebench.backends`` and ``edgebench.energy_meters``: ``my_net =
  my_pkg.nets:build`` registers ``build`` as ``my_net``; an entry point naming a module only imports it.

Every failure is a :class:`PluginError` of one line naming the file or module and the attribute.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from edgebench.errors import ConfigError, first_line

#: the plug-in guide, shipped inside the package (a wheel has no docs/ folder): errors about a plug-in name its path
PLUGINS_DOC = Path(__file__).resolve().parent / "docs" / "plugins.md"
#: plug-in files of the running experiment, separated by os.pathsep; spawned workers inherit it
PLUGINS_ENV = "EDGEBENCH_PLUGINS"
#: the driver's script, which an import path ``__main__:attribute`` names, for the workers it spawns
MAIN_SCRIPT_ENV = "EDGEBENCH_MAIN_SCRIPT"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginError(ConfigError):
    """User code cannot be imported or is not what edgebench expects (a one-line bad input)."""


def is_import_path(ref: str) -> bool:
    """Whether ``ref`` is ``package.module:attribute`` rather than a registered name."""
    return bool(_IMPORT_PATH.match(ref))


def _cwd_importable() -> None:
    """Let ``my_pkg.models:build`` find a package in the working directory, as ``python -m`` would (the
    ``edgebench`` script's own directory is on sys.path, the user's is not)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _attribute(module: ModuleType, attribute: str, where: str) -> Any:
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in vars(obj) if not n.startswith("_") and callable(getattr(obj, n)))
            hint = f"; it defines {', '.join(public[:8])}" if public else ""
            raise PluginError(f"{where} has no attribute '{attribute}'{hint}")
        obj = getattr(obj, part)
    return obj


def import_module(name: str) -> ModuleType:
    """Import ``name``; PluginError when it is missing or raises while importing."""
    _cwd_importable()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginError(f"module '{name}' not found (is its package installed, or its directory the working "
                              "directory?)") from None
        raise PluginError(f"importing module '{name}' failed: {type(exc).__name__}: {first_line(exc)}") from None
    except Exception as exc:  # user code: anything it raises is the cause
        raise PluginError(f"importing module '{name}' failed: {type(exc).__name__}: {first_line(exc)}") from None


def import_object(ref: str) -> Any:
    """The object an import path ``package.module:attribute`` names."""
    module_name, _, attribute = ref.partition(":")
    if module_name == "__main__":
        return _attribute(_main_script(ref), attribute, f"the running script {os.environ[MAIN_SCRIPT_ENV]}")
    return _attribute(import_module(module_name), attribute, f"module '{module_name}'")


def _main_script(ref: str) -> ModuleType:
    """The running script imported as a plug-in file, for ``__main__:attribute``: a spawned worker's ``__main__``
    is multiprocessing's own, so every process reads the script's file (its ``if __name__ == "__main__":`` part
    does not run), and a model whose class the script defines unpickles in each of them."""
    main = sys.modules.get("__main__")
    file = os.environ.get(MAIN_SCRIPT_ENV) or getattr(main, "__file__", None)
    if not os.environ.get(MAIN_SCRIPT_ENV) and os.environ.get("EDGEBENCH_WORKER_KIND"):  # a Ray worker's __main__
        raise PluginError(f"'{ref}' names an object of the driver's script, which a Ray worker cannot read; install "
                          "its code as a package and name it by its module (my_pkg.nets:build)")
    attribute = ref.partition(":")[2].split(".")[0]
    module = load_file(file) if file and str(file).endswith(".py") and Path(file).is_file() else None
    if module is None or (not hasattr(module, attribute) and hasattr(main, attribute)):
        raise PluginError(f"'{ref}' names an object defined interactively (a notebook, a REPL, python -c), which "
                          "edgebench's worker processes cannot import; put it in a .py file and name that "
                          "(model: {file: nets.py, factory: build}, or a plugins: [nets.py] file registering it)")
    os.environ[MAIN_SCRIPT_ENV] = script = str(Path(file).resolve())
    if script not in map(str, _env_files()):
        os.environ[PLUGINS_ENV] = os.pathsep.join([*map(str, _env_files()), script])
    return module


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the sha256 of a file's bytes, for content-addressed ids (ids and caches are keyed
    on that length)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(Path(path))


def content_digest(path: str | Path) -> str:
    """:func:`file_digest` of a file: 16 hex digits of its sha256 (cached while its size and modification time stay
    the same)."""
    stat = Path(path).stat()
    return _digest(str(path), stat.st_mtime_ns, stat.st_size)


#: what the module of a user's file is named by, before its stem and digest (no other process can import it by name)
USER_FILE_MODULE_PREFIX = "edgebench_plugin_"


def _module_name(file: Path) -> str:
    """The module name of a user's file: its stem and content digest, so an edited file is a new module."""
    stem = re.sub(r"\W", "_", file.stem)
    return f"{USER_FILE_MODULE_PREFIX}{stem}_{file_digest(file)}"


def _env_files() -> list[Path]:
    return [Path(f) for f in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if f]


class _UserFileFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of the user's files (``EDGEBENCH_PLUGINS``) by name, so a model pickled in one process
    (its class lives in ``edgebench_plugin_<stem>_<digest>``) unpickles in another: an exporter, a worker."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(USER_FILE_MODULE_PREFIX):
            return None
        for file in _env_files():
            if file.is_file() and _module_name(file) == name:
                if str(file.parent) not in sys.path:  # its own imports of neighbouring files, also when unpickling
                    sys.path.append(str(file.parent))
                return importlib.util.spec_from_file_location(name, file)
        return None


sys.meta_path.append(_UserFileFinder())


def load_file(path: str | Path) -> ModuleType:
    """Import the Python file ``path`` (once per content: an edited file is imported again)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise PluginError(f"{path}: no such Python file")
    if file.suffix != ".py":
        raise PluginError(f"{path}: not a Python file (give a .py file)")
    name = _module_name(file)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python file edgebench can import (give a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _cwd_importable()
    if str(file.parent) not in sys.path:  # a plug-in file may import its neighbours
        sys.path.append(str(file.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise PluginError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:  # argparse's parse_args() at import: its usage line looked like edgebench's own
        del sys.modules[name]
        raise PluginError(f"{path}: importing it called sys.exit({exc.code}) (parse_args() at import? run it under "
                          "`if __name__ == \"__main__\":`)") from None
    except Exception as exc:
        del sys.modules[name]
        raise PluginError(f"{path}: importing it raised {type(exc).__name__}: {first_line(exc)}") from None
    return module


def file_object(path: str | Path, attribute: str) -> Any:
    """``attribute`` of the Python file ``path``."""
    return _attribute(load_file(path), attribute, str(path))


def use_plugin_files(paths: Iterable[str | Path], code_files: Iterable[str | Path] = ()) -> None:
    """Import the experiment's ``plugins:`` files here, and let every worker spawned from now on import them and
    the other ``code_files`` (the model's file) - to register plug-ins, and to unpickle models whose class is there."""
    files = [str(Path(p).expanduser().resolve()) for p in paths]
    for file in files:
        load_file(file)
    every = list(dict.fromkeys([*files, *(str(Path(p).expanduser().resolve()) for p in code_files)]))
    if every:
        os.environ[PLUGINS_ENV] = os.pathsep.join(every)
    else:
        os.environ.pop(PLUGINS_ENV, None)


def load_env_plugins() -> None:
    """Import the files a parent process listed in ``EDGEBENCH_PLUGINS`` (a warm worker's registries call this
    before their first lookup)."""
    for file in _env_files():
        load_file(file)


def entry_point_objects(group: str, name: str | None = None) -> list[tuple[str, Any, str, str | None]]:
    """(name, loaded object or None, distribution, error line or None) of the installed entry points in ``group``
    (those called ``name``, case aside, where given). A broken plug-in package is named in its error line with what
    to do, rather than ignored: its names would otherwise be reported as unknown with no hint why."""
    found: list[tuple[str, Any, str, str | None]] = []
    for ep in entry_points(group=group):
        if name is not None and ep.name.lower() != name:
            continue
        dist = ep.dist.name if ep.dist is not None else "an installed package"
        try:
            found.append((ep.name, ep.load(), dist, None))
        except Exception as exc:
            remedy = f"fix {dist} or uninstall it (pip uninstall {dist})" if ep.dist is not None else \
                "fix or uninstall its package"
            found.append((ep.name, None, dist, f"entry point '{ep.name} = {ep.value}' (group {group}, from {dist}) "
                                               f"failed to load: {type(exc).__name__}: {first_line(exc)}; {remedy}"))
    return found
