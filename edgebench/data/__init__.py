"""Datasets: the bundled ``digits`` default plus CIFAR batch directories, ``.npz`` files and image folders, and
the user's own loaders (``data/user.py``).

:func:`load_dataset` returns a :class:`DatasetSplits` (float32 NCHW, preprocessed as declared or standardised
with train statistics, int64 labels, fixed-seed train/val/test split) so models and training never care where
data came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgebench.data.files import imagefolder, sized_imagefolder
from edgebench.data.preprocess import apply_preprocess, declares_sizing, without_sizing
from edgebench.data.registry import DATASETS
from edgebench.data.splits import DatasetSplits
from edgebench.data.user import splits_from
from edgebench.errors import DatasetError, first_line
from edgebench.plugins import PluginError
from edgebench.variants import Preprocess

#: loaders whose images may differ in size, with the variant that sizes each image as it reads it, as
#: dataset.preprocess declares (images of several sizes cannot be stacked for :func:`apply_preprocess`)
_SIZE_WHILE_READING: dict[Callable[..., Any], Callable[..., DatasetSplits]] = {imagefolder: sized_imagefolder}


def load_dataset(name: str, preprocess: Preprocess | None = None, **kwargs: Any) -> DatasetSplits:
    """Load dataset ``name`` - registered, or an import path to the user's loader - with ``kwargs`` for its loader
    (e.g. ``path``, ``seed``), then apply ``preprocess`` (default: standardise with the training split's statistics).

    Whatever the loader raises or returns wrongly (a split fraction of 1.5, an unreadable file, a list instead of
    splits) is a DatasetError naming the dataset.
    """
    try:
        loader = DATASETS.get(name)
        sizing = _SIZE_WHILE_READING.get(loader) if preprocess is not None and declares_sizing(preprocess) else None
        if sizing is not None:  # the loader sizes each image as it reads it; normalising is all that is left
            loaded, preprocess = sizing(preprocess, **kwargs), without_sizing(preprocess)
        else:
            loaded = loader(**kwargs)
    except (DatasetError, PluginError):  # already one line naming the file or module
        raise
    except Exception as exc:  # the loader's own error (often the user's code) is the cause
        raise DatasetError(f"dataset {name} {kwargs}: {type(exc).__name__}: {first_line(exc)}") from None
    try:
        splits = splits_from(loaded, name)
    except DatasetError:
        raise
    except Exception as exc:  # what the loader returned cannot be made arrays (images of two sizes in one list)
        raise DatasetError(f"dataset {name}: what the loader returned cannot be read as images and labels: "
                           f"{type(exc).__name__}: {first_line(exc)}") from None
    return _one_image_shape(apply_preprocess(_usable(splits, name), preprocess), name)


def _usable(splits: DatasetSplits, name: str) -> DatasetSplits:
    """``splits`` unless no classifier could learn or be scored on them: NaN or infinite pixels (they reach every
    logit and leave the accuracy at chance, with no error), a split whose channels or labels do not fit the training
    split's (checked before preprocessing, whose per-channel statistics would broadcast over other channels), or a
    training or test split with one class; DatasetError."""
    for split in ("train", "val", "test"):
        images, labels = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        # a NaN or an infinity makes its image's sum non-finite (float64: no finite float32 pixels overflow it)
        bad = ~np.isfinite(images.sum(axis=tuple(range(1, images.ndim)), dtype=np.float64))
        if bad.any():
            where = " (held out of the training images where the data gives no val split)" if split == "val" else ""
            raise DatasetError(f"dataset {name}: {int(bad.sum())} image(s) of the {split} split{where} hold NaN or "
                               "infinite values; remove them or fill the gaps before edgebench reads them")
        if images.shape[1] != splits.input_shape[0]:
            raise DatasetError(f"dataset {name}: the {split} split's images have {images.shape[1]} channel(s), the "
                               f"training split's {splits.input_shape[0]}; every split needs the same channels")
        outside = labels[(labels < 0) | (labels >= splits.num_classes)]
        if len(outside):
            raise DatasetError(f"dataset {name}: the {split} split has label {int(outside[0])}, outside its "
                               f"{splits.num_classes} classes 0..{splits.num_classes - 1}")
    present = np.unique(splits.y_train)
    if len(present) < 2:
        raise DatasetError(f"dataset {name}: the training split holds only class {present.tolist()}; a classifier "
                           "needs images of at least two classes")
    scored = np.unique(splits.y_test)
    if len(scored) == 1:  # every accuracy would be how often a variant answers that class: a collapsed one scores 1
        raise DatasetError(f"dataset {name}: the test split holds only class {scored.tolist()} of the training "
                           f"split's {len(present)} classes; accuracy on it says nothing of the others: give the test split "
                           "images of at least two classes")
    for split in ("val", "test"):  # scored on classes never trained: an accuracy of 0 on them, unexplained
        untrained = np.setdiff1d(np.unique(getattr(splits, f"y_{split}")), present)
        if len(untrained):
            raise DatasetError(f"dataset {name}: the {split} split has class(es) {untrained.tolist()[:5]} that no "
                               "training image has (labels counted from 1 in one split and from 0 in another?); "
                               "give every split the same class ids")
    return splits


def _one_image_shape(splits: DatasetSplits, name: str) -> DatasetSplits:
    """``splits`` when every split's images have the training split's shape (after preprocessing, which may resize
    them); DatasetError naming the split otherwise - a model built for one shape fails on the other after training."""
    for split in ("val", "test"):
        shape = tuple(getattr(splits, f"x_{split}").shape[1:])
        if shape != tuple(splits.input_shape):
            shown = "x".join(map(str, shape)), "x".join(map(str, splits.input_shape))
            raise DatasetError(f"dataset {name}: the {split} split's images are {shown[0]}, the training split's "
                               f"{shown[1]}; give every split one size, or declare dataset.preprocess: "
                               "{resize: [H, W]}")
    return splits


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


__all__ = ["DATASETS", "DatasetSplits", "list_datasets", "load_dataset"]
