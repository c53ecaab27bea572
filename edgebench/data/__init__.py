"""Datasets: the bundled ``digits`` default plus CIFAR batch directories, ``.npz`` files and image folders, and
the user's own loaders (``data/user.py``).

:func:`load_dataset` returns a :class:`DatasetSplits` (float32 NCHW, preprocessed as declared or standardised
with train statistics, int64 labels, fixed-seed train/val/test split) so models and training never care where
data came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    return apply_preprocess(_usable(splits_from(loaded, name), name), preprocess)


def _usable(splits: DatasetSplits, name: str) -> DatasetSplits:
    """``splits`` unless no classifier could learn or be scored on them: NaN or infinite pixels (they reach every
    logit and leave the accuracy at chance, with no error) or a training split with one class; DatasetError."""
    for split in ("train", "val", "test"):
        images = getattr(splits, f"x_{split}")
        # a NaN or an infinity makes its image's sum non-finite (float64: no finite float32 pixels overflow it)
        bad = ~np.isfinite(images.sum(axis=tuple(range(1, images.ndim)), dtype=np.float64))
        if bad.any():
            raise DatasetError(f"dataset {name}: {int(bad.sum())} image(s) of the {split} split hold NaN or infinite "
                               "values; remove them or fill the gaps before edgebench reads them")
    present = np.unique(splits.y_train)
    if len(present) < 2:
        raise DatasetError(f"dataset {name}: the training split holds only class {present.tolist()}; a classifier "
                           "needs images of at least two classes")
    return splits


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "DatasetSplits", "list_datasets", "load_dataset"]
