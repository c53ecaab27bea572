"""Datasets: the bundled ``digits`` default plus CIFAR batch directories, ``.npz`` files and image folders, and
the user's own loaders (``data/user.py``).

:func:`load_dataset` returns a :class:`DatasetSplits` (float32 NCHW, preprocessed as declared or standardised
with train statistics, int64 labels, fixed-seed train/val/test split) so models and training never care where
data came from.
"""

from __future__ import annotations

from typing import Any

from edgebench.data.preprocess import apply_preprocess
from edgebench.data.registry import DATASETS
from edgebench.data.splits import DatasetSplits
from edgebench.data.user import splits_from
from edgebench.errors import DatasetError, first_line
from edgebench.plugins import PluginError
from edgebench.variants import Preprocess


def load_dataset(name: str, preprocess: Preprocess | None = None, **kwargs: Any) -> DatasetSplits:
    """Load dataset ``name`` - registered, or an import path to the user's loader - with ``kwargs`` for its loader
    (e.g. ``path``, ``seed``), then apply ``preprocess`` (default: standardise with the training split's statistics).

    Whatever the loader raises or returns wrongly (a split fraction of 1.5, an unreadable file, a list instead of
    splits) is a DatasetError naming the dataset.
    """
    try:
        loaded = DATASETS.get(name)(**kwargs)
    except (DatasetError, PluginError):  # already one line naming the file or module
        raise
    except Exception as exc:  # the loader's own error (often the user's code) is the cause
        raise DatasetError(f"dataset {name} {kwargs}: {type(exc).__name__}: {first_line(exc)}") from None
    return apply_preprocess(splits_from(loaded, name), preprocess)


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "DatasetSplits", "list_datasets", "load_dataset"]
