"""The team's own dataset loader and the preprocessing its weights expect: a loader module written by the test
(a torch Dataset of uint8 HWC images, and arrays), loaded by import path, preprocessed as declared, and the same
arrays reaching training, int8 calibration and the accuracy every target measures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from edgebench.config import load_experiment
from edgebench.data import load_dataset
from edgebench.data.preprocess import resized_shape
from edgebench.errors import DatasetError
from edgebench.pipeline import run_experiment
from edgebench.plan import plan_fp32_variants
from edgebench.run_cache import ModelCache
from edgebench.sampling import spread_sample
from edgebench.store import Store
from edgebench.variants import Normalize, Preprocess

TEAM_DATA_PY = '''
import numpy as np
from torch.utils.data import Dataset, IterableDataset


def _images(n, size, seed):
    """Class k = which quadrant of a noisy RGB image is bright (learnable at any resolution)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    h = size // 2
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, r * h:(r + 1) * h, c * h:(c + 1) * h] += 150
    return x, y


class Quadrants(Dataset):
    classes = ["top-left", "top-right", "bottom-left", "bottom-right"]

    def __init__(self, n, size, seed):
        self.x, self.y = _images(n, size, seed)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def load(n: int = 120, size: int = 16) -> dict:
    """Training images as a torch Dataset, test images as arrays (NHWC uint8), as teams have them."""
    return {"train": Quadrants(n, size, seed=0), "test": _images(n // 3, size, seed=1)}


def narrow(layout: str | None = None) -> dict:
    """NCHW images of 8 channels of 8x4 pixels: their shape looks like 8x8 images of 4 channels (NHWC)."""
    rng = np.random.default_rng(0)
    split = lambda n: (rng.random((n, 8, 8, 4), dtype=np.float32), np.arange(n) % 2)
    return {"train": split(20), "test": split(6), **({"layout": layout} if layout else {})}


def broken(n: int = 10) -> list:
    return [1, 2, 3]


def generated(n: int = 120) -> dict:
    """load's images, made from its options alone, as the loader declares."""
    return load(n)


generated.reads_files = False


class Labelled(Dataset):
    """Quadrant images whose labels go through ``label`` (a string, a one-hot tensor, a float)."""

    def __init__(self, n, label):
        self.x, self.y = _images(n, 8, seed=0)
        self.label = label

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.label(int(self.y[i]))


def labels_as(kind: str) -> dict:
    import torch

    label = {"str": lambda k: "abcd"[k], "onehot": lambda k: torch.nn.functional.one_hot(torch.tensor(k), 4),
             "float": lambda k: k + 0.7, "tensor": lambda k: torch.tensor(k), "int": int,
             "column": lambda k: torch.tensor([k])}[kind]
    return {"train": Labelled(40, label), "test": Labelled(12, label)}


class Records(Dataset):
    """Quadrant images as dict items, as a Hugging Face dataset gives them: {"img": PIL image, "label": int}."""

    def __init__(self, n, keys):
        from PIL import Image

        x, y = _images(n, 8, seed=0)
        self.items = [{keys[0]: Image.fromarray(a), keys[1]: int(k), "id": i} for i, (a, k) in enumerate(zip(x, y))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def records(keys=("img", "label"), num_classes=None) -> dict:
    return {"train": Records(40, keys), "test": Records(12, keys), **({"num_classes": num_classes} if num_classes else {})}


def python_lists(ragged: bool = False, modes: bool = False) -> dict:
    """An (x, y) pair of Python lists of images, as a loop that appended arrays makes it (one image of another size,
    or grayscale and RGBA PIL images among the RGB ones)."""
    from PIL import Image

    x, y = _images(40, 8, seed=0)
    images = [np.zeros((6, 6, 3), np.uint8) if ragged and i == 3 else a for i, a in enumerate(x)]
    if modes:
        images = [Image.fromarray(a).convert("L" if i == 1 else "RGBA" if i == 2 else "RGB") for i, a in enumerate(x)]
    return {"train": (images, list(y)), "test": (list(x[:12]), list(y[:12]))}


class Stream(IterableDataset):
    """Quadrant images as a stream: no length, no indexing."""

    def __init__(self, n, seed):
        self.x, self.y = _images(n, 8, seed)

    def __iter__(self):
        return iter(zip(self.x, self.y.tolist()))


def loaders(kind: str) -> dict:
    """The splits as a training script has them: DataLoaders (shuffling, or one dataset split by samplers, as the
    PyTorch tutorials do), an IterableDataset; ``dataset``: the same items as Datasets."""
    from torch.utils.data import DataLoader, SubsetRandomSampler

    train, test = Quadrants(40, 8, seed=0), Quadrants(12, 8, seed=1)
    if kind == "dataset":
        return {"train": train, "test": test}
    if kind == "shuffled":
        return {"train": DataLoader(train, batch_size=16, shuffle=True), "test": DataLoader(test, batch_size=5)}
    if kind == "unbatched":
        return {"train": DataLoader(train, batch_size=None, shuffle=True), "test": test}
    if kind == "samplers":
        return {"train": DataLoader(train, batch_size=8, sampler=SubsetRandomSampler(range(30))),
                "val": DataLoader(train, batch_size=8, sampler=SubsetRandomSampler(range(30, 40))), "test": test}
    return {"train": Stream(40, seed=0), "test": test}  # "iterable"


def keras_style(onehot: bool = False) -> tuple:
    """What keras.datasets.cifar10.load_data() returns: ((x_train, y_train), (x_test, y_test)), labels a column (or
    one-hot rows, as to_categorical makes them)."""
    (x, y), (xt, yt) = _images(40, 8, seed=0), _images(12, 8, seed=1)
    if onehot:
        return (x, np.eye(4)[y]), (xt, np.eye(4)[yt])
    return (x, y[:, None]), (xt, yt[:, None])


def unseeded(n: int = 60, size: int = 8) -> dict:
    """A random test subset drawn without a seed, as random_split without a generator draws it."""
    x, y = _images(n, size, seed=0)
    order = np.random.default_rng().permutation(n)
    return {"train": (x[order[20:]], y[order[20:]]), "test": (x[order[:20]], y[order[:20]])}
'''

TINY_NET_PY = '''
from torch import nn


def build(num_classes: int = 4, in_channels: int = 3) -> nn.Module:
    """Strided enough that a 224x224 input costs little."""
    return nn.Sequential(nn.Conv2d(in_channels, 8, 7, stride=4, padding=3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
'''


@pytest.fixture
def team_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "team_data.py").write_text(TEAM_DATA_PY)
    (tmp_path / "tiny_net.py").write_text(TINY_NET_PY)
    monkeypatch.chdir(tmp_path)  # the loader's import path resolves from the working directory
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("team_data")]:
        del sys.modules[name]


def _raw(team_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split as the team's loader makes it, read independently of edgebench."""
    sys.path.insert(0, str(team_dir))
    try:
        import team_data
    finally:
        sys.path.remove(str(team_dir))
    return team_data.load()["test"]


def test_user_loader_preprocessed_as_declared_matches_pillow(team_dir):
    """resize 16 -> 32 (bilinear), center crop 28, normalize: each test image equals Pillow's resize of the raw
    uint8 image, cropped by hand and normalised with the declared mean/std (to Pillow's uint8 rounding)."""
    mean, std = (0.4, 0.5, 0.6), (0.25, 0.2, 0.3)
    prep = Preprocess(resize=32, center_crop=28, normalize=Normalize(mean=mean, std=std))
    splits = load_dataset("team_data:load", prep)
    assert splits.input_shape == (3, 28, 28) and splits.num_classes == 4
    assert len(splits.x_train) + len(splits.x_val) == 120 and len(splits.x_val) == 12
    x_raw, y_raw = _raw(team_dir)
    np.testing.assert_array_equal(splits.y_test, y_raw)
    for i in (0, 7):
        big = np.asarray(Image.fromarray(x_raw[i]).resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255
        expected = (big[2:30, 2:30] - np.array(mean)) / np.array(std)
        np.testing.assert_allclose(splits.x_test[i].transpose(1, 2, 0), expected, atol=1.5 / 255 / min(std))


def test_without_normalize_images_are_standardised_on_the_training_split(team_dir):
    splits = load_dataset("team_data:load")
    np.testing.assert_allclose(splits.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(splits.x_train.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert abs(float(splits.x_test.mean())) > 1e-4  # the test split keeps the training split's statistics


def test_resize_keeps_the_aspect_ratio_of_the_shorter_side():
    assert resized_shape((240, 320), 224) == (224, 298)
    assert resized_shape((320, 240), 224) == (298, 224)
    assert resized_shape((8, 8), (224, 112)) == (224, 112)


@pytest.mark.parametrize("prep,message", [
    (Preprocess(normalize=Normalize(mean=(0.5, 0.5), std=(0.2, 0.2))), "2 mean/std values for 3-channel images"),
    (Preprocess(center_crop=20), "center_crop: 20x20 is larger than the 16x16 images"),
])
def test_preprocessing_that_does_not_fit_the_images_is_one_line(team_dir, prep, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("team_data:load", prep)


def test_a_loader_declares_the_layout_its_shape_misleads_about(team_dir):
    assert load_dataset("team_data:narrow").input_shape == (4, 8, 8)  # read from the shape: 4 channels last
    assert load_dataset("team_data:narrow", layout="NCHW").input_shape == (8, 8, 4)
    with pytest.raises(DatasetError, match=r"team_data:narrow: the loader's 'layout' is 'CHW'; give one of auto, NCHW"):
        load_dataset("team_data:narrow", layout="CHW")


def test_a_loader_whose_options_name_no_data_file_is_warned_once(team_dir, caplog):
    """A loader reading a fixed path: its data rewritten, the variant ids stayed and models trained on the old data
    were measured on the new test split without a word. Its options name no file, so the ids cannot follow the data:
    said once a run; edgebench's own digits, whose data ships with scikit-learn, is not, nor a loader that declares
    it reads no file (``reads_files = False``: its data made from its options, as examples/own_model's)."""
    for name, dataset in (("team-fixed", {"name": "team_data:load", "kwargs": {"n": 60}}), ("bundled", {"name": "digits"}),
                          ("made", {"name": "team_data:generated", "kwargs": {"n": 60}})):
        (team_dir / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "dataset": dataset}))
        with caplog.at_level("WARNING", logger="edgebench.config_checks"):
            load_experiment(team_dir / f"{name}.yaml")
            load_experiment(team_dir / f"{name}.yaml")
    warned = [r.getMessage() for r in caplog.records if "cannot see its data change" in r.getMessage()]
    assert warned == [f"{team_dir / 'team-fixed.yaml'}: dataset team_data:load names no file or folder in "
                      "dataset.kwargs, so edgebench cannot see its data change: models cached from a run on other data "
                      "would be reused; make the data's path a parameter of the loader, set in dataset.kwargs (def "
                      "load(path) with path: data.npz), so its content is part of the variant ids; a loader that reads "
                      "no file says so with load.reads_files = False"]


def test_loader_returning_something_else_is_named(team_dir):
    with pytest.raises(DatasetError, match=r"dataset team_data:broken: the loader returned a list"):
        load_dataset("team_data:broken")


@pytest.mark.slow
def test_imagenet_sized_inputs_reach_training_calibration_and_every_measurement_identically(team_dir):
    """3x16x16 images resized to 256 and cropped to 224 (the ImageNet recipe): the arrays the worker measures
    accuracy on and the int8 calibration images are exactly the preprocessed test and training splits."""
    data = {
        "name": "team-224",
        "dataset": {"name": "team_data:load", "kwargs": {"n": 60},
                    "preprocess": {"resize": 256, "center_crop": 224,
                                   "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}},
        "model": {"file": "tiny_net.py", "factory": "build"},
        "training": {"epochs": 2, "batch_size": 16, "lr": 0.05},
        "pruning": {"criteria": []},
        "quantization": {"precisions": ["fp32", "int8"], "calibration_samples": 8},
        "targets": ["local-cpu"],
        "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None},
    }
    path = team_dir / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    outcome = run_experiment(exp, render=False)
    assert outcome.failed == []
    splits = load_dataset("team_data:load", exp.dataset.preprocess, n=60)
    assert splits.input_shape == (3, 224, 224)
    workdir = exp.workdir()
    (eval_file,) = (workdir / "data").glob("test-*.npz")
    (calibration_file,) = (workdir / "data").glob("calibration-*.npz")
    np.testing.assert_array_equal(np.load(eval_file)["x"], splits.x_test)
    # the calibration images are drawn over the classes (spread_sample), in the training split's order
    np.testing.assert_array_equal(np.load(calibration_file)["x"], splits.x_train[np.sort(spread_sample(splits.y_train, 8))])
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id)
    assert set(df["status"]) == {"ok"} and len(df) == 3
    (spec,) = plan_fp32_variants(exp)
    model = ModelCache(workdir).get(spec).model
    with torch.inference_mode():
        expected = float((model(torch.from_numpy(splits.x_test)).argmax(1).numpy() == splits.y_test).mean())
    torch_row = df[(df["backend"] == "torch")].iloc[0]
    assert torch_row["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_a_loader_that_draws_other_data_in_each_process_fails_the_builds_saying_to_seed_it(team_dir):
    """Every worker loads the data again: an unseeded split trained each build on other images than the run's
    process wrote as the test file (a tester's loader trained on 50 of its 60 test images, accuracy 1.000)."""
    from edgebench.sweep import DATA_DIFFERS

    data = {
        "name": "team-unseeded", "dataset": {"name": "team_data:unseeded"},
        "model": {"file": "tiny_net.py", "factory": "build"},
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.05}, "pruning": {"criteria": []},
        "quantization": {"precisions": ["fp32"]}, "targets": ["local-cpu"],
        "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None},
    }
    path = team_dir / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    outcome = run_experiment(load_experiment(path), render=False)
    assert outcome.failed and all(DATA_DIFFERS in line for line in outcome.failed)
    with Store.open(outcome.store_url) as store:
        assert set(store.measurements(outcome.run_id)["status"]) == {"failed"}


_LABELS = r"'y_train' \(the train split's labels\) must be a 1-D array of class ids 0..K-1;"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "str"}, rf"{_LABELS} got shape \(40,\), <U1 \(class names: store np.unique\(y, return_inverse=True\)\[1\]"),
    ({"kind": "onehot"}, rf"{_LABELS} got shape \(40, 4\), int64 \(one-hot rows: store y.argmax\(1\)\)"),
    ({"kind": "float"}, rf"{_LABELS} got shape \(40,\), float64, [0-3]\.7 at index 0"),  # the first: its class + 0.7
])
def test_labels_a_dataset_gives_are_checked_as_an_arrays_are(team_dir, kwargs, message):
    """String and one-hot labels were a 156-line traceback; float labels 0.7, 1.7... were truncated to classes."""
    with pytest.raises(DatasetError, match=message):
        load_dataset("team_data:labels_as", None, **kwargs)
    as_tensors, as_ints = (load_dataset("team_data:labels_as", None, kind=kind) for kind in ("tensor", "int"))
    np.testing.assert_array_equal(as_tensors.y_test, as_ints.y_test)


def test_a_column_of_labels_and_dict_items_are_read(team_dir, tmp_path):
    """Labels shaped (N, 1) (torch.tensor([k]) items, Keras's CIFAR arrays) and Hugging Face style dict items were
    refused; a declared num_classes below a label is refused too."""
    as_ints = load_dataset("team_data:labels_as", None, kind="int")
    np.testing.assert_array_equal(load_dataset("team_data:labels_as", None, kind="column").y_test, as_ints.y_test)
    np.savez(tmp_path / "keras.npz", x_train=as_ints.x_train, y_train=as_ints.y_train[:, None],
             x_test=as_ints.x_test, y_test=as_ints.y_test[:, None])
    np.testing.assert_array_equal(load_dataset("npz", None, path=str(tmp_path / "keras.npz")).y_test, as_ints.y_test)
    records = load_dataset("team_data:records", None)
    np.testing.assert_array_equal(records.y_test, as_ints.y_test)
    np.testing.assert_array_equal(records.x_test, as_ints.x_test)  # PIL images read as the arrays they were made of
    with pytest.raises(DatasetError, match=r"its 'train' split yields dict items with keys 'picture', 'class', 'id'; "
                                           r"edgebench reads the image from image / img"):
        load_dataset("team_data:records", None, keys=("picture", "class"))
    with pytest.raises(DatasetError, match=r"dataset team_data:records: the train split has label 3, outside its 3 "
                                           r"classes 0..2"):
        load_dataset("team_data:records", None, num_classes=3)


@pytest.mark.parametrize("kind", ["shuffled", "unbatched", "iterable"])
def test_dataloaders_and_iterable_datasets_give_the_datasets_items(team_dir, kind):
    """They were refused ("its 'train' split is a DataLoader"); a shuffling DataLoader is read in index order, so
    every process of a run loads the same arrays (else the builds fail: "the data ... differs from the run's")."""
    reference = load_dataset("team_data:loaders", None, kind="dataset")
    for _ in range(2):
        splits = load_dataset("team_data:loaders", None, kind=kind)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(splits, name), getattr(reference, name), err_msg=name)


def test_keras_load_data_pairs_are_the_train_and_test_splits(team_dir):
    """It was refused ("the loader returned a tuple")."""
    splits = load_dataset("team_data:keras_style", None)
    reference = load_dataset("team_data:loaders", None, kind="dataset")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(splits, name), getattr(reference, name), err_msg=name)


def test_a_dataset_split_by_samplers_gives_each_loader_its_own_items(team_dir):
    """The validation loader's SubsetRandomSampler picks items 30..39 of the dataset the training loader shares."""
    from team_data import Quadrants

    items = Quadrants(40, 8, seed=0)
    splits = load_dataset("team_data:loaders", None, kind="samplers")
    np.testing.assert_array_equal(splits.y_train, items.y[:30])
    np.testing.assert_array_equal(splits.y_val, items.y[30:])


def test_an_xy_pair_of_python_lists_is_read_as_images_and_labels(team_dir):
    """It was taken for a 2-item dataset ("images differ in shape ((), (12, 12, 3))")."""
    splits = load_dataset("team_data:python_lists", None)
    assert splits.input_shape == (3, 8, 8) and len(splits.y_test) == 12
    with pytest.raises(DatasetError, match=r"its 'train' images differ in shape \(\(6, 6, 3\), \(8, 8, 3\)\); resize"):
        load_dataset("team_data:python_lists", None, ragged=True)
    with pytest.raises(DatasetError, match=r"its 'train' images have different channels \(\(8, 8\), \(8, 8, 3\), "
                                           r"\(8, 8, 4\): .*image.convert\('RGB'\)"):  # was told to resize them
        load_dataset("team_data:python_lists", None, modes=True)


def test_one_hot_labels_of_an_xy_pair_are_refused_saying_how_to_convert_them(team_dir):
    """As a Keras load_data() pair or a split's (x, y) pair, they were read as a 2-item dataset ("must yield (image,
    label) pairs; got ndarray", "the loader returned a tuple") instead."""
    with pytest.raises(DatasetError, match=rf"{_LABELS} got shape \(40, 4\), "
                                           r"float64 \(one-hot rows: store y.argmax\(1\)\)"):
        load_dataset("team_data:keras_style", None, onehot=True)
