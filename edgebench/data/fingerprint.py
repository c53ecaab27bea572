"""What the data a dataset's options point at holds, as a digest that enters variant ids and the run's hash.

A dataset is named by its loader and options; a path among the options (an ``.npz``, a CIFAR or image-folder
directory, a user loader's file) can be rewritten in place, and models trained on the old data must not be reused
for the new. A file counts by its content (a moved copy keeps the id), a directory by each file's relative path,
size and modification time (reading a whole image folder on every run would cost more than it guards).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: bumped when reading an image directory changes what the arrays hold (1: images kept at their native size for
#: a declared resize/crop instead of squashed to image_size first, 16-bit PNGs scaled by 65535)
DIRECTORY_READER_REVISION = 1


def data_digest(kwargs: Mapping[str, Any]) -> str | None:
    """A digest of the files and directories that ``kwargs``' string values name (read from the working directory,
    ``~`` expanded, as loaders read them); None when they name none."""
    from edgebench.plugins import content_digest

    parts = []
    for key, value in sorted(kwargs.items()):
        for text in _strings(value):
            path = Path(text).expanduser()
            if path.is_file():
                parts.append(f"{key}:file:{content_digest(path)}")
            elif path.is_dir():  # with how directories of images are read: models cached before a change retrain
                parts.append(f"{key}:dir:r{DIRECTORY_READER_REVISION}:{_tree_digest(path)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else None


def _strings(value: Any) -> Iterator[str]:
    """The strings in an option's value (a path, or a list of paths)."""
    if isinstance(value, str) and value:
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            stat = path.stat()
            h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
