"""Which files of a directory each built-in dataset loader reads, for the data digest (``data.fingerprint``): the
other files in a data folder, such as a run's own store and report kept there, are not its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgebench.data.cifar import CIFAR10_TRAIN
from edgebench.data.files import imagefolder_files


def read_by(loader: str) -> Callable[[Path], list[Path]] | None:
    """The files of a directory the built-in ``loader`` reads (the others in it, such as a run's own outputs and
    report images kept there, are not its data); None: any file may matter (a user's loader)."""
    if loader in ("cifar10", "cifar100"):
        names = (*CIFAR10_TRAIN, "test_batch") if loader == "cifar10" else ("train", "test")
        return lambda root: [root / name for name in names if (root / name).is_file()]
    if loader == "imagefolder":
        return imagefolder_files
    return None
