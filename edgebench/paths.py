"""Output paths: whether a directory or file can be written, asked before any work so nothing is half done."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgebench.errors import OutputPathError


def writable_dir(path: Path, what: str) -> Path:
    """Create directory ``path`` if missing and check a file can be written there; OutputPathError if not."""
    path = Path(path).expanduser()
    if problem := why_unwritable(path):
        raise OutputPathError(f"{what} {path}: {problem}; choose another path")
    return path


def writable_file(path: Path, what: str) -> Path:
    """Check file ``path`` can be written (its directory is created if missing); OutputPathError if not."""
    path = Path(path).expanduser()
    if problem := why_unwritable(path.parent):  # first: it also says why a path cannot be looked at
        raise OutputPathError(f"{what} {path}: {problem}")
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file name")
    return path


def why_unwritable(directory: Path) -> str | None:
    """Why no file can be written in ``directory`` (created if missing), or None."""
    try:
        blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a directory"
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:  # also a name too long for the file system
        return f"cannot write in {directory} ({exc.strerror or exc})"
    except ValueError as exc:  # a NUL in the path: no file system takes it
        return f"cannot write in {str(directory)!r} ({exc})"
    return None


def _absent(path: Path) -> bool:
    """Whether nothing is at ``path``; False for a path no file system takes (too long, a NUL): nothing can be
    created there, so nothing is left to remove (why_unwritable says what is wrong with it)."""
    try:
        return not path.exists()
    except (OSError, ValueError):
        return False


def missing_dirs(*paths: Path) -> list[Path]:
    """The directories among ``paths`` and their parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    for path in paths:
        missing += [p for p in (Path(path).expanduser(), *Path(path).expanduser().parents)
                    if _absent(p) and p not in missing]
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def remove_empty(directories: list[Path]) -> None:
    """Remove those of ``directories`` (deepest first) that are empty: what a refused run created and left bare."""
    for directory in directories:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


@contextmanager
def removed_if_left_empty(*paths: Path) -> Iterator[None]:
    """The directories among ``paths`` and their parents that the block creates are removed again where it leaves
    them empty: a command that failed, or had nothing to write, leaves no bare folder behind."""
    created = missing_dirs(*paths)
    try:
        yield
    finally:
        remove_empty(created)
