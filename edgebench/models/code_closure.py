"""The user's source files behind a factory, plug-in or loader: the file itself and the user modules it imports.

A variant's id carries a digest of its code so that an edited file never reuses a cached model; a factory that
builds its layers from a helper module (``from teamnet.blocks import Block``) is as much that model as its own
file. Imports are read from each file's source (``ast``), resolved to files through the modules already loaded
(or, for an import not run yet, the path finder, which imports nothing), and followed while they stay in the
user's code: files outside Python's standard library and installed packages, or inside the package of a file
given.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

#: edgebench's own package: its code is never the user's
EDGEBENCH_DIR = Path(__file__).resolve().parent.parent


def library_dirs() -> tuple[Path, ...]:
    """Where code that is not the user's lives: edgebench, Python's standard library and installed packages."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return (EDGEBENCH_DIR, *(Path(d).resolve() for d in dirs))


def _package_root(file: Path) -> Path:
    """The top-level package directory ``file`` belongs to (its own directory when it is in no package)."""
    root = file.parent
    while (root.parent / "__init__.py").is_file() and (root / "__init__.py").is_file():
        root = root.parent
    return root


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where module ``name`` would be imported from, found on ``sys.path`` (or its parent package's path) without
    importing anything: hashing must not run a package's ``__init__`` (a GPU claimed, a platform assert)."""
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.machinery.PathFinder.find_spec(name)
    loaded = sys.modules.get(parent)
    path = getattr(loaded, "__path__", None) if loaded is not None else None
    if path is None:
        spec = _spec(parent)
        path = spec.submodule_search_locations if spec is not None else None
    return importlib.machinery.PathFinder.find_spec(name, list(path)) if path else None


def _module_file(name: str) -> Path | None:
    """The source file of module ``name``, loaded or findable; None for a builtin, an extension or no module."""
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file is None and module is None:
        try:
            spec = _spec(name)
        except Exception:  # a name the finder cannot take (relative, malformed): not a file to follow
            return None
        file = spec.origin if spec is not None and spec.has_location else None
    return Path(file).resolve() if file and str(file).endswith(".py") else None


def _package_of(file: Path) -> str | None:
    """The dotted package ``file`` belongs to, read from the ``__init__.py`` files around it (None: in none)."""
    root = _package_root(file)
    if not (file.parent / "__init__.py").is_file():
        return None
    return ".".join(file.parent.relative_to(root.parent).parts)


def _imported_names(file: Path) -> Iterator[str]:
    """Every module name ``file`` imports, relative imports resolved against its package, each ``from m import x``
    also as ``m.x`` (x may be a submodule)."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except (OSError, SyntaxError, ValueError):
        return
    package = _package_of(file)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names if alias.name != "*")


def user_code_files(files: Sequence[str | Path]) -> list[str]:
    """``files`` (in order) and after them, sorted, the user's source files they import, directly or not."""
    roots = [Path(f).resolve() for f in files]
    packages = {_package_root(f) for f in roots}
    library = library_dirs()

    def is_users(file: Path) -> bool:
        return any(file.is_relative_to(p) for p in packages) or not any(file.is_relative_to(d) for d in library)

    seen: set[Path] = set(roots)
    stack = list(roots)
    while stack:
        for name in _imported_names(stack.pop()):
            file = _module_file(name)
            if file is not None and file not in seen and file.is_file() and is_users(file):
                seen.add(file)
                stack.append(file)
    found = sorted(str(f) for f in seen - set(roots))
    return [*dict.fromkeys(str(f) for f in roots), *found]
