"""Bring-your-own data: a ``.npz`` file of arrays or a folder of class sub-folders of images."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgebench.data.preprocess import size_image
from edgebench.data.registry import DATASETS
from edgebench.data.splits import DatasetSplits, make_splits, stratified_split
from edgebench.errors import DatasetError, first_line
from edgebench.variants import Preprocess

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
#: image files PIL may read that an image folder does not (named when skipped, not dropped silently)
_OTHER_IMAGE_SUFFIXES = {".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

#: how an image array's axes are ordered; ``auto`` reads it from the shape
Layout = Literal["auto", "NCHW", "NHWC"]


def to_nchw(x: np.ndarray, key: str, path: Path, layout: Layout = "auto", ambiguous: Layout | None = None) -> np.ndarray:
    """(N,H,W), NCHW or NHWC images as NCHW float32; uint8 is scaled to [0, 1].

    ``layout`` ``auto`` reads the layout from the shape (:func:`guess_layout`); where the shape cannot tell,
    ``ambiguous`` is taken, or without one a DatasetError asks for ``layout``.
    """
    if x.ndim == 3:  # one channel: nothing to guess or transpose
        x, layout = x[:, None], "NCHW"
    if x.ndim != 4:
        raise DatasetError(f"{path}: '{key}' must be images (N,H,W), (N,C,H,W) or (N,H,W,C); got shape {x.shape}")
    if layout == "auto":
        layout = guess_layout(x.shape) or ambiguous or "auto"
    if layout == "auto":
        raise DatasetError(f"{path}: cannot tell whether '{key}' of shape {x.shape} is NCHW or NHWC (neither or both "
                           "of its first and last image axes look like 1, 3 or 4 channels, and its images are not "
                           "square one way only); set the dataset's layout: NCHW or NHWC")
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(x.dtype, 1.0)  # as 8/16-bit PNGs are read
    return x.astype(np.float32) / scale


def missing_path(path: str | Path | None) -> str:
    """A dataset path that is not there, as an error names it: absolute, saying where a relative one was read from
    (the working directory, unlike the model's files, which are read from the experiment file's folder)."""
    if path is None:
        return "no path (dataset.kwargs.path)"
    given = Path(path).expanduser()
    shown = str(given.absolute())
    return shown if given.is_absolute() else f"{shown} (relative dataset paths are read from the working directory)"


def guess_layout(shape: tuple[int, ...]) -> Layout | None:
    """NCHW or NHWC from an image batch's shape: the axis that looks like 1, 3 or 4 channels when only one does,
    else the layout whose images are square when only one makes them square; None when neither tells."""
    first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
    if first != last:
        return "NCHW" if first else "NHWC"
    square_nchw, square_nhwc = shape[2] == shape[3], shape[1] == shape[2]
    if square_nchw != square_nhwc:
        return "NCHW" if square_nchw else "NHWC"
    return None


def read_npz(path: Path, required: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``path``, with ``required`` keys; DatasetError naming the file if it is not a
    zip of plain arrays (pickled objects are refused: loading them would run code from the file)."""
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not an .npz file (a zip of arrays, as numpy.savez writes); expected {', '.join(required)}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in required if k not in arrays.files]
            if missing:
                raise DatasetError(f"{path}: lacks {', '.join(map(repr, missing))} (has {', '.join(arrays.files) or 'nothing'})")
            return {k: arrays[k] for k in arrays.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # numpy refuses object arrays without allow_pickle
            raise DatasetError(f"{path}: holds pickled Python objects (dtype=object); save numeric arrays") from None
        raise DatasetError(f"{path}: cannot read the .npz file ({first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read the .npz file ({first_line(exc)})") from None


def _label_hint(y: np.ndarray) -> str:
    """How labels in another common form become class ids: one-hot rows, or class names."""
    if y.ndim == 2 and y.size and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        return " (one-hot rows: store y.argmax(1))"
    if y.dtype.kind in "USO":
        return " (class names: store np.unique(y, return_inverse=True)[1], the names' sorted order)"
    return ""


def _first_bad_label(y: np.ndarray, integral: bool) -> str:
    """Where 1-D labels first stop being class ids: a negative one, or one with a fraction (", 2.5 at index 7")."""
    if y.ndim != 1 or not len(y) or y.dtype.kind not in "iuf":
        return ""
    if integral:
        return f", lowest {y.min()}" if y.min() < 0 else ""
    i = int(np.flatnonzero(np.mod(y, 1) != 0)[0])  # a NaN's remainder is NaN, which is not 0 either
    return f", {y[i]} at index {i}"


def check_labelled(data: dict[str, np.ndarray], pairs: Sequence[tuple[str, str]], path: Path) -> None:
    """Each (images, labels) pair present in ``data`` has as many labels as images, as 1-D integer class ids. A
    column of labels, shape (N, 1) as Keras's CIFAR arrays have them, is flattened in ``data``."""
    for x_key, y_key in pairs:
        if x_key not in data or y_key not in data:
            continue
        x, y = data[x_key], data[y_key]
        if y.ndim == 2 and y.shape[1] == 1:
            data[y_key] = y = y[:, 0]
        integral = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
        if y.ndim != 1 or not integral or (len(y) and y.min() < 0):
            raise DatasetError(f"{path}: '{y_key}' (the {y_key.removeprefix('y_')} split's labels) must be a 1-D array "
                               f"of class ids 0..K-1; got shape {y.shape}, {y.dtype}{_first_bad_label(y, integral)}"
                               f"{_label_hint(y)}")
        if len(x) != len(y):
            raise DatasetError(f"{path}: '{x_key}' has {len(x)} images but '{y_key}' has {len(y)} labels")
        if len(x) == 0:
            raise DatasetError(f"{path}: '{x_key}' is empty")


#: the arrays a split file or a loader's mapping holds (``num_classes`` and ``layout`` are a loader's options)
SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def check_split_keys(keys: Sequence[str], where: object, options: Sequence[str] = ()) -> None:
    """DatasetError for a validation split given half (``x_val`` without ``y_val``: it was ignored); a warning
    naming the keys edgebench does not read (``x_valid``: a misspelt split is never used)."""
    if ("x_val" in keys) != ("y_val" in keys):
        given, lacking = ("x_val", "y_val") if "x_val" in keys else ("y_val", "x_val")
        raise DatasetError(f"{where}: has '{given}' without '{lacking}'; give both (a validation split) or neither "
                           "(one is held out of the training split)")
    unread = sorted(set(keys) - set(SPLIT_ARRAYS) - set(options))
    if unread:
        log.warning("%s: %s not read (edgebench reads %s)", where, ", ".join(map(repr, unread)), ", ".join(SPLIT_ARRAYS))


def read_eval_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``x`` (N,C,H,W) and labels ``y`` of an evaluation ``.npz`` as the measurement worker reads it."""
    data = read_npz(path, ("x", "y"))
    check_labelled(data, [("x", "y")], path)
    x = data["x"]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{path}: 'x' must be numeric images (N,C,H,W); got shape {x.shape}, {x.dtype}")
    return x, data["y"]


@DATASETS.register("npz")
def npz(path: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1, layout: Layout = "auto") -> DatasetSplits:
    """Arrays ``x_train, y_train, x_test, y_test`` (and optionally ``x_val, y_val``) from one ``.npz`` file; ``layout``
    says how the image axes are ordered where the shape cannot (``auto``: from the shape)."""
    if path is None or not Path(path).expanduser().is_file():
        raise DatasetError(f"npz: {missing_path(path)} is not a file; expected an .npz with x_train, y_train, x_test, y_test")
    file = Path(path).expanduser()
    data = read_npz(file, ("x_train", "y_train", "x_test", "y_test"))
    check_split_keys(list(data), file)
    check_labelled(data, [("x_train", "y_train"), ("x_test", "y_test"), ("x_val", "y_val")], file)
    images = {key: to_nchw(data[key], key, file, layout) for key in ("x_train", "x_test", "x_val") if key in data}
    return make_splits(
        file.stem,
        images["x_train"],
        data["y_train"],
        images["x_test"],
        data["y_test"],
        val_fraction,
        seed,
        x_val=images.get("x_val"),
        y_val=data.get("y_val"),
    )


#: PIL modes of more than 8 bits per pixel, by the value their pixels' full scale reaches
_HIGH_BIT_SCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def _high_bit_pixels(img: Any, file: Path) -> np.ndarray:
    """A 16-bit image's pixels as an HxW float32 plane in [0, 1]; PIL's ``convert`` to 8 bits clips them at 255,
    leaving a near black-and-white image. 32-bit integer and float images are refused: their full scale is unknown."""
    if img.mode in _HIGH_BIT_SCALE:
        return np.asarray(img, dtype=np.float32) / _HIGH_BIT_SCALE[img.mode]
    if img.mode == "I" and img.format == "PNG":  # PNG holds at most 16 bits; PIL may open 16-bit grey as mode I
        return np.asarray(img, dtype=np.float32) / 65535.0
    raise DatasetError(f"imagefolder: {file} has {'32-bit integer' if img.mode == 'I' else 'floating-point'} pixels "
                       f"(PIL mode {img.mode}) whose full scale edgebench cannot know; save it as an 8- or 16-bit image")


def _read_image(file: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """``file`` as an HxWxC float32 image in [0, 1] (C: 1 for ``L``, 3 for ``RGB``), resized to ``size`` (H, W)
    when given."""
    from PIL import Image

    with Image.open(file) as img:
        if img.mode in _HIGH_BIT_SCALE or img.mode in ("I", "F"):
            plane = Image.fromarray(_high_bit_pixels(img, file), mode="F")
            plane = plane.resize(size[::-1]) if size else plane
            return np.repeat(np.asarray(plane, dtype=np.float32)[:, :, None], 1 if mode == "L" else 3, axis=2)
        img = img.convert(mode)
        arr = np.asarray(img.resize(size[::-1]) if size else img, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[:, :, None]


def _read_folder(root: Path, classes: list[str], mode: str, size: tuple[int, int] | None, prep: Preprocess | None,
                 every_class: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``root/<class>/`` as NCHW floats in [0, 1] with their class ids, each resized to ``size`` or
    sized as ``prep`` declares; with ``every_class``, a class folder without images is a DatasetError (a test folder
    may lack a class)."""
    from PIL import Image

    images, labels, first = [], [], {}
    for label, cls in enumerate(classes):
        folder = root / cls
        entries = _entries(folder)
        files = [f for f in entries if f.suffix.lower() in IMAGE_SUFFIXES]
        skipped = [f.name + ("/" if f.is_dir() else "") for f in entries
                   if f.is_dir() or f.suffix.lower() in _OTHER_IMAGE_SUFFIXES]
        if skipped:  # images the user meant to count (a sub-folder, a .webp) would vanish without a word
            log.warning("imagefolder: %s: %d entr(ies) not read (%s): only %s files directly in a class folder are",
                        folder, len(skipped), ", ".join(skipped[:3]), "/".join(sorted(IMAGE_SUFFIXES)))
        if not files and every_class:  # else a class no image can ever teach, and a logit for it
            raise DatasetError(f"imagefolder: class folder {root / cls} has no {'/'.join(sorted(IMAGE_SUFFIXES))} "
                               "images; add some or remove the folder (class ids follow the sorted folder names)")
        for file in files:
            try:
                image = _read_image(file, mode, size).transpose(2, 0, 1)
            except (OSError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError: a truncated file too
                raise DatasetError(f"imagefolder: {file} is not an image PIL can read ({first_line(exc)}); replace "
                                   "or remove it") from None
            try:
                image = size_image(image, prep) if prep is not None else image
            except DatasetError as exc:  # a crop larger than this image: name the file
                raise DatasetError(f"imagefolder: {file}: {exc}") from None
            first.setdefault(image.shape, file)
            images.append(image)
            labels.append(label)
    if not images:
        raise DatasetError(f"imagefolder: no {'/'.join(sorted(IMAGE_SUFFIXES))} images under {root}")
    if len(first) > 1:  # np.stack would fail naming no file
        (shape_a, file_a), (shape_b, file_b) = list(first.items())[:2]
        advice = ("declare a center_crop in dataset.preprocess (or resize: [H, W]) to make every image one size "
                  "(image_size is not used where preprocess resizes or crops)" if prep is not None else
                  "give image_size, or declare dataset.preprocess center_crop (or resize: [H, W]) to make every "
                  "image one size")
        raise DatasetError(f"imagefolder: {file_a} is {_hxw(shape_a)} but {file_b} is {_hxw(shape_b)}"
                           f"{' after dataset.preprocess' if prep is not None else ''}; {advice}")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _hxw(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape[1:]))


def _entries(folder: Path) -> list[Path]:
    """What a class folder holds, sorted; hidden files (macOS's ._img.png resource forks, editors' backups) are not
    images of the class."""
    return [f for f in sorted(folder.iterdir()) if not f.name.startswith(".")] if folder.is_dir() else []


def imagefolder_files(root: Path) -> list[Path]:
    """The image files the imagefolder loader reads under ``root``: those directly in the class folders of
    ``train/``, ``test/`` and ``val/``, or of ``root`` itself (other files and folders there are not its data)."""
    test_dir, val_dir = _split_folders(root, say=False)
    bases = [root / "train", test_dir, val_dir] if test_dir is not None else [root]
    return [f for base in bases if base is not None for cls in _class_folders(base)
            for f in _entries(base / cls) if f.suffix.lower() in IMAGE_SUFFIXES]


def _class_folders(base: Path) -> list[str]:
    """The class sub-folders of ``base``, sorted; hidden ones (.ipynb_checkpoints, .git) are not classes."""
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))


@DATASETS.register("imagefolder")
def imagefolder(
    path: str | Path | None = None,
    image_size: int | None = 32,
    grayscale: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """Images in ``path/<class>/*.png|jpg`` (or ``path/train/<class>`` + ``path/test/<class>``, and ``path/val/<class>``
    as the validation split where it is there; ``train/`` + ``val/`` alone scores ``val/``), resized to
    ``image_size`` square (None: their native size, which they must share); 16-bit images keep their 16 bits.

    Class ids follow the sorted sub-folder names; without train/test folders the test split is drawn
    stratified with ``seed``. Where ``dataset.preprocess`` resizes or crops, :func:`~edgebench.data.load_dataset`
    reads the folder with :func:`sized_imagefolder` instead.
    """
    size = (image_size, image_size) if image_size is not None else None
    return _image_folder(path, grayscale, seed, val_fraction, test_fraction, size=size)


def sized_imagefolder(prep: Preprocess, path: str | Path | None = None, image_size: int | None = 32,
                      grayscale: bool = False, seed: int = 0, val_fraction: float = 0.1,
                      test_fraction: float = 0.2) -> DatasetSplits:
    """:func:`imagefolder` for a preprocessing that resizes or crops: each image is read at its native size and
    sized as ``prep`` declares (squaring it to ``image_size`` first would stretch and blur it; ``image_size`` is not
    used), so the arrays hold sized images and only ``prep``'s normalisation is left to apply."""
    return _image_folder(path, grayscale, seed, val_fraction, test_fraction, prep=prep)


def _image_folder(path: str | Path | None, grayscale: bool, seed: int, val_fraction: float, test_fraction: float,
                  size: tuple[int, int] | None = None, prep: Preprocess | None = None) -> DatasetSplits:
    root = Path(path).expanduser() if path is not None else None
    if root is None or not root.is_dir():
        raise DatasetError(f"imagefolder: {missing_path(path)} is not a directory; expected one sub-folder of images "
                           "per class")
    mode = "L" if grayscale else "RGB"
    test_dir, val_dir = _split_folders(root)
    base = root / "train" if test_dir is not None else root
    classes = _class_folders(base)
    if not classes:
        raise DatasetError(f"imagefolder: {base} has no class sub-folders; expected {base}/<class>/<image>.png")
    x, y = _read_folder(base, classes, mode, size, prep)

    def read_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        unknown = sorted(set(_class_folders(folder)) - set(classes))
        if unknown:  # their images would be dropped, or scored against the wrong class
            raise DatasetError(f"imagefolder: {folder} has class folders that {base} lacks "
                               f"({', '.join(unknown)}); the classes are the training folders' names")
        return _read_folder(folder, classes, mode, size, prep, every_class=False)

    if test_dir is None:
        x, y, x_test, y_test = stratified_split(x, y, test_fraction, seed, "test_fraction")
    else:
        x_test, y_test = read_split(test_dir)
    x_val, y_val = read_split(val_dir) if val_dir is not None else (None, None)
    return make_splits(root.name, x, y, x_test, y_test, val_fraction, seed, x_val=x_val, y_val=y_val,
                       num_classes=len(classes))


def _split_folders(root: Path, say: bool = True) -> tuple[Path | None, Path | None]:
    """The test and validation folders of a ``train/`` + ``test/`` (+ ``val/``) layout; ImageNet's ``train/`` +
    ``val/`` scores ``val/`` as the test split, saying so (with ``say``). (None, None) for class folders directly
    under ``root``."""
    has = {name: (root / name).is_dir() for name in ("train", "val", "test")}
    if not has["train"] or not (has["test"] or has["val"]):
        return None, None
    if not has["test"]:
        if say:
            log.warning("imagefolder: %s has train/ and val/ but no test/: val/ is scored as the test split (a "
                        "validation split is held out of train/)", root)
        return root / "val", None
    return root / "test", root / "val" if has["val"] else None
