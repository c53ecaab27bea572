"""The dataset container every loader returns, and the split/normalise helpers loaders share."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputScaling:
    """What a deployed artifact's input is: ``(pixel in [0, 1] - mean) / std`` per channel, from the declared
    ``dataset.preprocess.normalize`` or (``declared`` false) the training split's own statistics."""

    mean: list[float]
    std: list[float]
    declared: bool


@dataclass(frozen=True)
class DatasetSplits:
    """Train/val/test arrays of one dataset (float32 NCHW, int64 labels): as a loader returns them, pixel values in
    [0, 1]; as ``load_dataset`` returns them, preprocessed (normalised or standardised), ready for training."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: how the arrays were normalised (None: as the loader gave them)
    scaling: InputScaling | None = None

    def digest(self) -> str:
        """sha256 of every array's dtype, shape and bytes (and the name): what two loads must agree on."""
        from edgebench.data.fingerprint import arrays_digest

        return arrays_digest(self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test,
                             prefix=self.name)


def check_fraction(what: str, fraction: float) -> None:
    """ValueError naming the loader option ``what`` unless ``fraction`` is strictly between 0 and 1."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what} must be a fraction strictly between 0 and 1, got {fraction}")


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, what: str = "split fraction"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off ``fraction`` of (x, y), stratified by label so every class is represented in both parts. A class
    of one image stays in the kept part (a warning names it): it cannot be on both sides, and it would otherwise
    have turned stratification off for every class.

    Returns ``(x_keep, y_keep, x_held, y_held)``; ``what`` is the loader option ``fraction`` came from, for errors.
    """
    check_fraction(what, fraction)
    counts = np.bincount(y)
    single = counts[y] == 1
    if single.any() and not single.all():
        log.warning("class(es) %s have one image each: kept for training, none held out to score them",
                    ", ".join(map(str, np.unique(y[single])[:8].tolist())))
        x_keep, y_keep, x_held, y_held = stratified_split(x[~single], y[~single], fraction, seed, what)
        return np.concatenate([x_keep, x[single]]), np.concatenate([y_keep, y[single]]), x_held, y_held
    held = math.ceil(fraction * len(y))
    if held >= len(y):
        raise ValueError(f"{len(y)} image(s) are too few to split {fraction:.0%} off with images left on both sides; "
                         "give more images")
    classes = int((counts > 0).sum())
    # stratified only where every class can appear on both sides; a tiny dataset is split at random instead
    stratify = y if counts[counts > 0].min() >= 2 and min(held, len(y) - held) >= classes else None
    from sklearn.model_selection import train_test_split  # 1.6 s of imports: only where a split is drawn

    x_keep, x_held, y_keep, y_held = train_test_split(
        x, y, test_size=fraction, random_state=seed, stratify=stratify
    )
    return x_keep, y_keep, x_held, y_held


def make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    val_fraction: float,
    seed: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    num_classes: int | None = None,
) -> DatasetSplits:
    """Hold out a validation split from train (unless given) and pack a DatasetSplits.

    Images must be NCHW floats in [0, 1] (or any consistent scale); labels integer class ids. They are left as they
    are: ``load_dataset`` applies the declared preprocessing (or standardisation) to every loader's splits.
    """
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    if x_val is None or y_val is None:
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, val_fraction, seed, "val_fraction")
    y_val = np.asarray(y_val, dtype=np.int64)
    x_train, x_val, x_test = (a.astype(np.float32, copy=False) for a in (x_train, x_val, x_test))
    classes = num_classes or int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    unused = sorted(set(range(classes)) - set(np.unique(np.concatenate([y_train, y_val, y_test])).tolist()))
    if unused and num_classes is None:
        log.warning("dataset %s: class ids run 0..%d but no image has %s: the model gets %d outputs, %d of them for "
                    "classes nothing trains (label the classes 0..K-1)", name, classes - 1,
                    ", ".join(map(str, unused[:8])) + (" ..." if len(unused) > 8 else ""), classes, len(unused))
    return DatasetSplits(
        name=name,
        num_classes=classes,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),  # type: ignore[arg-type]
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_val=np.ascontiguousarray(x_val),
        y_val=y_val,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
    )
