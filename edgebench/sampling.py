"""Subsets of a dataset that keep its classes: calibration images and a measurement's accuracy subset.

A leaf module (numpy only): measurement workers import it, and their peak RSS should hold the runtime, not torch
or scikit-learn.
"""

from __future__ import annotations

import numpy as np

#: bumped when which calibration images are drawn changes (1: spread over the classes, was the first N): part of
#: the cache key of every artifact made from them, so none calibrated on the old draw is reused
CALIBRATION_DRAW = 1


def spread_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` images drawn at random (``seed``) with each class in proportion to its share of ``y``: a
    file sorted by class gives its first ``n`` images of one class (int8 ranges calibrated on them cost a sorted
    digits-like set 40 points of accuracy)."""
    y = np.asarray(y)
    order = np.random.default_rng(seed).permutation(len(y))
    if not len(y):
        return order
    _, classes = np.unique(y[order], return_inverse=True)
    by_class = np.argsort(classes, kind="stable")  # the shuffled images grouped by class, each group in shuffle order
    sizes = np.bincount(classes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    place = np.empty(len(y))  # each image's place among its class, as a fraction of the class: interleaves them
    place[by_class] = (np.arange(len(y)) - np.repeat(starts, sizes) + 0.5) / np.repeat(sizes, sizes)
    return order[np.argsort(place, kind="stable")][:n]
