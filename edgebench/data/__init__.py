"""Datasets: the bundled ``digits`` default plus CIFAR batch directories, ``.npz`` files and image folders.

Every loader returns a :class:`DatasetSplits` (float32 NCHW standardised with train statistics, int64
labels, fixed-seed train/val/test split) so models and training never care where data came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgebench.data.splits import DatasetSplits
from edgebench.errors import DatasetError, first_line
from edgebench.registry import Registry

#: loader modules register themselves when first looked up (they import this module: no import back)
DATASETS: Registry[Callable[..., DatasetSplits]] = Registry(
    "dataset", modules=("edgebench.data.cifar", "edgebench.data.digits", "edgebench.data.files"))


def load_dataset(name: str, **kwargs: Any) -> DatasetSplits:
    """Load the registered dataset ``name``; kwargs go to its loader (e.g. ``path``, ``seed``).

    A value the loader rejects (a split fraction of 1.5, an unreadable file) is a DatasetError naming the dataset.
    """
    try:
        return DATASETS.get(name)(**kwargs)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"dataset {name} {kwargs}: {first_line(exc)}") from None


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "DatasetSplits", "list_datasets", "load_dataset"]
