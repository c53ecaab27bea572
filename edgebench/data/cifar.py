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
from edgebench.errors import DatasetError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _read_batch(file: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled batch: ``data`` (N, 3072) uint8 rows in RGB planes, labels under ``label_key``."""
    try:
        with file.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError) as exc:
        raise DatasetError(f"{file}: not a CIFAR python batch ({exc.__class__.__name__}: {exc})") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"{file}: expected 'data' of shape (N, 3072) and N labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


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
