"""scikit-learn's bundled 8x8 handwritten digits: the default dataset, needs no download."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from edgebench.data.registry import DATASETS
from edgebench.data.splits import DatasetSplits, check_fraction, make_splits, stratified_split


@DATASETS.register("digits")
def digits(seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2) -> DatasetSplits:
    """1797 grey 8x8 digits (10 classes) as 1x8x8 images, pixel values scaled to [0, 1] (load_dataset standardises).

    The test split is drawn first, then validation from the rest; both stratified with ``seed``.
    """
    check_fraction("val_fraction", val_fraction)  # before it becomes a fraction of what the test split leaves
    check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} leave no training images: "
                         "their sum must be below 1")
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_rest, y_rest, x_test, y_test = stratified_split(x, y, test_fraction, seed)
    val_of_rest = val_fraction / (1.0 - test_fraction)
    return make_splits("digits", x_rest, y_rest, x_test, y_test, val_of_rest, seed, num_classes=10)
