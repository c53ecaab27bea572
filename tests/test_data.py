"""Dataset loaders: digits split/normalisation, CIFAR batch directories, npz, image folders, errors."""

from __future__ import annotations

import pickle
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebench.data import DatasetSplits, list_datasets, load_dataset
from edgebench.data.splits import stratified_split
from edgebench.errors import DatasetError
from edgebench.variants import Preprocess


def test_registry_lists_loaders() -> None:
    assert {"digits", "cifar10", "cifar100", "npz", "imagefolder"} <= set(list_datasets())


def test_digits_split_is_stratified_standardised_and_seeded() -> None:
    s = load_dataset("digits")
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 1797
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    assert abs(float(s.x_train.mean())) < 1e-4 and abs(float(s.x_train.std()) - 1) < 1e-3
    for y in (s.y_train, s.y_val, s.y_test):
        assert set(np.unique(y)) == set(range(10))
    again, other = load_dataset("digits"), load_dataset("digits", seed=1)
    assert np.array_equal(s.x_test, again.x_test)
    assert not np.array_equal(s.y_test, other.y_test)
    # no test image is also a training image
    train_rows = {r.tobytes() for r in s.x_train.reshape(len(s.x_train), -1)}
    dup = sum(r.tobytes() in train_rows for r in s.x_test.reshape(len(s.x_test), -1))
    assert dup < 5  # the digits set itself has a few identical images


@pytest.mark.parametrize("kwargs,message", [
    # val_fraction is of the whole set; digits turns it into a fraction of what the test split leaves (1.5 -> 1.875,
    # which the error named instead of the option as given)
    ({"val_fraction": 1.5}, "val_fraction must be a fraction strictly between 0 and 1, got 1.5"),
    ({"test_fraction": 0.0}, "test_fraction must be a fraction strictly between 0 and 1, got 0.0"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction 0.5 and test_fraction 0.5 leave no training images"),
])
def test_digits_fractions_are_checked_as_given(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset("digits", **kwargs)


def test_a_resize_past_the_memory_is_refused_before_allocating() -> None:
    """resize: 1e12 overflowed torch's size computation with a traceback; 1797 images of 1e12 x 1e12 pixels are
    7.2e27 bytes, past any machine's memory, so the error names the field and the size to give instead."""
    with pytest.raises(DatasetError, match=r"dataset.preprocess.resize 1000000000000 makes the splits 6.69e\+18 GiB of "
                                           r"float32 pixels, more than half the .* GiB of memory available; give the "
                                           r"model's input size"):
        load_dataset("digits", Preprocess(resize=10**12))


def _write_batch(path: Path, n: int, label_key: bytes, rng: np.random.Generator, classes: int) -> np.ndarray:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(i % classes) for i in range(n)]
    batch = {b"batch_label": b"test", label_key: labels, b"data": data, b"filenames": [b"x.png"] * n}
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return data


def test_cifar10_directory_in_official_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first = None
    for i in range(1, 6):
        data = _write_batch(tmp_path / f"data_batch_{i}", 20, b"labels", rng, 10)
        first = data if first is None else first
    _write_batch(tmp_path / "test_batch", 10, b"labels", rng, 10)
    s = load_dataset("cifar10", path=str(tmp_path), val_fraction=0.2)
    assert isinstance(s, DatasetSplits)
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (80, 20, 10)
    np.testing.assert_allclose(s.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-4)  # per-channel standardised


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write_batch(tmp_path / "train", 200, b"fine_labels", rng, 100)
    _write_batch(tmp_path / "test", 100, b"fine_labels", rng, 100)
    s = load_dataset("cifar100", path=tmp_path, val_fraction=0.5)
    assert s.num_classes == 100 and int(s.y_test.max()) == 99


def test_missing_or_wrong_cifar_path_names_path_and_expectation(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=rf"cifar10: {tmp_path / 'nowhere'} is not a directory; give the extracted "
                                           r"python-version batch directory \(data_batch_1"):
        load_dataset("cifar10", path=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=rf"cifar10: {tmp_path} lacks data_batch_1"):
        load_dataset("cifar10", path=tmp_path)
    extracted = tmp_path / "download" / "cifar-10-batches-py"  # the archive's folder, and its parent given
    extracted.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        _write_batch(extracted / name, 10, b"labels", np.random.default_rng(0), 10)
    with pytest.raises(DatasetError, match=rf"lacks data_batch_1.*; {extracted} has them: give path: {extracted}$"):
        load_dataset("cifar10", path=tmp_path / "download")
    (tmp_path / "test").write_bytes(b"not a pickle")
    (tmp_path / "train").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a CIFAR python batch"):
        load_dataset("cifar100", path=tmp_path)


def _cifar10_rows(root: Path, data: Callable[[np.ndarray], Any], batch: Any = dict) -> np.ndarray:
    """A CIFAR-10 batch directory of 6 batches of 10 images, each batch ``batch`` holding the 'data' that ``data``
    makes of the same uint8 rows (which hold 0 and 255); the rows."""
    rows = np.random.default_rng(0).integers(0, 256, (10, 3072), dtype=np.uint8)
    rows[0, :2] = (0, 255)
    root.mkdir()
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (root / name).write_bytes(pickle.dumps(batch({b"data": data(rows), b"labels": [i % 2 for i in range(10)]})))
    return rows


@pytest.mark.parametrize(("data", "shown"), [
    (lambda rows: rows.astype(np.float32) / 255, "float32 with values 0..1"),  # was cast to 2 values: blank images
    (lambda rows: rows.astype(np.int64) * 4, "int64 with values 0..1020"),  # wrapped modulo 256
    (lambda rows: rows.astype(np.int16) - 1, "int16 with values -1..254"),
    (lambda rows: rows.astype(np.float64) + 0.5, "float64 with values 0.5..255.5"),
])
def test_cifar_data_that_uint8_cannot_hold_exactly_is_refused_naming_the_batch(
        tmp_path: Path, data: Callable[[np.ndarray], Any], shown: str) -> None:
    _cifar10_rows(tmp_path / "cifar", data)
    message = (f"{tmp_path / 'cifar' / 'data_batch_1'}: 'data' is {shown}; CIFAR's format is uint8 0..255: save it as "
               "uint8, or use the npz dataset, which takes float pixels in [0, 1]")
    with pytest.raises(DatasetError, match=re.escape(message) + "$"):
        load_dataset("cifar10", path=tmp_path / "cifar")


@pytest.mark.parametrize("data", [lambda rows: rows.astype(np.int16), lambda rows: rows.astype(np.float64),
                                  lambda rows: rows.tolist()])
def test_cifar_data_of_whole_numbers_0_to_255_is_read_whatever_its_type(
        tmp_path: Path, data: Callable[[np.ndarray], Any]) -> None:
    rows = _cifar10_rows(tmp_path / "cifar", data)
    s = load_dataset("cifar10", Preprocess(normalize={"mean": [0], "std": [1]}), path=tmp_path / "cifar")
    np.testing.assert_array_equal(s.x_test, rows.reshape(10, 3, 32, 32) / np.float32(255))


class _TeamBatch(dict):
    """A user's batch class, pickled under a module this Python cannot import."""

    __module__ = "teamlib_not_installed"


@pytest.mark.parametrize(("data", "batch", "shown"), [
    (lambda rows: [bytes(r) for r in rows], dict, "'data' is a list of bytes, not pixel values; a CIFAR python batch "
     "is a plain dict pickle"),
    (lambda rows: [bytes(r) for r in rows[:-1]] + [bytes(rows[-1, :100])], dict, "'data' is a list of bytes"),
    (lambda rows: rows, _TeamBatch, "not a CIFAR python batch: it was pickled with a class this Python cannot import "
     "(No module named 'teamlib_not_installed'); re-save it as a plain dict pickle"),
])
def test_a_cifar_batch_of_bytes_rows_or_a_users_class_names_the_file_and_the_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: Callable[[np.ndarray], Any], batch: type,
        shown: str) -> None:
    """Bytes rows said "invalid literal for int() with base 10: b'\\x00...'" naming no file, a batch of the user's
    class "No module named 'teamlib'"."""
    monkeypatch.setitem(sys.modules, "teamlib_not_installed", types.ModuleType("teamlib_not_installed"))
    monkeypatch.setattr(sys.modules["teamlib_not_installed"], "_TeamBatch", _TeamBatch, raising=False)
    _cifar10_rows(tmp_path / "cifar", data, batch)
    monkeypatch.delitem(sys.modules, "teamlib_not_installed")
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'cifar' / 'data_batch_1'}: {shown}") +
                       r".* with 'data' of shape \(N, 3072\) uint8 and 'labels'$"):
        load_dataset("cifar10", path=tmp_path / "cifar")


def test_npz_accepts_nhwc_uint8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    file = tmp_path / "d.npz"
    np.savez(
        file,
        x_train=rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8),
        y_train=np.arange(40) % 4,
        x_test=rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8),
        y_test=np.arange(8) % 4,
    )
    s = load_dataset("npz", path=file)
    assert s.input_shape == (3, 6, 6) and s.num_classes == 4 and len(s.x_val) == 4
    from edgebench.data.files import to_nchw

    # tiny images whose dims could be either layout: the one that makes the images square
    assert to_nchw(np.zeros((2, 4, 4, 3), np.uint8), "x", file).shape == (2, 3, 4, 4)  # 4x4 RGB, not 4 ch of 4x3
    assert to_nchw(np.zeros((2, 3, 4, 4), np.uint8), "x", file).shape == (2, 3, 4, 4)
    assert to_nchw(np.zeros((2, 1, 3, 3), np.uint8), "x", file).shape == (2, 1, 3, 3)
    # 16-channel images: no axis is 1, 3 or 4 channels; the layout that makes them square (was read as 8 ch of 8x16)
    assert to_nchw(np.zeros((2, 8, 8, 16), np.float32), "x", file).shape == (2, 16, 8, 8)
    assert to_nchw(np.zeros((2, 16, 8, 8), np.float32), "x", file).shape == (2, 16, 8, 8)
    with pytest.raises(DatasetError, match=r"cannot tell whether 'x' of shape \(2, 8, 8, 8\) is NCHW or NHWC.*layout"):
        to_nchw(np.zeros((2, 8, 8, 8), np.float32), "x", file)
    assert to_nchw(np.arange(2 * 8 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 8), "x", file, "NHWC")[0, 1, 0, 0] == 1
    assert to_nchw(np.zeros((2, 8, 8, 8), np.float32), "x", file, ambiguous="NCHW").shape == (2, 8, 8, 8)
    # (N, H, W) has one channel whatever the layout says: not transposed into 28 channels of 1x28, nor refused
    assert to_nchw(np.zeros((2, 28, 28), np.float32), "x", file, "NHWC").shape == (2, 1, 28, 28)
    assert to_nchw(np.zeros((2, 64, 4), np.float32), "x", file).shape == (2, 1, 64, 4)
    with pytest.raises(DatasetError, match="x_train"):
        np.savez(tmp_path / "bad.npz", x=np.zeros(3))
        load_dataset("npz", path=tmp_path / "bad.npz")
    np.savez(tmp_path / "negative.npz", x_train=np.zeros((4, 1, 2, 2)), y_train=np.array([0, 1, -1, 1]),
             x_test=np.zeros((2, 1, 2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"'y_train' \(the train split's labels\) must be a 1-D array of class ids "
                                           r"0..K-1; got shape \(4,\), int64, "
                                           "lowest -1"):
        load_dataset("npz", path=tmp_path / "negative.npz")


def test_imagefolder_reads_png_classes(tmp_path: Path) -> None:
    from PIL import Image

    for c, value in (("cat", 30), ("dog", 220)):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(np.full((12, 12, 3), value + i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    s = load_dataset("imagefolder", path=tmp_path, image_size=8, test_fraction=0.2, val_fraction=0.25)
    assert s.input_shape == (3, 8, 8) and s.num_classes == 2
    assert len(s.x_test) == 4 and len(s.x_train) + len(s.x_val) == 16
    # the classes' brightness survives normalisation: dogs are brighter than cats
    assert s.x_train[s.y_train == 1].mean() > s.x_train[s.y_train == 0].mean()
    with pytest.raises(DatasetError, match="class sub-folders"):
        (tmp_path / "empty").mkdir()
        load_dataset("imagefolder", path=tmp_path / "empty")


def test_imagefolder_refuses_an_empty_class_folder_and_an_unreadable_image(tmp_path: Path) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "c").mkdir()  # a class with no image would still get a logit
    with pytest.raises(DatasetError, match=rf"imagefolder: class folder {tmp_path / 'c'} has no .* images; add some or "
                                           "remove the folder"):
        load_dataset("imagefolder", path=tmp_path, image_size=8)
    (tmp_path / "c").rmdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"imagefolder: {tmp_path / 'b' / 'broken.png'} is not an image PIL can "
                                           r"read \(cannot identify image file .*\); replace or remove it"):
        load_dataset("imagefolder", path=tmp_path, image_size=8)


def _npz(path: Path, x_train: np.ndarray, y_train: np.ndarray) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=np.zeros((4, 1, 4, 4), np.float32), y_test=np.arange(4) % 2)
    return path


def test_nan_pixels_and_a_single_class_are_refused_naming_the_split(tmp_path: Path) -> None:
    """NaN reaches every logit (a run would end at chance with no error); one class leaves nothing to classify."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 4, 4)).astype(np.float32)
    x[7, 0, 1, 2] = np.nan
    x[9, 0, 0, 0] = np.inf
    with pytest.raises(DatasetError, match=r"dataset npz: [12] image\(s\) of the (train split|val split \(held out of "
                                           r"the training images where the data gives no val split\)) hold NaN or "
                                           "infinite values; remove them or fill the gaps"):
        load_dataset("npz", path=_npz(tmp_path / "nan.npz", x, np.arange(40) % 2))
    with pytest.raises(DatasetError, match=r"the training split holds only class \[0\]; a classifier needs images of "
                                           "at least two classes"):
        load_dataset("npz", path=_npz(tmp_path / "one.npz", np.nan_to_num(x, posinf=1.0), np.zeros(40, np.int64)))


def test_a_test_split_of_one_class_is_refused(tmp_path: Path) -> None:
    """Trained on three classes, tested on class 1 alone: every accuracy was how often a variant answers 1 (one
    collapsed to that class scored 1.000 and sat on the front), and the chance note said to train longer."""
    x = np.random.default_rng(0).random((30, 1, 4, 4)).astype(np.float32)
    path = tmp_path / "one_test_class.npz"
    np.savez(path, x_train=x, y_train=np.arange(30) % 3, x_test=x[:6], y_test=np.ones(6, np.int64))
    with pytest.raises(DatasetError, match=r"dataset npz: the test split holds only class \[1\] of the training "
                                           r"split's 3 classes; accuracy on it says nothing of the others: give the test "
                                           "split images of at least two classes"):
        load_dataset("npz", path=path)
    np.savez(path, x_train=x, y_train=np.arange(30) % 3, x_test=x[:6], y_test=np.arange(6) % 2)  # two of three: kept
    assert sorted(set(load_dataset("npz", path=path).y_test.tolist())) == [0, 1]


def test_a_tiny_dataset_is_split_at_random_when_strata_do_not_fit():
    """30 training images of 10 classes: 10 % held out is 3 images, too few for one per class, so the split is at
    random rather than sklearn's "test_size = 3 should be greater or equal to the number of classes = 10"."""
    y = np.arange(30) % 10
    x_keep, y_keep, x_held, y_held = stratified_split(np.arange(30.0)[:, None], y, 0.1, seed=0)
    assert len(y_held) == 3 and len(y_keep) == 27
    assert sorted(np.concatenate([x_keep, x_held])[:, 0]) == list(np.arange(30.0))  # every image, once
    _, _, _, y_held = stratified_split(np.zeros((300, 1)), np.arange(300) % 10, 0.1, seed=0)
    assert np.bincount(y_held).tolist() == [3] * 10  # stratified where it fits
    with pytest.raises(ValueError, match="1 image.s. are too few to split 10% off"):
        stratified_split(np.zeros((1, 1)), np.zeros(1, dtype=np.int64), 0.1, seed=0)


def test_rewritten_data_gives_new_variant_ids_and_a_new_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models trained on the old data are never reused for new data under the same path; the same bytes written
    again keep every id, and the bundled digits have no digest (their ids stay as they were)."""
    from edgebench.config import Experiment
    from edgebench.plan import plan_fp32_variants

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def write(path: Path, shift: int) -> None:
        y = (np.arange(40) + shift) % 4
        np.savez(path, x_train=rng.random((40, 1, 8, 8), dtype=np.float32), y_train=y,
                 x_test=rng.random((8, 1, 8, 8), dtype=np.float32), y_test=y[:8])

    def planned(path: str) -> tuple[list[str], str]:
        exp = Experiment.model_validate({"dataset": {"name": "npz", "kwargs": {"path": path}},
                                         "pruning": {"criteria": ["l1"], "ratios": [0.5]}})
        return [s.id for s in plan_fp32_variants(exp)], exp.hash

    write(tmp_path / "data.npz", 0)
    ids, run = planned("data.npz")
    (tmp_path / "data.npz").write_bytes((tmp_path / "data.npz").read_bytes())  # a new modification time
    assert planned("data.npz") == (ids, run)
    write(tmp_path / "data.npz", 1)  # relabelled in place
    new_ids, new_run = planned("data.npz")
    assert not set(new_ids) & set(ids) and new_run != run
    assert plan_fp32_variants(Experiment())[0].data_digest is None


def test_splits_that_do_not_fit_the_training_split_are_refused_before_training(tmp_path: Path) -> None:
    """A label past the dataset's classes, a test split of another size or other channels fail at load, naming the
    split, instead of after training (or, for channels, being broadcast over by the standardisation)."""
    rng = np.random.default_rng(0)
    (tmp_path / "cifar").mkdir()
    for i in range(1, 6):
        _write_batch(tmp_path / "cifar" / f"data_batch_{i}", 20, b"labels", rng, 10)
    _write_batch(tmp_path / "cifar" / "test_batch", 10, b"labels", rng, 10)
    with open(tmp_path / "cifar" / "data_batch_3", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"labels"][4] = 12
    with open(tmp_path / "cifar" / "data_batch_3", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DatasetError, match=r"the train split has label 12, outside its 10 classes 0\.\.9"):
        load_dataset("cifar10", path=str(tmp_path / "cifar"))

    y = np.arange(40) % 4

    def npz(test: np.ndarray) -> str:
        np.savez(tmp_path / "d.npz", x_train=rng.random((40, 3, 8, 8), dtype=np.float32), y_train=y,
                 x_test=test, y_test=y[: len(test)])
        return str(tmp_path / "d.npz")

    with pytest.raises(DatasetError, match=r"the test split's images are 3x16x16, the training split's 3x8x8"):
        load_dataset("npz", path=npz(rng.random((8, 3, 16, 16), dtype=np.float32)))
    with pytest.raises(DatasetError, match=r"the test split's images have 1 channel\(s\), the training split's 3"):
        load_dataset("npz", path=npz(rng.random((8, 1, 8, 8), dtype=np.float32)))
    resized = load_dataset("npz", Preprocess(resize=[8, 8]), path=npz(rng.random((8, 3, 16, 16), dtype=np.float32)))
    assert resized.x_test.shape[1:] == resized.x_train.shape[1:] == (3, 8, 8)  # declared resizing makes them fit


def test_imagefolder_skips_hidden_entries_and_checks_the_test_folders_classes(tmp_path: Path) -> None:
    """A notebook's .ipynb_checkpoints folder and macOS's ._ files are not classes or images; a test folder may
    lack a class but not hold one the training folders do not (its images had been dropped without a word)."""
    from PIL import Image

    for split, classes in (("train", ("cat", "dog", "eel")), ("test", ("cat", "dog"))):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
        (tmp_path / split / ".ipynb_checkpoints").mkdir()
        (tmp_path / split / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    s = load_dataset("imagefolder", path=tmp_path, image_size=8)
    assert s.num_classes == 3 and len(s.x_test) == 12 and set(s.y_test.tolist()) == {0, 1}
    (tmp_path / "test" / "zebra").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "test" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match=r"test has class folders that .*train lacks \(zebra\)"):
        load_dataset("imagefolder", path=tmp_path, image_size=8)


def test_labels_that_skip_class_ids_are_said(caplog: pytest.LogCaptureFixture) -> None:
    """Labels {3, 7} make an 8-output model, 6 outputs for classes nothing trains: allowed, but said."""
    from edgebench.data.splits import make_splits

    x = np.zeros((40, 1, 4, 4), np.float32)
    y = np.where(np.arange(40) % 2 == 0, 3, 7)
    with caplog.at_level("WARNING", logger="edgebench.data.splits"):
        splits = make_splits("gaps", x, y, x[:10], y[:10], 0.2, 0)
    assert splits.num_classes == 8
    assert "class ids run 0..7 but no image has 0, 1, 2, 4, 5, 6: the model gets 8 outputs, 6 of them" in caplog.text


@pytest.mark.parametrize(("name", "kind"), [("imagefolder", "directory"), ("npz", "file"), ("cifar10", "directory")])
def test_a_missing_relative_dataset_path_is_named_absolute_and_where_it_was_read_from(
        name: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=rf"^{name}: {tmp_path / 'data' / 'imgs'} \(relative dataset paths are read "
                                           rf"from the working directory\) is not a {kind}"):
        load_dataset(name, path="data/imgs")


def _photos(root: Path, shapes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Noise RGB photos of (height, width) ``shapes`` under two classes; the files, in the loader's order."""
    from PIL import Image

    rng, files = np.random.default_rng(seed), []
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            files.append(root / cls / f"{i}.png")
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(files[-1])
    return files


def _pixels(file: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(file).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255


def test_imagefolder_images_are_sized_by_the_declared_preprocess_not_squared_first(tmp_path: Path) -> None:
    """96x64 photos with resize 64 and center_crop 64 are their own central 64x64 windows (resize is the identity),
    not 32x32 squares stretched and scaled up; photos of several sizes are each sized before they are stacked."""
    files = _photos(tmp_path / "same", [(64, 96)] * 4)
    prep = Preprocess(resize=64, center_crop=64, normalize={"mean": [0], "std": [1]})
    s = load_dataset("imagefolder", prep, path=tmp_path / "same", test_fraction=0.5, val_fraction=0.25)
    crops = [_pixels(f)[:, :, 16:80] for f in files]
    assert s.input_shape == (3, 64, 64)
    for image in (*s.x_train, *s.x_test):
        assert min(np.abs(image - crop).max() for crop in crops) < 1e-6
    _photos(tmp_path / "mixed", [(64, 96), (128, 128), (80, 64)])
    s = load_dataset("imagefolder", Preprocess(resize=32, center_crop=32), path=tmp_path / "mixed", test_fraction=0.34)
    assert s.input_shape == (3, 32, 32)
    with pytest.raises(DatasetError, match=r"imagefolder: \S+0.png is 64x96 but \S+1.png is 128x128; give image_size"):
        load_dataset("imagefolder", path=tmp_path / "mixed", image_size=None)
    assert load_dataset("imagefolder", path=tmp_path / "same", image_size=None).input_shape == (3, 64, 96)
    # resize alone keeps each aspect ratio: what makes them one size is a crop (image_size is not used then)
    with pytest.raises(DatasetError, match=r"is 32x32 after dataset.preprocess; declare a center_crop in "
                                           r"dataset.preprocess .*image_size is not used"):
        load_dataset("imagefolder", Preprocess(resize=32), path=tmp_path / "mixed", image_size=32)


def test_imagefolder_reads_16_bit_pngs_at_their_depth(tmp_path: Path) -> None:
    """A 16-bit PNG's pixels are scaled by 65535 (converting to 8 bits clipped them at 255: near black and white)."""
    from PIL import Image

    ramp = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(ramp).save(tmp_path / cls / f"{i}.png")
    assert Image.open(tmp_path / "a" / "0.png").mode.startswith("I")
    for grayscale in (True, False):
        s = load_dataset("imagefolder", Preprocess(normalize={"mean": [0], "std": [1]}), path=tmp_path, image_size=8,
                         grayscale=grayscale, test_fraction=0.34)
        assert s.input_shape == (1 if grayscale else 3, 8, 8)
        np.testing.assert_allclose(s.x_train[0, 0], ramp / 65535, atol=1e-3)
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "a" / "float.png", format="TIFF")  # PIL reads content
    with pytest.raises(DatasetError, match=r"float.png has floating-point pixels \(PIL mode F\) .*8- or 16-bit"):
        load_dataset("imagefolder", path=tmp_path, image_size=8)


def test_the_test_file_is_keyed_on_its_content_not_its_sums(tmp_path: Path) -> None:
    """Two test labels swapped keep every sum: the run kept measuring on the old file (stored 1.0, the current
    labels give 0.9333). Any element changes the key, and the calibration file's too."""
    from edgebench.run_cache import write_calibration, write_eval_data

    x = np.arange(3 * 4, dtype=np.float32).reshape(3, 1, 2, 2)
    splits = DatasetSplits("own", 3, (1, 2, 2), x, np.array([0, 1, 2]), x, np.array([0, 1, 2]), x, np.array([0, 1, 2]))
    swapped = DatasetSplits(*[getattr(splits, f) for f in ("name", "num_classes", "input_shape", "x_train", "y_train",
                                                          "x_val", "y_val", "x_test")], np.array([1, 0, 2]))
    first, second = write_eval_data(splits, tmp_path), write_eval_data(swapped, tmp_path)
    assert first != second and list(np.load(second)["y"]) == [1, 0, 2]
    assert write_eval_data(splits, tmp_path) == first  # the same content: the same file
    calibration = [write_calibration(x, np.array([0, 1, 2]), 3, tmp_path, (x, y_val))
                   for y_val in (np.array([0, 1, 2]), np.array([1, 0, 2]))]
    assert calibration[0] != calibration[1]  # its validation labels count too
    assert splits.digest() != swapped.digest()


def test_the_data_digest_follows_symlinked_folders_and_paths_in_a_mapping(tmp_path: Path) -> None:
    """The image-folder reader follows a symlinked class folder but the digest did not (24 images added, the same
    digest, the old model reused); paths given in a mapping option were not read at all (digest None)."""
    from edgebench.data.fingerprint import data_digest

    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.png").write_bytes(b"1")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data" / "dog").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "data" / "cat" / "loop").symlink_to(tmp_path / "data")  # a link to a parent folder: no loop
    before = data_digest({"path": str(tmp_path / "data")})
    (tmp_path / "elsewhere" / "b.png").write_bytes(b"22")
    assert data_digest({"path": str(tmp_path / "data")}) != before
    files = {"files": {"train": str(tmp_path / "data" / "cat" / "a.png")}}
    digest = data_digest(files)
    assert digest is not None
    (tmp_path / "data" / "cat" / "a.png").write_bytes(b"3")
    assert data_digest(files) != digest


@pytest.mark.parametrize(("target", "why"), [("/nonexistent/gone.png", "/nonexistent/gone.png: No such file or directory"),
                                             ("gone.png", "gone.png: Too many levels of symbolic links")])
def test_a_dangling_or_looping_symlink_in_an_image_folder_is_named_by_the_data_digest(
        tmp_path: Path, target: str, why: str) -> None:
    """Planning digests the folder before the reader sees it: path.stat() raised FileNotFoundError (or ELOOP for a
    link to itself), a traceback with exit 1."""
    from edgebench.config import DatasetConfig

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        (tmp_path / "data" / cls / "0.png").write_bytes(b"1")
    (tmp_path / "data" / "a" / "gone.png").symlink_to(target)
    dataset = DatasetConfig(name="imagefolder", kwargs={"path": str(tmp_path / "data")})
    message = f"dataset file {tmp_path / 'data' / 'a' / 'gone.png'} cannot be read (a symlink to {why}); replace or remove it"
    with pytest.raises(DatasetError, match=re.escape(message) + "$"):
        dataset.digest()


def test_a_test_class_no_training_image_has_is_refused(tmp_path: Path) -> None:
    """Training labels 0..2 and test labels 1..3 (counted from 1): class 3 was scored, never trained, no word."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((30, 1, 4, 4)), y_train=np.arange(30) % 3,
             x_test=rng.random((9, 1, 4, 4)), y_test=np.arange(9) % 3 + 1)
    with pytest.raises(DatasetError, match=r"the test split has class\(es\) \[3\] that no training image has"):
        load_dataset("npz", path=str(tmp_path / "d.npz"))


def test_a_class_of_one_image_stays_in_training_and_the_others_stay_stratified(
        caplog: pytest.LogCaptureFixture) -> None:
    """Classes of 50, 50, 50 images and one of 1: the one turned stratification off for all (a held-out part of
    [11, 13, 7, 0] at 20 %). Now 10 of each is held out and the single image is trained on, with a warning."""
    y = np.array([0] * 50 + [1] * 50 + [2] * 50 + [3])
    with caplog.at_level("WARNING", logger="edgebench.data.splits"):
        x_keep, y_keep, _, y_held = stratified_split(np.arange(151.0)[:, None], y, 0.2, seed=0)
    assert np.bincount(y_held, minlength=4).tolist() == [10, 10, 10, 0]
    assert np.bincount(y_keep).tolist() == [40, 40, 40, 1] and x_keep[y_keep == 3, 0].tolist() == [150.0]
    assert "class(es) 3 have one image each: kept for training" in caplog.text


def test_uint16_pixels_are_scaled_to_one_and_a_normalize_over_0_255_pixels_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A uint16 npz reached the model at 0..65535 under a declared normalize (a 16-bit PNG folder is scaled by
    65535); float pixels 0..255 under a normalize meant for [0, 1] said nothing."""
    from edgebench.variants import Normalize

    y = np.arange(20) % 2
    np.savez(tmp_path / "u16.npz", x_train=np.full((20, 1, 2, 2), 65535, np.uint16), y_train=y,
             x_test=np.zeros((4, 1, 2, 2), np.uint16), y_test=y[:4])
    prep = Preprocess(normalize=Normalize(mean=[0.5], std=[0.25]))
    splits = load_dataset("npz", prep, path=str(tmp_path / "u16.npz"))
    assert splits.x_train.max() == pytest.approx((1.0 - 0.5) / 0.25) and splits.x_test.min() == -2.0
    np.savez(tmp_path / "f255.npz", x_train=np.full((20, 1, 2, 2), 255.0, np.float32), y_train=y,
             x_test=np.zeros((4, 1, 2, 2), np.float32), y_test=y[:4])
    with caplog.at_level("WARNING", logger="edgebench.data.preprocess"):
        load_dataset("npz", prep, path=str(tmp_path / "f255.npz"))
    assert "normalize takes pixels in [0, 1], but the training images reach 255" in caplog.text
    # README's recipe for a loader that standardises itself, normalize: {mean: [0], std: [1]}, was warned the same
    caplog.clear()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "std.npz", x_train=rng.normal(0, 1, (20, 1, 2, 2)).astype(np.float32) * 3, y_train=y,
             x_test=np.zeros((4, 1, 2, 2), np.float32), y_test=y[:4])
    with caplog.at_level("WARNING", logger="edgebench.data.preprocess"):
        standardised = load_dataset("npz", Preprocess(normalize=Normalize(mean=[0], std=[1])),
                                    path=str(tmp_path / "std.npz"))
    assert standardised.x_train.max() > 1.5 and caplog.text == ""


def test_a_normalize_for_0_255_pixels_on_unit_pixels_warns_with_the_values_to_give(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ImageNet's statistics times 255 on an image folder (pixels in [0, 1]) trained on near-constant inputs, no
    word; the values to give are the declared ones / 255."""
    from PIL import Image

    for cls, value in (("a", 0), ("b", 255)):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    with caplog.at_level("WARNING", logger="edgebench.data.preprocess"):
        load_dataset("imagefolder", Preprocess(normalize={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
                     path=tmp_path, image_size=8, test_fraction=0.25)
        assert caplog.text == ""
        s = load_dataset("imagefolder", Preprocess(normalize={"mean": [127.5, 127.5, 127.5], "std": [51, 51, 51]}),
                         path=tmp_path, image_size=8, test_fraction=0.25)
    assert s.x_train.max() == pytest.approx((1 - 127.5) / 51)  # what it trains on: within 0.02 of a constant
    assert ("normalize has mean/std values up to 127.5, but it is applied to pixels in [0, 1] (the training images "
            "reach 1; uint8 is scaled to [0, 1] first): statistics of 0..255 pixels are divided by 255 (here mean "
            "[0.5, 0.5, 0.5], std [0.2, 0.2, 0.2])") in caplog.text


def test_half_a_validation_split_is_refused_and_misspelt_split_keys_are_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """x_val without y_val, and x_valid/y_valid, were ignored without a word (the validation split held out of
    training instead)."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((20, 1, 4, 4)), "y_train": np.arange(20) % 2, "x_test": rng.random((4, 1, 4, 4)),
              "y_test": np.arange(4) % 2}
    np.savez(tmp_path / "half.npz", **arrays, x_val=rng.random((4, 1, 4, 4)))
    with pytest.raises(DatasetError, match=r"half.npz: has 'x_val' without 'y_val'; give both"):
        load_dataset("npz", path=str(tmp_path / "half.npz"))
    np.savez(tmp_path / "typo.npz", **arrays, x_valid=rng.random((4, 1, 4, 4)), y_valid=np.arange(4) % 2)
    with caplog.at_level("WARNING", logger="edgebench.data.files"):
        load_dataset("npz", path=str(tmp_path / "typo.npz"))
    assert "typo.npz: 'x_valid', 'y_valid' not read (edgebench reads x_train, y_train, x_val, y_val" in caplog.text


def test_imagefolder_reads_val_folders_of_the_train_val_test_and_imagenet_layouts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """train/ + val/ (ImageNet's layout) took "train" for a class ("has no images"); train/ + val/ + test/ left the
    6 images of val/ unread (a validation split held out of train/ instead)."""
    from PIL import Image

    def folder(split: str, n: int) -> None:
        for c, value in (("cat", 30), ("dog", 220)):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8), value + i, dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")

    folder("train", 10)
    folder("val", 3)
    with caplog.at_level("WARNING", logger="edgebench.data.files"):
        imagenet = load_dataset("imagefolder", path=tmp_path, image_size=8, grayscale=True, val_fraction=0.2)
    assert len(imagenet.y_test) == 6 and len(imagenet.y_train) + len(imagenet.y_val) == 20  # val/ scored as test
    assert "has train/ and val/ but no test/: val/ is scored as the test split" in caplog.text
    folder("test", 2)
    three = load_dataset("imagefolder", path=tmp_path, image_size=8, grayscale=True)
    assert (len(three.y_train), len(three.y_val), len(three.y_test)) == (20, 6, 4)


def test_imagefolder_names_what_it_does_not_read_and_the_file_a_crop_does_not_fit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A nested folder's images and a .webp were dropped without a word; a crop larger than one image named no file."""
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "dog" / "more").mkdir()
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "dog" / "extra.webp")
    with caplog.at_level("WARNING", logger="edgebench.data.files"):
        load_dataset("imagefolder", path=tmp_path, image_size=8, grayscale=True)
    assert "2 entr(ies) not read (extra.webp, more/): only .bmp/.jpeg/.jpg/.png files directly in a class" in caplog.text
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "cat" / "small.png")
    with pytest.raises(DatasetError, match=r"small.png: .*larger than"):
        load_dataset("imagefolder", Preprocess(center_crop=10), path=tmp_path, grayscale=True)


def test_files_a_loader_does_not_read_leave_the_data_digest_alone(tmp_path: Path) -> None:
    """A run whose workdir and report sat inside its image folder got new variant ids on every run (its store and
    its report's PNGs changed the folder's digest), so nothing was ever reused: a directory counts by the files its
    loader reads (an image folder's class images, CIFAR's batch files); a user's loader's by every file."""
    from edgebench.data.fingerprint import data_digest
    from edgebench.data.read_files import read_by

    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        (tmp_path / split / "cat" / "a.png").write_bytes(b"1")
    (tmp_path / "data_batch_1").write_bytes(b"batch")
    loaders = ("imagefolder", "cifar10", "my_pkg.data:load")

    def digests() -> dict[str, str | None]:
        return {loader: data_digest({"path": str(tmp_path)}, read_by(loader)) for loader in loaders}

    before = digests()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "results.db").write_bytes(b"a run's store")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "pareto.png").write_bytes(b"a plot")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("stray")
    after = digests()
    assert after["imagefolder"] == before["imagefolder"] and after["cifar10"] == before["cifar10"]
    assert after["my_pkg.data:load"] != before["my_pkg.data:load"]
    (tmp_path / "test" / "cat" / "b.jpg").write_bytes(b"22")  # an image added, a batch rewritten: new data
    (tmp_path / "data_batch_1").write_bytes(b"batch, rewritten")
    changed = digests()
    assert changed["imagefolder"] != after["imagefolder"] and changed["cifar10"] != after["cifar10"]
