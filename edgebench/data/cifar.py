"""CIFAR-10 / CIFAR-100 from the official "python version" batch directory the user already has.

Nothing is downloaded: ``path`` must be the extracted ``cifar-10-batches-py`` (data_batch_1..5,
test_batch) or ``cifar-100-python`` (train, test) directory.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from edgebench.data.files import missing_path
from edgebench.data.registry import DATASETS
from edgebench.data.splits import DatasetSplits, make_splits
from edgebench.errors import DatasetError, first_line

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _batch_format(label_key: bytes) -> str:
    """What a batch file must hold, for errors about one that does not."""
    return f"a plain dict pickle with 'data' of shape (N, 3072) uint8 and '{label_key.decode()}'"


def _read_batch(file: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled batch: ``data`` (N, 3072) uint8 rows in RGB planes, labels under ``label_key``."""
    try:
        with file.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = _pixel_rows(batch[b"data"], file, label_key)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except ImportError as exc:  # pickled with the user's own class (a dict subclass of their library's)
        raise DatasetError(f"{file}: not a CIFAR python batch: it was pickled with a class this Python cannot import "
                           f"({first_line(exc)}); re-save it as {_batch_format(label_key)}") from None
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError, AttributeError, ValueError) as exc:
        raise DatasetError(f"{file}: not a CIFAR python batch ({exc.__class__.__name__}: {exc}); a CIFAR python "
                           f"batch is {_batch_format(label_key)}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"{file}: expected 'data' of shape (N, 3072) and N labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def _pixel_rows(data: object, file: Path, label_key: bytes) -> np.ndarray:
    """``data`` as uint8 when every value is a whole number 0..255 (what uint8 holds exactly); DatasetError
    otherwise: casting truncated float pixels/255 to two values and wrapped integers past 255, both silently."""
    rows = np.asarray(data)
    if rows.dtype.kind not in "iuf":  # bytes rows, strings, booleans, objects: no pixel values to check
        held = f"a list of {type(data[0]).__name__}" if isinstance(data, list) and data else f"a {rows.dtype} array"
        raise DatasetError(f"{file}: 'data' is {held}, not pixel values; a CIFAR python batch is "
                           f"{_batch_format(label_key)}")
    exact = rows.dtype.kind != "f" or bool(np.all(np.mod(rows, 1) == 0))  # NaN is not a whole number either
    low, high = (rows.min(), rows.max()) if rows.size else (0, 0)
    if not exact or low < 0 or high > 255:
        raise DatasetError(f"{file}: 'data' is {rows.dtype} with values {low:.4g}..{high:.4g}; CIFAR's format is uint8 "
                           "0..255: save it as uint8, or use the npz dataset, which takes float pixels in [0, 1]")
    return rows.astype(np.uint8)


def _check_dir(path: str | Path | None, files: tuple[str, ...], name: str) -> Path:
    if path is None:
        raise DatasetError(f"{name}: give `path` = the extracted python-version batch directory ({', '.join(files)})")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: {missing_path(path)} is not a directory; give the extracted python-version batch directory "
                           f"({', '.join(files)})")
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        inside = sorted(str(d) for d in root.glob("*/") if all((d / f).is_file() for f in files))  # its parent given
        hint = f"; {inside[0]} has them: give path: {inside[0]}" if inside else ""
        raise DatasetError(
            f"{name}: {root} lacks {', '.join(missing)}; expected the python-version batch directory "
            f"containing {', '.join(files)}{hint}"
        )
    return root


@DATASETS.register("cifar10")
def cifar10(path: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1) -> DatasetSplits:
    """CIFAR-10 (10 classes, 3x32x32); validation is held out of the 50k training images."""
    root = _check_dir(path, (*CIFAR10_TRAIN, "test_batch"), "cifar10")
    parts = [_read_batch(root / f, b"labels") for f in CIFAR10_TRAIN]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_batch(root / "test_batch", b"labels")
    return make_splits("cifar10", x_train, y_train, x_test, y_test, val_fraction, seed, num_classes=10)


@DATASETS.register("cifar100")
def cifar100(path: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1) -> DatasetSplits:
    """CIFAR-100 with the 100 fine labels (3x32x32); validation is held out of the training images."""
    root = _check_dir(path, ("train", "test"), "cifar100")
    x_train, y_train = _read_batch(root / "train", b"fine_labels")
    x_test, y_test = _read_batch(root / "test", b"fine_labels")
    return make_splits("cifar100", x_train, y_train, x_test, y_test, val_fraction, seed, num_classes=100)
