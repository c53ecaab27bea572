"""A team's own dataset loader (``dataset: {name: my_pkg.data:load}``, an entry point, or a ``plugins:`` file).

The loader returns its splits in whichever form it has them, and :func:`splits_from` turns that into the arrays
edgebench trains and measures on (the whole dataset in memory, as every built-in loader does):

- ``{"train": ..., "test": ..., "val": ...}`` (``val`` optional), each a torch ``Dataset`` of ``(image, label)``
  items - a tensor, numpy array or PIL image per image - (or of dict items, as Hugging Face datasets give them:
  ``{"image": ..., "label": ...}``, the keys in :data:`IMAGE_KEYS` and :data:`LABEL_KEYS`), an ``IterableDataset``
  of them, a ``DataLoader`` of them (read batch by batch: its sampler picks the split's items), or an ``(x, y)``
  pair of arrays;
- arrays ``x_train, y_train, x_test, y_test`` (and optionally ``x_val, y_val``), as in an ``.npz``;
- ``((x_train, y_train), (x_test, y_test))``, as Keras's ``load_data()`` returns them;
- a :class:`~edgebench.data.splits.DatasetSplits`.

Images may be (N,H,W), NCHW or NHWC; uint8 is scaled to [0, 1]. The layout is read from the shape where it tells
(NCHW where it cannot); a loader whose shape misleads, e.g. NCHW (N, 8, 8, 4), adds ``"layout": "NCHW"`` to what it
returns. Declare normalisation, resizing and cropping
in ``dataset.preprocess`` rather than in the loader, so edgebench applies them to every split it measures on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np

from edgebench.data.files import Layout, check_labelled, check_split_keys, to_nchw
from edgebench.data.splits import DatasetSplits, make_splits
from edgebench.errors import DatasetError

#: validation share held out of ``train`` when the loader gives no ``val`` split, and its seed
VAL_FRACTION, SEED = 0.1, 0
_SPLITS = ("train", "val", "test")
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
#: the keys of a dict item's image and label, tried in order (Hugging Face datasets, torchvision-style wrappers)
IMAGE_KEYS = ("image", "img", "pixel_values", "input", "x")
LABEL_KEYS = ("label", "labels", "target", "y", "fine_label")


def _image(item: Any) -> np.ndarray:
    """One image as a numpy array (a tensor, a PIL image or an array)."""
    if hasattr(item, "detach"):  # a torch tensor
        return item.detach().cpu().numpy()
    return np.asarray(item)


def _from_dataset(dataset: Any, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a torch ``Dataset`` (or any sequence of (image, label) pairs), read item by item; of an
    ``IterableDataset`` (or any other iterable of them), as it yields them."""
    try:
        if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
            items = [dataset[i] for i in range(len(dataset))]
        else:
            items = list(dataset)
    except Exception as exc:
        raise DatasetError(f"dataset {name}: reading its '{split}' split failed: {type(exc).__name__}: {exc}") from None
    return _from_items(items, split, name)


def _from_loader(loader: Any, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a torch ``DataLoader``: its sampler picks the split's items (a validation split drawn from
    a shared dataset by a ``SubsetRandomSampler``), its dataset's transforms and its ``collate_fn`` make them. They
    are read in index order: a shuffling loader yields another order in each process, and every process of a run
    must load the same arrays (training draws its own batches)."""
    from torch.utils.data import DataLoader

    dataset = loader.dataset
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):  # map-style: its sampler's indices, sorted
        batches = loader.batch_sampler if loader.batch_sampler is not None else [[i] for i in loader.sampler]
        picked = sorted(i for batch in batches for i in batch)
        if loader.batch_sampler is None:  # automatic batching off: the loader yields items
            return _from_items([dataset[i] for i in picked], split, name)
        loader = DataLoader(dataset, batch_size=loader.batch_size or 64, sampler=picked, collate_fn=loader.collate_fn)
    elif loader.batch_sampler is None:
        return _from_dataset(loader, split, name)
    images, labels = [], []
    try:
        for batch in loader:
            pair = _dict_item(batch, split, name) if isinstance(batch, Mapping) else batch
            if not (isinstance(pair, Sequence) and len(pair) >= 2):
                raise DatasetError(f"dataset {name}: its '{split}' DataLoader must yield (images, labels) batches; got "
                                   f"{type(batch).__name__}")
            images.append(_image(pair[0]))
            labels.append(np.atleast_1d(_image(pair[1])))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"dataset {name}: reading its '{split}' split failed: {type(exc).__name__}: {exc}") from None
    if not images:
        raise DatasetError(f"dataset {name}: its '{split}' DataLoader yields no batches")
    return np.concatenate(images), np.concatenate(labels)


def _from_items(items: list[Any], split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a split's items: (image, label) pairs or dict items."""
    if items and isinstance(items[0], Mapping):
        items = [_dict_item(it, split, name) for it in items]
    if not items or not all(isinstance(it, Sequence) and len(it) >= 2 for it in items):
        raise DatasetError(f"dataset {name}: its '{split}' split must yield (image, label) pairs; got "
                           f"{type(items[0]).__name__ if items else 'no items'}")
    # labels as given (tensors as arrays): splits_from checks they are integer class ids, as for arrays
    return _stacked([it[0] for it in items], split, name), np.asarray([_image(it[1]) for it in items])


def _dict_item(item: Any, split: str, name: str) -> tuple[Any, Any]:
    """A dict item's (image, label), by the first key of each kind it has."""
    keys = [next((k for k in wanted if isinstance(item, Mapping) and k in item), None) for wanted in (IMAGE_KEYS, LABEL_KEYS)]
    if None in keys:
        has = ", ".join(map(repr, item)) if isinstance(item, Mapping) else type(item).__name__
        raise DatasetError(f"dataset {name}: its '{split}' split yields dict items with keys {has}; edgebench reads "
                           f"the image from {' / '.join(IMAGE_KEYS)} and the label from {' / '.join(LABEL_KEYS)} "
                           "(or return (image, label) pairs)")
    return item[keys[0]], item[keys[1]]


def _stacked(images: Sequence[Any], split: str, name: str) -> np.ndarray:
    """One array of a split's images (tensors, PIL images or arrays), which must share one shape."""
    arrays = [_image(image) for image in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        shown = ", ".join(map(str, sorted(shapes)[:3]))
        modes = {(a.ndim, a.shape[-1] if a.ndim == 3 else None) for a in arrays}  # gray (H, W), RGB, RGBA...
        if len(modes) > 1 and all(mode[1] in (None, 1, 3, 4) for mode in modes):
            raise DatasetError(f"dataset {name}: its '{split}' images have different channels ({shown}: grayscale, "
                               "RGB and RGBA PIL images mixed?); convert them to one mode in the loader (PIL's "
                               "image.convert('RGB'))")
        raise DatasetError(f"dataset {name}: its '{split}' images differ in shape ({shown}); resize them in the loader "
                           "to one shape, then declare dataset.preprocess")
    return np.stack(arrays)


def _is_xy_pair(value: Any) -> bool:
    """Whether ``value`` is an ``(x, y)`` pair (images, one scalar label each) rather than a sequence of two
    ``(image, label)`` items: both have two entries, but only a pair's second entry holds scalars (or a column of
    them)."""
    if not (isinstance(value, tuple | list) and len(value) == 2 and all(hasattr(v, "__len__") for v in value)):
        return False
    x, y = value
    if len(x) != len(y):
        return False
    if hasattr(x, "shape") and len(x.shape) >= 3 and hasattr(y, "shape") and len(y.shape) == 2:
        return True  # images and a row of label values each (one-hot): check_labelled says how to convert them
    return all(np.shape(_image(label)) in ((), (1,)) for label in y)  # (N, 1): Keras's column


def _pair(value: Any, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    if _is_xy_pair(value):
        x = _stacked(value[0], split, name) if isinstance(value[0], list | tuple) else _image(value[0])
        return x, np.asarray([_image(v) for v in value[1]])
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(value, DataLoader):
        return _from_loader(value, split, name)
    if (hasattr(value, "__getitem__") and hasattr(value, "__len__")) or isinstance(value, IterableDataset):
        return _from_dataset(value, split, name)
    raise DatasetError(f"dataset {name}: its '{split}' split is a {type(value).__name__}; give a torch Dataset "
                       "(or IterableDataset, or DataLoader) of (image, label) items or an (x, y) pair of arrays")


def _num_classes(loaded: Mapping[str, Any]) -> int | None:
    if isinstance(loaded.get("num_classes"), int):
        return loaded["num_classes"]
    classes = getattr(loaded.get("train"), "classes", None)  # torchvision-style datasets name their classes
    return len(classes) if isinstance(classes, Sequence) and classes else None


def _layout(loaded: Any, name: str) -> Layout:
    """The image layout the loader declared with a ``"layout"`` entry (default ``auto``: read from the shape)."""
    layout = loaded.get("layout", "auto") if isinstance(loaded, Mapping) else "auto"
    if layout not in get_args(Layout):
        raise DatasetError(f"dataset {name}: the loader's 'layout' is {layout!r}; give one of {', '.join(get_args(Layout))}")
    return layout


def splits_from(loaded: Any, name: str) -> DatasetSplits:
    """The splits a user's loader returned, as arrays in [0, 1]; DatasetError naming what is wrong."""
    if isinstance(loaded, DatasetSplits):
        return loaded
    if isinstance(loaded, tuple) and len(loaded) == 2 and all(_is_xy_pair(part) for part in loaded):
        loaded = {"train": loaded[0], "test": loaded[1]}  # Keras's load_data(): (x_train, y_train), (x_test, y_test)
    where = Path(name)
    if isinstance(loaded, Mapping) and all(k in loaded for k in _ARRAYS):
        check_split_keys(list(loaded), f"dataset {name}", options=("num_classes", "layout"))
        data = {k: _stacked(v, k.removeprefix("x_"), name) if k.startswith("x_") and isinstance(v, list | tuple)
                else np.asarray(v) for k, v in loaded.items() if k not in ("num_classes", "layout")}
    elif isinstance(loaded, Mapping) and "train" in loaded and "test" in loaded:
        data = {}
        for split in _SPLITS:
            if loaded.get(split) is not None:
                data[f"x_{split}"], data[f"y_{split}"] = _pair(loaded[split], split, name)
    else:
        raise DatasetError(f"dataset {name}: the loader returned a {type(loaded).__name__}; return "
                           "{'train': ..., 'test': ...} (torch Datasets or (x, y) arrays) or a mapping of arrays "
                           "x_train, y_train, x_test, y_test")
    check_labelled(data, [("x_train", "y_train"), ("x_test", "y_test"), ("x_val", "y_val")], where)
    data |= {k: v.astype(np.int64) for k, v in data.items() if k.startswith("y_")}  # checked integral above
    layout = _layout(loaded, name)
    # a shape that cannot tell its layout is taken as NCHW, torch's own, unless the loader says ("layout": ...)
    nchw = {k: to_nchw(v, k, where, layout, ambiguous="NCHW") for k, v in data.items() if k.startswith("x_")}
    return make_splits(name, nchw["x_train"], data["y_train"], nchw["x_test"], data["y_test"], VAL_FRACTION, SEED,
                       x_val=nchw.get("x_val"), y_val=data.get("y_val"),
                       num_classes=_num_classes(loaded) if isinstance(loaded, Mapping) else None)
