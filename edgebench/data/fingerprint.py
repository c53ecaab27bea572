"""What the data a dataset's options point at holds, as a digest that enters variant ids and the run's hash.

A dataset is named by its loader and options; a path among the options (an ``.npz``, a CIFAR or image-folder
directory, a user loader's file) can be rewritten in place, and models trained on the old data must not be reused
for the new. A file counts by its content (a moved copy keeps the id), a directory by each file's relative path,
size and modification time (reading a whole image folder on every run would cost more than it guards).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import DatasetError

#: bumped when reading an image directory changes what the arrays hold (1: images kept at their native size for
#: a declared resize/crop instead of squashed to image_size first, 16-bit PNGs scaled by 65535)
DIRECTORY_READER_REVISION = 1


def data_digest(kwargs: Mapping[str, Any], reads: Callable[[Path], list[Path]] | None = None) -> str | None:
    """A digest of the files and directories that ``kwargs``' string values name (read from the working directory,
    ``~`` expanded, as loaders read them), counting in a directory the files ``reads`` lists (every file without
    it); None when they name none."""
    from edgebench.plugins import content_digest

    parts = []
    for key, value in sorted(kwargs.items()):
        for text in _strings(value):
            path = Path(text).expanduser()
            if path.is_file():
                parts.append(f"{key}:file:{content_digest(path)}")
            elif path.is_dir():  # with how directories of images are read: models cached before a change retrain
                files = reads(path) if reads is not None else _tree_files(path)
                parts.append(f"{key}:dir:r{DIRECTORY_READER_REVISION}:{_files_digest(path, files)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else None


def arrays_digest(*arrays: np.ndarray, prefix: str = "") -> str:
    """sha256 of ``prefix`` and each array's dtype, shape and bytes: a key that changes with any element (a sum
    does not: two labels swapped kept a stale test file)."""
    h = hashlib.sha256(prefix.encode())
    for array in arrays:
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()[:16]


def _strings(value: Any) -> Iterator[str]:
    """The strings in an option's value (a path, or a list or mapping of paths)."""
    if isinstance(value, str) and value:
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _strings(value[key])


def _tree_files(root: Path) -> list[Path]:
    """Every file under ``root``; symlinked folders followed as the image-folder reader follows them (each real
    folder once: a link to a parent folder does not loop)."""
    found: list[Path] = []
    seen: set[str] = set()
    for directory, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        found += [Path(directory, name) for name in sorted(files)]
    return found


def _files_digest(root: Path, files: list[Path]) -> str:
    """Each file's path relative to ``root``, size and mtime."""
    h = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:  # a symlink to a missing file or to itself: the reader would refuse it too, later
            raise DatasetError(f"dataset file {path} cannot be read ({_unreadable(path, exc)}); replace or remove it") from None
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _unreadable(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be read, naming a symlink's target (what the user has to mend)."""
    return f"a symlink to {os.readlink(path)}: {exc.strerror}" if path.is_symlink() else exc.strerror or str(exc)
