"""Declared input preprocessing (``dataset.preprocess``), applied once to every split of a dataset.

Every consumer reads the same arrays - training and validation, the int8 calibration images (drawn from the
training split), and the test split every target's accuracy is measured on - so the preprocessing the trained
weights expect is applied identically everywhere, once, in the process that loads the data. Resizing is
bilinear with antialiasing (torchvision's tensor ``Resize`` default), cropping central, normalising per channel;
without ``normalize`` images are standardised with the training split's statistics.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from edgebench.data.splits import DatasetSplits, InputScaling
from edgebench.errors import DatasetError
from edgebench.variants import Preprocess

log = logging.getLogger(__name__)

#: images resized per call (bounds the float copy interpolation makes)
_CHUNK = 256


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resized_shape(shape: tuple[int, int], resize: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) after ``resize``: an int sets the shorter side (aspect ratio kept), a pair the exact size."""
    if not isinstance(resize, int):
        return _pair(resize)
    h, w = shape
    short, long_ = (h, w) if h <= w else (w, h)
    scaled = int(resize * long_ / short)
    return (resize, scaled) if h <= w else (scaled, resize)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch
    from torch.nn import functional

    if tuple(x.shape[2:]) == size:
        return x
    out = [functional.interpolate(torch.from_numpy(np.ascontiguousarray(x[i : i + _CHUNK])), size=size,
                                  mode="bilinear", align_corners=False, antialias=True).numpy()
           for i in range(0, len(x), _CHUNK)]
    return np.concatenate(out) if out else np.zeros((0, x.shape[1], *size), dtype=np.float32)


def _center_crop(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = x.shape[2:]
    ch, cw = size
    if ch > h or cw > w:
        raise DatasetError(f"dataset.preprocess.center_crop: {ch}x{cw} is larger than the {h}x{w} images it crops; "
                           "resize first or crop smaller")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[:, :, top : top + ch, left : left + cw]


def declares_sizing(prep: Preprocess | None) -> bool:
    """Whether ``prep`` resizes or crops (what makes images of several sizes one size)."""
    return prep is not None and (prep.resize is not None or prep.center_crop is not None)


def without_sizing(prep: Preprocess) -> Preprocess:
    """``prep`` less its resize and crop, for images a loader has already sized with :func:`size_image`."""
    return prep.model_copy(update={"resize": None, "center_crop": None})


def size_image(image: np.ndarray, prep: Preprocess) -> np.ndarray:
    """One CHW float image resized and cropped as ``prep`` declares - what :func:`apply_preprocess` does to a batch
    of images of this size - for a loader whose images differ in size and so cannot be stacked before."""
    x = image[None].astype(np.float32, copy=False)
    if prep.resize is not None:
        x = _resize(x, resized_shape(tuple(x.shape[2:]), prep.resize))
    if prep.center_crop is not None:
        x = _center_crop(x, _pair(prep.center_crop))
    return x[0]


def _normalized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)


#: the largest pixel a normalize declared for [0, 1] images can mean without a warning (resizing overshoots a bit)
_UNIT_RANGE_TOP = 1.5


def _check_memory(values: int, resize: int | tuple[int, int]) -> None:
    """DatasetError before resizing to more float32 pixels than half the memory available holds (the resize keeps
    its input beside its output, and training copies batches): `resize: 4096` on digits asked for 120 GB, and a
    huge one overflowed torch's size computation with a traceback."""
    import psutil

    need, free = values * 4, psutil.virtual_memory().available
    if need > free / 2:
        raise DatasetError(f"dataset.preprocess.resize {resize} makes the splits {need / 2**30:.3g} GiB of float32 "
                           f"pixels, more than half the {free / 2**30:.1f} GiB of memory available; give the model's "
                           "input size (e.g. 224), not a larger one")


def _check_normalize_scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    """Warn where a declared normalize and the pixels it is applied to are on different scales (float pixels
    0..255, or ImageNet's statistics times 255 on [0, 1] pixels): either leaves near-constant inputs to train on."""
    if not mean.any() and (std == 1).all():  # the declared identity: a loader that standardises its images itself
        return
    top, high = float(x.max()), float(max(np.abs(mean).max(), std.max()))
    if top > _UNIT_RANGE_TOP:  # float pixels 0..255: normalize is for [0, 1]
        log.warning("dataset.preprocess.normalize takes pixels in [0, 1], but the training images reach %.4g: "
                    "divide them by their full scale (255) in the loader, or give them as uint8", top)
    elif high > 1 and float(x.min()) >= 1 - _UNIT_RANGE_TOP:  # no channel of [0, 1] pixels has a mean or std above 1
        log.warning("dataset.preprocess.normalize has mean/std values up to %.4g, but it is applied to pixels in [0, 1] "
                    "(the training images reach %.4g; uint8 is scaled to [0, 1] first): statistics of 0..255 pixels "
                    "are divided by 255 (here mean %s, std %s)", high, top, [round(float(m) / 255, 4) for m in mean],
                    [round(float(s) / 255, 4) for s in std])


def apply_preprocess(splits: DatasetSplits, prep: Preprocess | None) -> DatasetSplits:
    """``splits`` (pixel values in [0, 1]) resized, cropped and normalised as ``prep`` declares; standardised with
    the training split's per-channel statistics when it declares no ``normalize``. DatasetError for a crop
    larger than the images, or a normalisation with the wrong number of channels."""
    arrays = {"x_train": splits.x_train, "x_val": splits.x_val, "x_test": splits.x_test}
    prep = prep or Preprocess()
    if prep.resize is not None:
        size = resized_shape(tuple(splits.x_train.shape[2:]), prep.resize)
        _check_memory(sum(len(v) for v in arrays.values()) * splits.x_train.shape[1] * size[0] * size[1], prep.resize)
        arrays = {k: _resize(v.astype(np.float32, copy=False), size) for k, v in arrays.items()}
    if prep.center_crop is not None:
        arrays = {k: _center_crop(v, _pair(prep.center_crop)) for k, v in arrays.items()}
    channels = splits.x_train.shape[1]
    if prep.normalize is not None:
        mean, std = (np.asarray(v, dtype=np.float32) for v in (prep.normalize.mean, prep.normalize.std))
        _check_normalize_scale(splits.x_train, mean, std)
        if len(mean) not in (1, channels):
            raise DatasetError(f"dataset.preprocess.normalize: {len(mean)} mean/std values for {channels}-channel "
                               "images; give one per channel (or one for all)")
    else:  # statistics of the training split only: nothing of the test split leaks into training
        mean = arrays["x_train"].mean(axis=(0, 2, 3))
        std = arrays["x_train"].std(axis=(0, 2, 3)) + 1e-6
    mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    arrays = {k: np.ascontiguousarray(_normalized(v, mean, std)) for k, v in arrays.items()}
    shape = tuple(int(d) for d in arrays["x_train"].shape[1:])
    scaling = InputScaling(mean=[float(m) for m in mean.ravel()], std=[float(d) for d in std.ravel()],
                           declared=prep.normalize is not None)
    return dataclasses.replace(splits, input_shape=shape, scaling=scaling, **arrays)  # type: ignore[arg-type]
