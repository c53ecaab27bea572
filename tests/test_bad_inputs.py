"""A battery of bad inputs across every command: each gives a short message, a non-zero exit, an untouched store.

Every case runs the real CLI (in-process, through Typer) on a tiny experiment, a real SQLite store filled
with two synthetic runs, a real ONNX file, real npz/CSV files and, for SSH targets, the real sshd on
127.0.0.1 that ``sshd_fixtures`` starts. Each asserts: the exit code; no traceback (no exception escaped
the command); at most two non-blank lines of output, naming the file or field; and the store file
byte-identical afterwards. Validation happens before training, so no case trains.
"""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from sshd_fixtures import Sshd, free_port, keygen
from store_fixtures import fill_run
from typer.testing import CliRunner
from user_code import import_file, write_nets

from edgebench.cli import app
from edgebench.plugins import PLUGINS_DOC
from edgebench.store import Store

#: a path no user (root included) can create: sysfs refuses new entries
UNWRITABLE = "/sys/edgebench-bad-input/out"
DROP = object()  # an override value that removes the key


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively for mappings; DROP removes a key."""
    out = dict(base)
    for key, value in over.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Ctx:
    """What a case builds its inputs in: a temp dir, a copy of the filled store, the fixtures."""

    tmp: Path
    store: Path
    onnx: Path
    request: pytest.FixtureRequest

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def a_file(self) -> Path:
        """A regular file that a case then uses as if it were a directory."""
        return self.file("plain-file.txt", "I am a file\n")

    def sshd(self) -> Sshd:
        return self.request.getfixturevalue("sshd")

    def experiment(self, over: dict[str, Any] | None = None, name: str = "exp.yaml") -> Path:
        """A tiny experiment (2 epochs, one pruned variant, fp32, local-cpu) writing into this case's dirs."""
        data = {
            "name": "bad-input",
            "training": {"epochs": 2},
            "pruning": {"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0]},
            "quantization": {"precisions": ["fp32"]},
            "targets": ["local-cpu"],
            "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None},
            "run": {"workdir": str(self.tmp / "runs")},
            "store": {"url": str(self.store)},
            "report": {"dir": str(self.tmp / "report")},
        }
        return self.file(name, yaml.safe_dump(merge(data, over or {})))

    def target(self, data: dict[str, Any] | str | bytes, name: str = "my-board.yaml") -> Path:
        return self.file(name, data if isinstance(data, str | bytes) else yaml.safe_dump(data))

    def ssh_target(self, **ssh: Any) -> Path:
        """A target file for the loopback sshd, with ``ssh`` fields overridden."""
        spec = self.sshd().spec(**ssh).model_dump(mode="json", exclude={"name"}, exclude_none=True)
        return self.target(spec, "loopback-board.yaml")

    def npz(self, name: str, **arrays: Any) -> Path:
        path = self.tmp / name
        np.savez(path, **arrays)
        return path

    def another_store(self) -> Path:
        """A results file with one run the filled store does not have."""
        path = self.tmp / "other.db"
        with Store.open(path) as store:
            fill_run(store, seed=3, tags=("v3",))
        return path

    def sqlite(self, name: str, *statements: str) -> Path:
        path = self.tmp / name
        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
        return path


@dataclass(frozen=True)
class Case:
    id: str
    command: str
    build: Callable[[Ctx], list[str]]
    names: tuple[str, ...] = ()  # substrings the message must contain (the file, field or value)
    code: int = 2
    store_checked: bool = True


def images(n: int, c: int = 1, hw: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, c, hw, hw), dtype=np.float32)


def labels(n: int) -> np.ndarray:
    return np.arange(n) % 3


def npz_dataset(ctx: Ctx, name: str, **arrays: Any) -> list[str]:
    path = ctx.npz(name, **arrays)
    return ["run", str(ctx.experiment({"dataset": {"name": "npz", "kwargs": {"path": str(path)}}}))]


#: plug-in files that register names edgebench already has (the clash is named in the user's file, whichever
#: registry loaded first)
CLASHING_DATASET = """from edgebench.data.registry import DATASETS

@DATASETS.register("digits")
def mine(seed=0):
    raise RuntimeError("never called")
"""
CLASHING_BACKEND = """from edgebench.runtimes.base import BACKENDS, Backend

@BACKENDS.register("onnxruntime")
class Mine(Backend):
    pass
"""

#: a criterion written as a function (a guess at the interface), and a runtime not subclassing Backend
FUNCTION_CRITERION = """from edgebench.prune import CRITERIA

@CRITERIA.register("team_fn")
def team_fn(module, role):
    return module.weight.abs().sum((1, 2, 3)) if role == "out" else None
"""
#: criteria whose bugs failed each variant's build after the baseline trained: a method misnamed (the base's
#: module_scores raised a bare NotImplementedError) and a score per input channel instead of per filter
MISNAMED_CRITERION = """from edgebench.prune import CRITERIA
from edgebench.prune.criteria.base import Criterion

@CRITERIA.register("team_misnamed")
class Misnamed(Criterion):
    def score(self, module, role):
        return module.weight.abs().sum((1, 2, 3)) if role == "out" else None
"""
WRONG_LENGTH_CRITERION = """import torch
from edgebench.prune import CRITERIA
from edgebench.prune.criteria.base import Criterion

@CRITERIA.register("team_inputs")
class PerInput(Criterion):
    def module_scores(self, module, role):
        if role == "out" and isinstance(module, torch.nn.Conv2d):
            return module.weight.abs().sum((0, 2, 3))
        return None
"""
#: a score per weight row, (C, k): the first C values (the first filters' weights) silently ranked the channels
ROWS_CRITERION = """import torch
from edgebench.prune import CRITERIA
from edgebench.prune.criteria.base import Criterion

@CRITERIA.register("team_rows")
class PerRow(Criterion):
    def module_scores(self, module, role):
        if role == "out" and isinstance(module, torch.nn.Conv2d):
            return module.weight.abs().flatten(1)
        return None
"""
PLAIN_BACKEND = """from edgebench.runtimes.base import BACKENDS

@BACKENDS.register("team_rt")
class TeamRuntime:
    def load(self, artifact, settings):
        raise NotImplementedError
"""

#: plug-ins subclassing their base but leaving one of its abstract methods out: listing backends (any `bench`,
#: `doctor`) was a TypeError traceback, a schedule failed each build after the baseline trained
UNFINISHED_PLUGINS = """from edgebench.measure.energy import METERS, EnergyMeter
from edgebench.prune import SCHEDULES
from edgebench.prune.schedules.base import Schedule
from edgebench.runtimes.base import BACKENDS, Backend

@BACKENDS.register("team_noload")
class NoLoad(Backend):
    formats = (".onnx",)

@SCHEDULES.register("team_norun")
class NoRun(Schedule):
    pass

@METERS.register("team_nostop")
class NoStop(EnergyMeter):
    source = "estimated:team"
    def start(self):
        pass
"""

#: a backend that sets no formats: bench named it as reading "" files, a run never picked it for any artifact
NO_FORMATS_BACKEND = """from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeSession
from edgebench.runtimes.base import BACKENDS, Backend

@BACKENDS.register("team_noformats")
class NoFormats(Backend):
    def load(self, artifact, settings):
        return OnnxRuntimeSession(artifact, settings)
"""


def unfinished_plugin(kind: str) -> Callable[[Ctx], list[str]]:
    """The experiment's plug-in file holding only the ``kind`` class of UNFINISHED_PLUGINS."""
    def build(ctx: Ctx) -> list[str]:
        head, *classes = UNFINISHED_PLUGINS.split("\n@")
        kept = "\n@".join([head, *(c for c in classes if c.startswith(kind))])
        return ["run", str(ctx.experiment({"plugins": [str(ctx.file("unfinished.py", kept))]}))]
    return build


def run_exp(over: dict[str, Any]) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["run", str(ctx.experiment(over))]


def run_target(data: dict[str, Any] | str | bytes) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["run", str(ctx.experiment({"targets": [str(ctx.target(data))]}))]


def with_env(name: str, value: str, build: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
    """``build`` with the environment variable ``name`` set to ``value`` for the case."""
    def built(ctx: Ctx) -> list[str]:
        ctx.request.getfixturevalue("monkeypatch").setenv(name, value)
        return build(ctx)
    return built


def run_ssh(**ssh: Any) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        resolved = {k: (v(ctx) if callable(v) else v) for k, v in ssh.items()}
        return ["run", str(ctx.experiment({"targets": [str(ctx.ssh_target(**resolved))]}))]

    return build


def store_cmd(*args: str, store: Callable[[Ctx], Path | str] | None = None) -> Callable[[Ctx], list[str]]:
    """A store command with ``--store`` (the filled copy unless ``store`` builds another)."""

    def build(ctx: Ctx) -> list[str]:
        where = store(ctx) if store else ctx.store
        return [a.format(tmp=ctx.tmp, file=ctx.tmp / "plain-file.txt") for a in args] + ["--store", str(where)]

    return build


def garbage_store(ctx: Ctx) -> Path:
    return ctx.file("garbage.db", b"this is not a database, it is a text file\n" * 100)


def empty_store(ctx: Ctx) -> Path:
    """A results store with its schema and no run (as a fresh `edgebench run` that failed its checks leaves none)."""
    path = ctx.tmp / "empty.db"
    Store.open(path).close()
    return path


def store_of_a_bare_run(ctx: Ctx) -> Path:
    """A store holding one run that stored nothing yet (interrupted before its first measurement)."""
    path = ctx.tmp / "bare.db"
    with Store.open(path) as store:
        store.start_run("bare", {}, "h", {}, run_id="20261207-000000-bare01")
    return path


def read_only_store(ctx: Ctx) -> str:
    """The filled store opened read-only (SQLite's own mode=ro: as root, file permissions would not refuse)."""
    return f"sqlite:///file:{ctx.store}?mode=ro&uri=true"


def foreign_sqlite(ctx: Ctx) -> Path:
    return ctx.sqlite("contacts.db", "create table people (name text)", "insert into people values ('ada')")


def bench(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["bench", *[a.format(onnx=ctx.onnx, tmp=ctx.tmp) for a in args]]


def bench_data(**arrays: Any) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["bench", str(ctx.onnx), "--data", str(ctx.npz("eval.npz", **arrays)), "--min-time-s", "0"]


def with_file(fn: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
    """Create ``plain-file.txt`` (for cases that use a file as a directory) before building."""

    def build(ctx: Ctx) -> list[str]:
        ctx.a_file()
        return fn(ctx)

    return build


def user_model(model: dict[str, Any], weights: Callable[[Path], None] | None = None,
               **over: Any) -> Callable[[Ctx], list[str]]:
    """A run of the team's model file (``tests/user_code.py``) beside the experiment, with ``weights`` written by
    the case into ``weights.pt``; relative paths, read from the experiment's directory."""

    def build(ctx: Ctx) -> list[str]:
        write_nets(ctx.tmp)
        if weights is not None:
            weights(ctx.tmp / "weights.pt")
        return ["run", str(ctx.experiment({"model": model, **over}))]

    return build


def _nets(ctx_dir: Path) -> Any:
    return import_file(ctx_dir / "nets.py")


def whole_module(path: Path) -> None:
    torch.save(_nets(path.parent).build_net(), path)


def wider_weights(path: Path) -> None:
    torch.save(_nets(path.parent).build_net(width=16).state_dict(), path)


def corrupt_weights(path: Path) -> None:
    """A real state dict whose first bytes were overwritten (a bad copy): not a zip, and not a pickle either."""
    torch.save(_nets(path.parent).build_net().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(bytes(100) + data[100:])


def truncated_weights(path: Path) -> None:
    """A small state dict without its last 100 bytes (an interrupted copy): a zip without its central directory (a
    larger file cut so gives torch's "OSError: [Errno 22] Invalid argument" instead)."""
    torch.save({"features.0.weight": torch.zeros(8, 1, 3, 3)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])


def nan_weights(path: Path) -> None:
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                for k, v in _nets(path.parent).build_net().state_dict().items()}, path)


def scripted(path: Path) -> None:
    torch.jit.save(torch.jit.script(_nets(path.parent).build_net()), path)


NETS = {"file": "nets.py", "factory": "build_net"}
#: a digits model whose classifier is a 1x1 conv: no Linear layer for NISP's final response layer
CONV_CLASSIFIER = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 10, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())
"""
DATA_PLUGIN = """
from edgebench.data import DATASETS


@DATASETS.register("bucket_data")
def bucket_data():
    raise RuntimeError("no such bucket: s3://team/data")


@DATASETS.register("list_data")
def list_data():
    return [1, 2, 3]
"""


def data_plugin(dataset: dict[str, Any]) -> Callable[[Ctx], list[str]]:
    """A run whose dataset comes from a loader a ``plugins:`` file registers."""
    return lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("team_loaders.py", DATA_PLUGIN))],
                                                    "dataset": dataset}))]


def cifar_run(data: Callable[[np.ndarray], Any]) -> Callable[[Ctx], list[str]]:
    """A run on a CIFAR-10 batch directory (6 batches of 10 images) whose 'data' ``data`` makes of uint8 rows."""
    def build(ctx: Ctx) -> list[str]:
        rows = np.random.default_rng(0).integers(0, 256, (10, 3072), dtype=np.uint8)
        rows[0, :2] = (0, 255)
        for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
            batch = {b"data": data(rows), b"labels": [i % 3 for i in range(10)]}
            ctx.file(f"cifar/{name}", pickle.dumps(batch, protocol=2))
        return ["run", str(ctx.experiment({"dataset": {"name": "cifar10", "kwargs": {"path": str(ctx.tmp / "cifar")}}}))]
    return build


def imagefolder_with_link(target: str) -> Callable[[Ctx], list[str]]:
    """A run on an image folder of two classes of three PNGs, one class also holding gone.png, a symlink to
    ``target`` (relative to the class folder)."""
    def build(ctx: Ctx) -> list[str]:
        from PIL import Image

        for cls in ("a", "b"):
            (ctx.tmp / "images" / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(ctx.tmp / "images" / cls / f"{i}.png")
        (ctx.tmp / "images" / "a" / "gone.png").symlink_to(target)
        dataset = {"name": "imagefolder", "kwargs": {"path": str(ctx.tmp / "images"), "image_size": 8}}
        return ["run", str(ctx.experiment({"dataset": dataset}))]
    return build


UNDER_FILE = "plain-file.txt/"
PICKLED = {"x_train": np.array([{"a": 1}], dtype=object), "y_train": labels(1),
           "x_test": images(4), "y_test": labels(4)}

CASES = [
    # --- run: files that are not what they claim ------------------------------------------------------
    Case("run-experiment-not-utf8", "run", lambda ctx: ["run", str(ctx.file("latin1.yaml", b"name: caf\xe9\n"))],
         ("latin1.yaml", "UTF-8")),
    Case("run-a-model-file", "run", lambda ctx: ["run", str(ctx.file("model.onnx", b"\x08\x07\x12\x07pytorch\xff"))],
         ("model.onnx is a model file, not an experiment file", "edgebench bench")),
    Case("run-experiment-yaml-syntax", "run",
         lambda ctx: ["run", str(ctx.file("broken.yaml", "training: {epochs: 2\npruning: [l1\n"))],
         ("broken.yaml:", "not valid YAML")),
    Case("run-experiment-top-level-list", "run", lambda ctx: ["run", str(ctx.file("list.yaml", "- a\n- b\n"))],
         ("list.yaml", "mapping")),
    Case("run-experiment-top-level-scalar", "run", lambda ctx: ["run", str(ctx.file("scalar.yaml", "hello\n"))],
         ("scalar.yaml", "mapping")),
    Case("run-experiment-missing", "run", lambda ctx: ["run", str(ctx.tmp / "nope.yaml")], ("nope.yaml",)),
    Case("run-experiment-key-twice", "run",
         lambda ctx: ["run", str(ctx.file("twice.yaml", "training: {epochs: 1}\ntraining: {epochs: 3}\n"))],
         ("twice.yaml:2:1", "'training' is given twice")),
    Case("run-precision-twice", "run", run_exp({"quantization": {"precisions": ["fp32", "fp32"]}}),
         ("quantization.precisions", "fp32 listed twice")),
    Case("run-target-named-otherwise", "run", run_target({"name": "local-cpu", "backends": ["onnxruntime"]}),
         ("my-board.yaml", "name: 'local-cpu' differs from the file's name 'my-board'")),
    Case("run-target-twice-as-name-and-file", "run", lambda ctx: ["run", str(ctx.experiment(
        {"targets": ["local-cpu", str(ctx.target({"backends": ["onnxruntime"]}, "local-cpu.yaml"))]}))],
         ("targets", "'local-cpu' and", "both name target local-cpu")),
    Case("run-target-name-null", "run", run_target({"name": None, "backends": ["onnxruntime"]}),
         ("my-board.yaml", "name: None is not the file's name 'my-board'", "drop the name field")),
    Case("run-target-precisions-empty", "run", run_target({"backends": ["onnxruntime"], "precisions": []}),
         ("my-board.yaml", "precisions", "at least 1 item")),
    Case("run-target-precision-twice", "run", run_target({"backends": ["onnxruntime"], "precisions": ["fp32", "fp32"]}),
         ("my-board.yaml", "precisions", "fp32 listed twice")),
    Case("run-target-ssh-port-out-of-range", "run",
         run_target({"backends": ["onnxruntime"], "kind": "ssh", "ssh": {"host": "127.0.0.1", "port": 70000}}),
         ("my-board.yaml", "ssh.port", "65535")),
    Case("run-target-ray-core-negative", "run", run_target({"backends": ["onnxruntime"], "ray": {"cores": [-1]}}),
         ("my-board.yaml", "ray.cores.0", "greater than or equal to 0")),
    Case("run-target-ray-cores-empty", "run", run_target({"backends": ["onnxruntime"], "ray": {"cores": []}}),
         ("my-board.yaml", "ray.cores", "at least 1 item")),
    Case("run-target-backend-twice", "run", run_target({"name": "my-board", "backends": ["onnxruntime", "onnxruntime"]}),
         ("my-board.yaml", "backends", "onnxruntime listed twice")),
    Case("run-measurement-floor-over-cap", "run", run_exp({"measurement": {"min_time_s": 2, "max_time_s": 0.5}}),
         ("measurement", "min_time_s (2) exceeds max_time_s (0.5)")),
    Case("run-report-objective-one-metric-twice", "run",
         run_exp({"report": {"objectives": [["latency", "p50_ms"]]}}), ("report.objectives", "one metric twice")),
    Case("run-report-objective-unknown", "run", run_exp({"report": {"objectives": [["accuracy", "speed"]]}}),
         ("report.objectives", "unknown metric 'speed'")),
    Case("run-experiment-key-a-number", "run",
         lambda ctx: ["run", str(ctx.file("numkey.yaml", "training: {epochs: 1}\n1: 2\n"))],
         ("numkey.yaml", "1 is not a field name")),
    Case("run-speed-tolerance-not-a-number", "run", with_env("EDGEBENCH_SPEED_TOLERANCE", "abc", run_exp({})),
         ("EDGEBENCH_SPEED_TOLERANCE='abc'", "a number >= -1")),
    Case("run-pruning-ratio-twice", "run", run_exp({"pruning": {"ratios": [0.5, 0.5]}}),
         ("pruning.ratios", "0.5 listed twice")),
    Case("run-sparse-sparsities-empty", "run", run_exp({"sparse": {"sparsities": []}}),
         ("sparse.sparsities is empty", "remove the sparse: block")),
    Case("run-pruning-allocation-empty", "run", run_exp({"pruning": {"allocation": []}}),
         ("pruning.allocation is empty",)),
    Case("run-executor-rss-infinite", "run", run_exp({"executor": {"max_rss_mb": float("inf")}}),
         ("executor.max_rss_mb", "finite")),
    Case("run-experiment-empty", "run", lambda ctx: ["run", str(ctx.file("empty.yaml", "# to do\n"))],
         ("empty.yaml", "is empty")),
    Case("run-several-problems", "run", run_exp({"training": {"epochs": -1, "lr": "fast", "momentum": 2}}),
         ("training.epochs", "2 more")),
    # --- run: factory kwargs, names and types ----------------------------------------------------------
    Case("run-dataset-kwarg-unknown", "run", run_exp({"dataset": {"kwargs": {"sed": 1}}}), ("dataset.kwargs", "sed")),
    Case("run-dataset-kwarg-type", "run", run_exp({"dataset": {"kwargs": {"seed": "one"}}}), ("dataset.kwargs", "seed")),
    Case("run-dataset-kwarg-value", "run", run_exp({"dataset": {"kwargs": {"test_fraction": 1.5}}}),
         ("dataset", "1.5")),
    Case("run-model-kwarg-unknown", "run", run_exp({"model": {"kwargs": {"widht": 0.5}}}), ("model.kwargs", "widht")),
    Case("run-model-kwarg-number-as-text", "run", run_exp({"model": {"kwargs": {"width": "0.5"}}}),
         ("model.kwargs", "width")),
    Case("run-model-does-not-fit-data", "run", run_exp({"model": {"kwargs": {"input_size": 16}}}),
         ("digits_cnn", "digits")),
    Case("run-criterion-kwarg-unknown", "run", run_exp({"pruning": {"criterion_kwargs": {"l1": {"foo": 1}}}}),
         ("criterion_kwargs.l1", "foo")),
    Case("run-criterion-kwarg-type", "run",
         run_exp({"pruning": {"criteria": ["random"], "criterion_kwargs": {"random": {"seed": "x"}}}}),
         ("criterion_kwargs.random", "seed")),
    Case("run-fixed-point-format", "run", run_exp({"quantization": {"fixed_point": "ap_fixed16"}}),
         ("quantization.fixed_point", "ap_fixed16")),
    Case("run-learning-rate-infinite", "run", run_exp({"training": {"lr": float("inf")}}), ("training.lr", "finite")),
    Case("run-mlflow-server-down", "run", run_exp({"tracking": {"mlflow": {"uri": "http://127.0.0.1:1"}}}),
         ("tracking.mlflow.uri", "no MLflow tracking server answers at http://127.0.0.1:1")),
    Case("run-mlflow-database-down", "run",
         run_exp({"tracking": {"mlflow": {"uri": "postgresql://team:secret@127.0.0.1:1/mlflow"}}}),
         ("tracking.mlflow.uri", "no postgresql server answers at postgresql://team:***@127.0.0.1:1/mlflow")),
    Case("run-mlflow-sqlite-not-writable", "run", lambda ctx: ["run", str(ctx.experiment({"tracking": {"mlflow": {
         "uri": f"sqlite:///{ctx.file('notes.txt', 'a file')}/mlflow.db"}}}))],
         ("tracking.mlflow.uri", "notes.txt is a file, not a directory", "give a SQLite file where it can be written")),
    Case("run-mlflow-uri-typo", "run", run_exp({"tracking": {"mlflow": {"uri": "htp://127.0.0.1:5000"}}}),
         ("tracking.mlflow.uri", "scheme 'htp'")),
    Case("run-nisp-without-a-linear-classifier", "run", lambda ctx: ["run", str(ctx.experiment({
        "model": {"file": str(ctx.file("fcn.py", CONV_CLASSIFIER)), "factory": "build"},
        "pruning": {"criteria": ["nisp"]}}))], ("pruning.criteria", "nisp", "no Linear layer")),
    Case("run-name-read-as-a-boolean", "run", run_exp({"name": False}),
         ("name", "valid string", "YAML reads yes/no/on/off/true/false as booleans: quote the text")),
    Case("run-epochs-a-boolean", "run", run_exp({"training": {"epochs": True}}),
         ("training.epochs", "a number is expected, not true")),
    Case("run-latency-prediction-of-an-offline-batch", "run",
         run_exp({"measurement": {"predict_latency": True, "scenario": "offline", "batch_size": 8}}),
         ("measurement", "predict_latency predicts one image's p50", "batches of 8")),
    Case("run-batch-size-timed-single-stream", "run", run_exp({"measurement": {"batch_size": 8}}),
         ("targets.0 (local-cpu)", "measurement.batch_size is 8", "scenario is single_stream", "scenario: offline")),
    # finite but past what the code can hold: both had passed the checks and failed every job or build after training
    Case("run-max-time-past-a-million-seconds", "run", run_exp({"measurement": {"max_time_s": 1e300}}),
         ("measurement.max_time_s", "less than or equal to 1000000")),
    Case("run-lr-past-float32", "run", run_exp({"training": {"lr": 1e300}}), ("training.lr", "less than or equal to")),
    Case("run-measurement-precision-zero", "run", run_exp({"measurement": {"precision": 0}}),
         ("measurement.precision", "greater than 0 (got 0)", "null: a fixed window")),
    Case("run-target-measurement-boolean", "run",
         run_exp({"targets": [{"name": "local-cpu", "measurement": {"min_iters": True}}]}),
         ("targets.0.measurement", "min_iters", "not true")),
    Case("run-fixed-point-rounding-misspelt", "run",
         run_exp({"quantization": {"fixed_point": "ap_fixed<16,6,AP_RNDX,AP_SAT>"}}),
         ("quantization.fixed_point", "rounding mode 'AP_RNDX'", "AP_RND_CONV")),
    Case("run-fixed-point-overflow-misspelt", "run",
         run_exp({"quantization": {"fixed_point": "ap_fixed<16,6,AP_RND,AP_SATT>"}}),
         ("quantization.fixed_point", "overflow mode 'AP_SATT'", "AP_WRAP")),
    Case("run-fixed-point-overflow-hls4ml-lacks", "run",
         run_exp({"quantization": {"fixed_point": "ap_fixed<16,6,AP_TRN,AP_WRAP_SM>"}}),
         ("quantization.fixed_point", "overflow mode 'AP_WRAP_SM'")),
    Case("run-fixed-point-zero-width", "run", run_exp({"quantization": {"fixed_point": "ap_fixed<0,0>"}}),
         ("quantization.fixed_point", "width of 0 bits", "1 to 1024")),
    Case("run-fixed-point-too-wide", "run", run_exp({"quantization": {"fixed_point": "ap_fixed<2000,6>"}}),
         ("quantization.fixed_point", "width of 2000 bits")),
    # --- run: the team's model, weights and plug-ins ---------------------------------------------------
    Case("run-model-module-not-found", "run", run_exp({"model": {"name": "team_pkg.nets:build_net"}}),
         ("model.name", "team_pkg.nets", "not found")),
    Case("run-model-import-path-attribute-missing", "run", run_exp({"model": {"name": "edgebench.models:resnet18"}}),
         ("model.name", "edgebench.models", "resnet18")),
    Case("run-model-file-missing", "run", run_exp({"model": {"file": "gone.py", "factory": "build_net"}}),
         ("model.file", "gone.py")),
    Case("run-model-file-without-factory", "run", run_exp({"model": {"file": "nets.py"}}), ("model.factory",)),
    Case("run-model-factory-missing", "run", user_model({"file": "nets.py", "factory": "build_nett"}),
         ("nets.py", "build_nett", "build_net")),
    Case("run-model-factory-raises", "run", user_model({"file": "nets.py", "factory": "build_raises"}),
         ("build_raises", "ValueError", "multiple of 8")),
    Case("run-model-factory-not-a-module", "run", user_model({"file": "nets.py", "factory": "build_dict"}),
         ("build_dict", "dict", "torch.nn.Module")),
    Case("run-model-forward-takes-a-dict", "run", user_model({"file": "nets.py", "factory": "build_dict_input"}),
         ("build_dict_input does not run on dataset digits (1x8x8 images, batch 1)", "one (N, 1, 8, 8) float tensor",
          "a wrapper module")),
    Case("run-model-wrong-output-shape", "run", user_model({"file": "nets.py", "factory": "build_three_classes"}),
         ("build_three_classes", "(1, 3)", "(batch, 10)")),
    Case("run-model-returns-a-tuple", "run", user_model({"file": "nets.py", "factory": "build_tuple"}),
         ("build_tuple", "returns a tuple, not one logits tensor", "out[0]")),
    Case("run-model-returns-a-tuple-while-training", "run",
         user_model({"file": "nets.py", "factory": "build_aux_while_training"}),
         ("build_aux_while_training", "returns a tuple in training mode (auxiliary heads?)", "aux_logits=False")),
    Case("run-model-fails-while-training", "run",
         user_model({"file": "nets.py", "factory": "build_fails_while_training"}),
         ("build_fails_while_training", "runs in eval mode but not in training mode", "stochastic depth")),
    Case("run-model-holds-a-lock", "run", user_model({"file": "nets.py", "factory": "build_locked"}),
         ("build_locked", "cannot be saved whole", "_thread.lock", "keep no open files, locks")),
    Case("run-model-nan-outputs", "run", user_model({"file": "nets.py", "factory": "build_nan"}),
         ("build_nan", "as its factory builds it gives NaN or infinite outputs", "check its forward")),
    Case("run-model-without-parameters", "run",
         user_model({"file": "nets.py", "factory": "build_parameterless"}, pruning={"criteria": []}),
         ("build_parameterless", "has no parameters: there is nothing to train")),
    Case("run-conv1d-model-on-images", "run", user_model({"file": "nets.py", "factory": "build_conv1d"}),
         ("build_conv1d", "conv1d", "x.flatten(1, 2)")),
    Case("run-conv1d-model-given-the-images-channels", "run",
         user_model({"file": "nets.py", "factory": "build_conv1d_in_channels"}),
         ("build_conv1d_in_channels", "given in_channels=1 (the images' C), not the signal's 8 channels",
          "model.kwargs: {in_channels: 8}")),
    Case("run-model-not-prunable", "run", user_model({"file": "nets.py", "factory": "HardCodedFlatten"}),
         ("HardCodedFlatten", "after layer pool (MaxPool2d)", "[-1, 128]", "filters are removed")),
    Case("run-weights-missing", "run", user_model({**NETS, "weights": "nope.pt"}), ("model.weights", "nope.pt")),
    Case("run-weights-an-onnx-file", "run", lambda ctx: user_model({**NETS, "weights": str(ctx.onnx)})(ctx),
         ("model.weights", ".onnx is an exported model (onnx), not PyTorch weights", "artifacts:")),
    Case("run-weights-not-a-checkpoint", "run",
         lambda ctx: user_model({**NETS, "weights": str(ctx.file("junk.pt", "not a checkpoint\n"))})(ctx),
         ("junk.pt", "torch.load")),
    Case("run-weights-corrupt", "run", user_model({**NETS, "weights": "weights.pt"}, corrupt_weights),
         ("weights.pt", "corrupt, truncated", "Unsupported operand")),
    Case("run-weights-truncated", "run", user_model({**NETS, "weights": "weights.pt"}, truncated_weights),
         ("weights.pt", "corrupt, truncated", "failed finding central directory)")),
    Case("run-weights-pickled-module", "run", user_model({**NETS, "weights": "weights.pt"}, whole_module),
         ("weights.pt", "SmallNet", "trust_checkpoint")),
    Case("run-weights-shape-mismatch", "run", user_model({**NETS, "weights": "weights.pt"}, wider_weights),
         ("weights.pt", "features.0.weight", "(16, 1, 3, 3)", "(8, 1, 3, 3)")),
    Case("run-weights-nan", "run", user_model({**NETS, "weights": "weights.pt"}, nan_weights),
         ("weights.pt", "features.0.weight", "NaN or infinite")),
    Case("run-weights-program-with-a-factory", "run", user_model({**NETS, "weights": "weights.pt"}, scripted),
         ("model.weights", "torchscript", "model.name")),
    Case("run-weights-program-trained", "run", user_model({"weights": "weights.pt"}, scripted),
         ("TorchScript", "training.epochs: 0")),
    Case("run-plugin-syntax-error", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("mine.py", "x = 1\ndef f(:\n"))]}))],
         ("plugins", "mine.py:2", "syntax error")),
    Case("run-plugin-missing", "run", run_exp({"plugins": ["gone_plugins.py"]}), ("plugins", "gone_plugins.py")),
    Case("run-plugin-takes-a-builtin-dataset-name", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("clash.py", CLASHING_DATASET))]}))],
         ("plugins", "clash.py", "dataset 'digits' is already registered (by edgebench.data.digits)")),
    Case("run-plugin-takes-a-builtin-backend-name", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("clash_be.py", CLASHING_BACKEND))]}))],
         ("plugins", "clash_be.py", "backend 'onnxruntime' is already registered")),
    Case("run-plugin-criterion-is-a-function", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("fn.py", FUNCTION_CRITERION))]}))],
         ("plugins", "fn.py", "criterion 'team_fn' is function 'team_fn', not a subclass of "
          "edgebench.prune.criteria.base.Criterion", f"(see {PLUGINS_DOC})")),
    Case("run-plugin-backend-not-a-backend", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("rt.py", PLAIN_BACKEND))]}))],
         ("plugins", "rt.py", "backend 'team_rt' is class TeamRuntime, not a subclass of "
          "edgebench.runtimes.base.Backend")),
    Case("run-plugin-backend-without-load", "run", unfinished_plugin("BACKENDS"),
         ("plugins", "unfinished.py", "backend 'team_noload' is class NoLoad, which leaves load of Backend undefined: "
          "define it")),
    Case("run-plugin-backend-without-formats", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("nofmt.py", NO_FORMATS_BACKEND))]}))],
         ("plugins", "nofmt.py", "backend 'team_noformats' is class NoFormats, which declares no formats: set formats")),
    Case("run-plugin-schedule-without-run", "run", unfinished_plugin("SCHEDULES"),
         ("unfinished.py", "schedule 'team_norun' is class NoRun, which leaves run of Schedule undefined")),
    Case("run-plugin-meter-without-stop", "run", unfinished_plugin("METERS"),
         ("unfinished.py", "energy meter 'team_nostop' is class NoStop, which leaves stop of EnergyMeter undefined")),
    Case("run-plugin-criterion-method-misnamed", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("mis.py", MISNAMED_CRITERION))],
                                                 "pruning": {"criteria": ["team_misnamed"]}}))],
         ("criterion 'team_misnamed' (Misnamed) overrides none of the methods that score channels",
          "module_scores(self, module, role)")),
    Case("run-plugin-criterion-scores-of-wrong-length", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("inp.py", WRONG_LENGTH_CRITERION))],
                                                 "pruning": {"criteria": ["team_inputs"]}}))],
         ("criterion 'team_inputs' (PerInput) fails on model", "before any training",
          "gave 32 scores for the out channels of Conv2d (weight (64, 32, 3, 3)), which has 64")),
    Case("run-plugin-criterion-scores-per-weight-row", "run",
         lambda ctx: ["run", str(ctx.experiment({"plugins": [str(ctx.file("rows.py", ROWS_CRITERION))],
                                                 "pruning": {"criteria": ["team_rows"]}}))],
         ("criterion 'team_rows' (PerRow) fails on model", "before any training",
          "gave 18432 scores for the out channels of Conv2d (weight (64, 32, 3, 3)), which has 64")),
    Case("run-criterion-import-path-not-a-criterion", "run",
         run_exp({"pruning": {"criteria": ["collections:OrderedDict"]}}),
         ("pruning.criteria", "criterion 'collections:OrderedDict' is class OrderedDict, not a subclass of")),
    Case("run-dataset-module-not-found", "run", run_exp({"dataset": {"name": "team_data_gone:load"}}),
         ("dataset.name", "team_data_gone", "not found")),
    Case("run-dataset-loader-raises", "run", data_plugin({"name": "bucket_data"}),
         ("bucket_data", "RuntimeError", "no such bucket")),
    Case("run-dataset-loader-returns-a-list", "run", data_plugin({"name": "list_data"}),
         ("list_data", "the loader returned a list")),
    Case("run-dataset-normalize-channels", "run",
         run_exp({"dataset": {"preprocess": {"normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}}}),
         ("normalize", "3 mean/std values for 1-channel images")),
    Case("run-dataset-normalize-std-zero", "run",
         run_exp({"dataset": {"preprocess": {"normalize": {"mean": [0.5], "std": [0.0]}}}}),
         ("dataset.preprocess.normalize", "std must be positive")),
    Case("run-dataset-normalize-std-tiny", "run",
         run_exp({"dataset": {"preprocess": {"normalize": {"mean": [0.5], "std": [1e-30]}}}}),
         ("dataset.preprocess.normalize", "std 1e-30 scales its channel by 1e+30", "at least 0.001")),
    Case("run-dataset-resize-one-value-list", "run", run_exp({"dataset": {"preprocess": {"resize": [8]}}}),
         ("dataset.preprocess.resize: one size N or [height, width], got [8]",)),
    Case("run-dataset-crop-three-values", "run", run_exp({"dataset": {"preprocess": {"center_crop": [8, 8, 3]}}}),
         ("dataset.preprocess.center_crop: one size N or [height, width], got [8, 8, 3]",)),
    Case("run-dataset-cifar-float-pixels", "run", cifar_run(lambda rows: rows.astype(np.float32) / 255),
         ("data_batch_1: 'data' is float32 with values 0..1", "CIFAR's format is uint8 0..255", "npz dataset")),
    Case("run-dataset-cifar-bytes-rows", "run", cifar_run(lambda rows: [bytes(r) for r in rows]),
         ("data_batch_1: 'data' is a list of bytes", "'data' of shape (N, 3072) uint8 and 'labels'")),
    Case("run-dataset-imagefolder-dangling-symlink", "run", imagefolder_with_link("/nonexistent/gone.png"),
         ("images/a/gone.png cannot be read (a symlink to /nonexistent/gone.png", "replace or remove it")),
    Case("run-dataset-imagefolder-looping-symlink", "run", imagefolder_with_link("gone.png"),
         ("images/a/gone.png cannot be read (a symlink to gone.png: Too many levels", "replace or remove it")),
    Case("run-dataset-crop-larger-than-images", "run", run_exp({"dataset": {"preprocess": {"center_crop": 16}}}),
         ("center_crop", "16x16", "8x8")),
    Case("run-artifact-missing", "run",
         run_exp({"artifacts": [{"path": "nncf_int8.onnx", "label": "nncf", "precision": "int8"}]}),
         ("artifacts.0.path", "nncf_int8.onnx", "not a file")),
    Case("run-artifact-pickle", "run", lambda ctx: ["run", str(ctx.experiment({"artifacts": [
         {"path": str(ctx.file("model.pt", b"PK pickle")), "label": "theirs", "precision": "fp32"}]}))],
         ("artifacts.0.path", "model.pt", ".onnx and .tflite")),
    Case("run-artifact-label-twice", "run", lambda ctx: ["run", str(ctx.experiment({"artifacts": [
         {"path": str(ctx.onnx), "label": "theirs", "precision": "fp32"},
         {"path": str(ctx.onnx), "label": "theirs", "precision": "int8"}]}))], ("artifacts.1.label", "theirs")),
    Case("run-artifact-fixed-batch-offline", "run", lambda ctx: ["run", str(ctx.experiment({
         "artifacts": [{"path": str(other_onnx(ctx, "batch1.onnx", batch=1)), "label": "theirs", "precision": "fp32"}],
         "measurement": {"scenario": "offline", "batch_size": 4}}))],
         ("batch1.onnx", "fixed batch of 1", "batch 4", "dynamic batch axis")),
    Case("run-artifact-two-outputs", "run", lambda ctx: ["run", str(ctx.experiment({"artifacts": [
         {"path": str(other_onnx(ctx, "aux.onnx", outputs=2)), "label": "theirs", "precision": "fp32"}]}))],
         ("aux.onnx", "2 outputs (logits, aux)", "logits alone")),
    Case("run-artifact-other-classes", "run", lambda ctx: ["run", str(ctx.experiment({"artifacts": [
         {"path": str(other_onnx(ctx, "seven.onnx", classes=7)), "label": "theirs", "precision": "fp32"}]}))],
         ("seven.onnx", "its output is ?x7, 7 scores per image", "the dataset has 10 classes")),
    # --- run: cross-field constraints ------------------------------------------------------------------
    Case("run-prune-epochs-beyond-training", "run", run_exp({"pruning": {"prune_epochs": [0, 5]}}),
         ("prune_epochs", "training.epochs")),
    Case("run-selection-method-not-in-grid", "run",
         run_exp({"sparse": {"methods": ["magnitude"], "sparsities": [0.5]},
                  "targets": [{"name": "local-cpu", "methods": ["magnitud"]}]}),
         ("targets.0.methods: magnitud not in sparse.methods (and lrpet with lowrank:) (magnitude)",
          "would measure nothing for it")),
    Case("run-selection-precisions-empty", "run", run_exp({"targets": [{"name": "local-cpu", "precisions": []}]}),
         ("targets.0.precisions is empty", "would measure nothing")),
    Case("run-selection-ratio-not-in-grid", "run", run_exp({"targets": [{"name": "local-cpu", "ratios": [0.3]}]}),
         ("targets.0.ratios", "0.3")),
    Case("run-selection-precision-not-in-grid", "run",
         run_exp({"targets": [{"name": "local-cpu", "precisions": ["int8"]}]}), ("targets.0.precisions", "int8")),
    Case("run-selection-criterion-not-in-grid", "run",
         run_exp({"targets": [{"name": "local-cpu", "criteria": ["taylor"]}]}), ("targets.0.criteria", "taylor")),
    Case("run-selection-schedule-not-in-grid", "run",
         run_exp({"targets": [{"name": "local-cpu", "schedules": ["iterative"]}]}), ("targets.0.schedules", "iterative")),
    Case("run-duplicate-target", "run", run_exp({"targets": ["local-cpu", "local-cpu"]}), ("targets", "local-cpu")),
    Case("run-unknown-target", "run", run_exp({"targets": ["no-such-board"]}), ("no-such-board",)),
    Case("run-target-typo", "run", run_exp({"targets": ["local-cpuu"]}), ("local-cpuu", "did you mean 'local-cpu'?")),
    Case("run-target-file-missing", "run", run_exp({"targets": ["local-cpu.yaml"]}),
         ("'local-cpu.yaml': no such file", "did you mean 'local-cpu'?", "the path of a target YAML file")),
    Case("run-ratios-empty", "run", run_exp({"pruning": {"ratios": []}}), ("pruning.ratios is empty", "criteria l1")),
    Case("run-schedules-empty", "run", run_exp({"pruning": {"schedules": []}}), ("pruning.schedules is empty",)),
    Case("run-precisions-empty", "run", run_exp({"quantization": {"precisions": []}}),
         ("quantization.precisions is empty", "fp32, fp16, int8")),
    Case("run-reserved-tag", "run", lambda ctx: ["run", str(ctx.experiment()), "--tag", "latest"], ("latest",)),
    # --- run: target files ----------------------------------------------------------------------------
    Case("run-target-not-utf8", "run", run_target(b"backends: [onnxruntime]\ndescription: caf\xe9\n"),
         ("my-board.yaml", "UTF-8")),
    Case("run-target-yaml-syntax", "run", run_target("backends: [onnxruntime\n"), ("my-board.yaml:", "YAML")),
    Case("run-target-top-level-list", "run", run_target("- onnxruntime\n"), ("my-board.yaml", "mapping")),
    Case("run-target-top-level-scalar", "run", run_target("onnxruntime\n"), ("my-board.yaml", "mapping")),
    Case("run-target-unknown-backend", "run", run_target({"backends": ["tflite_gpu"]}), ("my-board.yaml", "tflite_gpu")),
    Case("run-target-energy-option", "run", run_target({"backends": ["onnxruntime"], "energy": {"type": "rapl", "domian": "x"}}),
         ("my-board.yaml", "domian")),
    Case("run-target-backend-option-type", "run",
         run_target({"backends": ["litert"], "backend_options": {"litert": {"xnnpack": "yes"}}}),
         ("my-board.yaml", "xnnpack")),
    # --- run: data files ------------------------------------------------------------------------------
    Case("run-npz-pickled-objects", "run", lambda ctx: npz_dataset(ctx, "pickled.npz", **PICKLED), ("pickled.npz",)),
    Case("run-npz-length-mismatch", "run",
         lambda ctx: npz_dataset(ctx, "uneven.npz", x_train=images(30), y_train=labels(29), x_test=images(9),
                                 y_test=labels(9)), ("uneven.npz", "y_train")),
    Case("run-npz-not-a-zip", "run",
         lambda ctx: ["run", str(ctx.experiment({"dataset": {"name": "npz", "kwargs": {
             "path": str(ctx.file("text.npz", "x_train,y_train\n1,2\n"))}}}))], ("text.npz",)),
    # --- run: the store and output paths --------------------------------------------------------------
    Case("run-store-not-a-database", "run",
         lambda ctx: ["run", str(ctx.experiment({"store": {"url": str(garbage_store(ctx))}}))], ("garbage.db", "database")),
    Case("run-store-postgres-unreachable", "run",
         lambda ctx: ["run", str(ctx.experiment({"store": {"url": f"postgresql://u:pw@127.0.0.1:{free_port()}/x"}}))],
         ("cannot open store postgresql://u:***@127.0.0.1", "Connection refused"), store_checked=False),
    Case("run-store-in-memory", "run", run_exp({"store": {"url": "sqlite:///:memory:"}}),
         ("store.url sqlite:///:memory:", "in-memory")),
    Case("run-store-read-only", "run", lambda ctx: ["run", str(ctx.experiment({"store": {"url": read_only_store(ctx)}}))],
         ("results.db", "readonly", "writable")),
    Case("run-store-foreign-sqlite", "run",
         lambda ctx: ["run", str(ctx.experiment({"store": {"url": str(foreign_sqlite(ctx))}}))], ("contacts.db", "people")),
    Case("run-store-under-a-file", "run",
         with_file(lambda ctx: ["run", str(ctx.experiment({"store": {"url": str(ctx.tmp / UNDER_FILE / "r.db")}}))]),
         ("plain-file.txt",)),
    Case("run-report-under-a-file", "run",
         with_file(lambda ctx: ["run", str(ctx.experiment({"report": {"dir": str(ctx.tmp / UNDER_FILE / "rep")}}))]),
         ("plain-file.txt", "report")),
    Case("run-report-unwritable", "run", run_exp({"report": {"dir": UNWRITABLE}}), (UNWRITABLE,)),
    Case("run-workdir-name-too-long", "run", lambda ctx: ["run", str(ctx.experiment({"run": {"workdir": str(ctx.tmp / ("d" * 300))}}))],
         ("run.workdir", "File name too long")),
    Case("run-store-name-too-long", "run",
         lambda ctx: ["run", str(ctx.experiment({"store": {"url": str(ctx.tmp / ("d" * 300) / "r.db")}}))],
         ("store.url", "File name too long")),
    # a path part past 255 bytes read (not written) by the checks: OSError tracebacks from Path.is_file (a helper's
    # fuzzing of every field found seven such places)
    Case("run-weights-name-too-long", "run", run_exp({"model": {"weights": "w" * 300 + ".pt"}}),
         ("wwww.pt (", "characters): File name too long", "255 bytes")),
    Case("run-plugin-name-too-long", "run", run_exp({"plugins": ["p" * 300 + ".py"]}), ("File name too long",)),
    Case("run-artifact-name-too-long", "run",
         run_exp({"artifacts": [{"path": "a" * 300 + ".onnx", "label": "theirs", "precision": "fp32"}]}),
         ("File name too long",)),
    Case("run-workdir-with-a-nul", "run", lambda ctx: ["run", str(ctx.experiment({"run": {"workdir": str(ctx.tmp / "a\0b")}}))],
         ("run.workdir", "embedded null byte")),
    Case("run-name-too-long", "run", run_exp({"name": "n" * 300}), ("name", "not a plain name", "at most 200")),
    Case("run-name-with-a-newline", "run", run_exp({"name": "a\nb"}), ("name", "not a plain name", "control characters")),
    Case("run-name-with-spaces-around", "run", run_exp({"name": " x "}), ("name", "not a plain name", "spaces")),
    Case("run-workdir-under-a-file", "run",
         with_file(lambda ctx: ["run", str(ctx.experiment({"run": {"workdir": str(ctx.tmp / UNDER_FILE / "w")}}))]),
         ("plain-file.txt", "workdir")),
    # --- run: nothing could run (exit 3) --------------------------------------------------------------
    Case("run-no-export-for-any-job", "run",
         run_exp({"quantization": {"precisions": ["fixed"]}}), ("nothing could run", "fixed"), code=3),
    Case("run-model-no-target-converts", "run",
         user_model({"file": "nets.py", "factory": "build_hardswish"}, quantization={"precisions": ["fixed"]},
                    targets=["local-hls4ml-csim"]),
         ("nothing could run", "local-hls4ml-csim", "features.2", "Hardswish"), code=3),
    Case("run-ssh-dead-port", "run", run_ssh(port=lambda ctx: free_port(), retries=0),
         ("nothing could run", "loopback-board", "unreachable"), code=3),
    Case("run-ssh-unknown-host-key", "run",
         run_ssh(known_hosts=lambda ctx: str(ctx.file("empty_known_hosts", ""))),
         ("nothing could run", "unknown host key"), code=3),
    Case("run-ssh-auth-refused", "run",
         run_ssh(key_file=lambda ctx: str(keygen(ctx.tmp / "stranger_ed25519"))),
         ("nothing could run", "authentication"), code=3),
    Case("run-ssh-missing-key-file", "run", run_ssh(key_file=lambda ctx: str(ctx.tmp / "no_such_key")),
         ("nothing could run", "no_such_key"), code=3),
    Case("run-ssh-remote-python-missing", "run", run_ssh(python="/nonexistent/python3"),
         ("nothing could run", "/nonexistent/python3"), code=3),
    # --- variants ---------------------------------------------------------------------------------------
    Case("variants-selection-ratio-not-in-grid", "variants",
         lambda ctx: ["variants", str(ctx.experiment({"targets": [{"name": "local-cpu", "ratios": [0.9]}]}))],
         ("targets.0.ratios", "0.9")),
    Case("variants-model-kwarg-type", "variants",
         lambda ctx: ["variants", str(ctx.experiment({"model": {"kwargs": {"width": [1]}}}))], ("model.kwargs", "width")),
    # --- bench --------------------------------------------------------------------------------------------
    Case("bench-backend-of-another-format", "bench", bench("{onnx}", "--backend", "litert", "--input-shape", "1,8,8"),
         ("backend 'litert' does not read .onnx files", "onnxruntime")),
    Case("bench-artifact-missing", "bench", bench("{tmp}/missing.onnx", "--input-shape", "1,8,8"), ("missing.onnx",),
         store_checked=False),
    Case("bench-corrupt-onnx", "bench",
         lambda ctx: ["bench", str(ctx.file("broken.onnx", b"\x00garbage")), "--input-shape", "1,8,8"],
         ("broken.onnx",), store_checked=False),
    Case("bench-corrupt-torch-file", "bench",
         lambda ctx: ["bench", str(ctx.file("broken.pt", b"PK\x03\x04 not a zip")), "--backend", "torch",
                      "--input-shape", "1,8,8"], ("broken.pt",), store_checked=False),
    Case("bench-input-shape-mismatch", "bench", bench("{onnx}", "--input-shape", "3,32,32", "--min-time-s", "0"),
         ("--input-shape 3,32,32", "tiny.onnx's input 'input'", "takes 1,8,8 per image"), store_checked=False),
    Case("bench-npz-images-of-another-shape", "bench", bench_data(x=images(10, c=3), y=labels(10)),
         ("eval.npz's images (3,8,8 each) does not fit tiny.onnx's input 'input'", "takes 1,8,8 per image"), store_checked=False),
    Case("bench-min-time-inf", "bench", bench("{onnx}", "--min-time-s", "inf"), ("--min-time-s inf: not a finite number",),
         store_checked=False),  # was pydantic's traceback from MeasureSettings
    Case("bench-input-shape-text", "bench", bench("{onnx}", "--input-shape", "a,b"), ("--input-shape",),
         store_checked=False),
    Case("bench-input-shape-negative", "bench", bench("{onnx}", "--input-shape=-1,8,8"), ("--input-shape", "-1,8,8"),
         store_checked=False),
    Case("bench-input-shape-zero", "bench", bench("{onnx}", "--input-shape", "0,8,8"), ("--input-shape", "0,8,8"),
         store_checked=False),
    Case("bench-contended-cores-nan", "bench", with_env("EDGEBENCH_CONTENDED_CORES", "nan", bench("{onnx}", "--input-shape", "1,8,8")),
         ("EDGEBENCH_CONTENDED_CORES='nan'", "a number >= 0"), store_checked=False),
    Case("bench-artifact-without-suffix", "bench",
         lambda ctx: ["bench", str(ctx.file("model", ctx.onnx.read_bytes())), "--input-shape", "1,8,8"],
         ("model has no suffix",), store_checked=False),
    Case("bench-artifact-a-plain-folder", "bench", bench("{tmp}", "--input-shape", "1,8,8"),
         ("is not an hls4ml artifact", "edgebench.json"), store_checked=False),
    Case("bench-onnx-empty-file", "bench", lambda ctx: ["bench", str(ctx.file("empty.onnx", b""))],
         ("empty.onnx", "holds no ONNX graph"), store_checked=False),
    Case("bench-tflite-garbage", "bench", lambda ctx: ["bench", str(ctx.file("broken.tflite", b"\x00garbage"))],
         ("broken.tflite", "not a TFLite model LiteRT can read"), store_checked=False),
    Case("bench-unknown-backend", "bench", bench("{onnx}", "--backend", "tflite_gpu", "--input-shape", "1,8,8"),
         ("tflite_gpu",), store_checked=False),
    Case("bench-npz-labels-past-the-models-classes", "bench", bench_data(x=images(10), y=np.arange(10)),
         ("labels in the data go up to 9", "gives 3 scores per image"), store_checked=False),
    Case("bench-npz-nan-pixels", "bench", bench_data(x=np.where(images(10) > 0.5, np.nan, 0).astype(np.float32), y=labels(10)),
         ("eval.npz", "NaN or infinite"), store_checked=False),
    Case("bench-npz-pickled-objects", "bench", bench_data(x=np.array([{"a": 1}], dtype=object), y=labels(1)),
         ("eval.npz",), store_checked=False),
    Case("bench-data-and-input-shape", "bench",
         lambda ctx: [*bench_data(x=images(10), y=labels(10))(ctx), "--input-shape", "3,32,32"],
         ("--data or --input-shape, not both",), store_checked=False),
    Case("bench-npz-length-mismatch", "bench", bench_data(x=images(10), y=labels(7)), ("eval.npz", "10", "7"),
         store_checked=False),
    Case("bench-npz-without-y", "bench", bench_data(x=images(10)), ("eval.npz", "'y'"), store_checked=False),
    Case("bench-data-not-npz", "bench",
         lambda ctx: ["bench", str(ctx.onnx), "--data", str(ctx.file("eval.csv", "x,y\n1,2\n"))], ("eval.csv",),
         store_checked=False),
    # --- report -------------------------------------------------------------------------------------------
    Case("report-store-not-a-database", "report", store_cmd("report", "--out", "{tmp}/rep", store=garbage_store),
         ("garbage.db", "database")),
    Case("report-out-under-a-file", "report", with_file(store_cmd("report", "--out", "{file}/rep")), ("plain-file.txt",)),
    Case("report-out-unwritable", "report", store_cmd("report", "--out", UNWRITABLE), (UNWRITABLE,)),
    Case("report-unknown-run", "report", store_cmd("report", "--run", "nope", "--out", "{tmp}/rep"), ("nope",)),
    Case("report-objective-one-metric-twice", "report",
         store_cmd("report", "--objective", "latency:p50_ms", "--out", "{tmp}/r"), ("latency:p50_ms", "twice")),
    Case("report-unknown-objective", "report", store_cmd("report", "--objective", "speed:accuracy", "--out", "{tmp}/r"),
         ("speed",)),
    # --- compare ------------------------------------------------------------------------------------------
    Case("compare-unknown-run", "compare", store_cmd("compare", "v1", "nope"), ("nope",)),
    Case("compare-a-run-with-itself", "compare", store_cmd("compare", "v1", "v1"), ("share run", "v1")),
    Case("compare-remeasure-a-run-with-itself", "compare", store_cmd("compare", "v1", "v1", "--remeasure"),
         ("share run", "v1")),
    # click's range lets inf past a lower bound: every re-measured round then failed, and the gate passed
    Case("compare-remeasure-min-time-inf", "compare", store_cmd("compare", "v1", "v2", "--remeasure", "--min-time", "inf"),
         ("--min-time inf: not a finite number",)),
    Case("compare-rounds-without-remeasure", "compare", store_cmd("compare", "v1", "v2", "--rounds", "9"),
         ("--rounds", "add --remeasure")),
    Case("compare-warn-given-twice", "compare",
         store_cmd("compare", "v1", "v2", "--warn", "latency=10", "--warn", "latency=5"),
         ("--warn latency is given twice (10 and 5)",)),
    Case("compare-bad-min-effect", "compare", store_cmd("compare", "v1", "v2", "--min-effect", "latency=fast"),
         ("latency=fast",)),
    Case("compare-nan-min-effect", "compare", store_cmd("compare", "v1", "v2", "--min-effect", "size=nan"),
         ("size=nan", ">= 0")),
    Case("compare-negative-min-effect", "compare", store_cmd("compare", "v1", "v2", "--min-effect", "accuracy=-5"),
         ("accuracy=-5", ">= 0")),
    Case("compare-nan-fail-threshold", "compare", store_cmd("compare", "v1", "v2", "--fail", "size=nan"),
         ("size=nan", ">= 0")),
    Case("compare-accuracy-fail-above-100-points", "compare", store_cmd("compare", "v1", "v2", "--fail", "accuracy=200"),
         ("accuracy=200", "at most 100")),
    Case("compare-output-under-a-file", "compare", with_file(store_cmd("compare", "v1", "v2", "-o", "{file}/c.md")),
         ("plain-file.txt",)),
    Case("compare-store-foreign-sqlite", "compare", store_cmd("compare", "v1", "v2", store=foreign_sqlite),
         ("contacts.db",)),
    # --- history ------------------------------------------------------------------------------------------
    Case("history-unknown-metric", "history", store_cmd("history", "--metric", "speed"), ("speed",)),
    Case("history-unknown-variant", "history", store_cmd("history", "--variant", "l2-0.5"),
         ("variant 'l2-0.5'", "they have: baseline")),
    Case("history-unknown-target", "history", store_cmd("history", "--target", "local-cpuu"),
         ("target 'local-cpuu'", "they have: ")),
    Case("history-out-under-a-file", "history", with_file(store_cmd("history", "--out", "{file}/h")),
         ("plain-file.txt",)),
    Case("history-store-is-a-directory", "history", store_cmd("history", store=lambda ctx: ctx.tmp), ("is a directory",),
         store_checked=False),
    # --- runs ---------------------------------------------------------------------------------------------
    Case("runs-store-not-a-database", "runs", store_cmd("runs", store=garbage_store), ("garbage.db", "database")),
    Case("runs-store-foreign-sqlite", "runs", store_cmd("runs", store=foreign_sqlite), ("contacts.db",)),
    Case("runs-store-zero-bytes", "runs", store_cmd("runs", store=lambda ctx: ctx.file("zero.db", b"")),
         ("zero.db", "empty file, not a results store")),
    Case("runs-store-unknown-scheme", "runs", lambda ctx: ["runs", "--store", "nosuchdb://x/y"], ("nosuchdb",),
         store_checked=False),
    Case("runs-store-postgres-unreachable", "runs",
         lambda ctx: ["runs", "--store", f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x"], ("127.0.0.1",),
         store_checked=False),
    Case("runs-store-newer-schema", "runs",
         store_cmd("runs", store=lambda ctx: _newer_schema(ctx)), ("newer",)),
    # --- tag ----------------------------------------------------------------------------------------------
    Case("tag-unknown-run", "tag", store_cmd("tag", "nope", "release"), ("nope",)),
    Case("delete-unknown-run", "delete", store_cmd("delete", "v1", "nope", "--yes"), ("nope",)),  # v1 stays too
    Case("delete-store-not-a-database", "delete", store_cmd("delete", "v1", "--yes", store=garbage_store),
         ("garbage.db", "database")),
    Case("tag-reserved-name", "tag", store_cmd("tag", "v1", "latest"), ("latest",)),
    Case("tag-empty-name", "tag", store_cmd("tag", "v1", " "), ("tag",)),
    Case("tag-with-a-newline", "tag", store_cmd("tag", "v1", "a\nb"), ("tag 'a\\nb'", "control character")),
    Case("tag-store-not-a-database", "tag", store_cmd("tag", "v1", "x", store=garbage_store), ("garbage.db",)),
    Case("tag-store-read-only", "tag", store_cmd("tag", "v1", "x", store=read_only_store),
         ("results.db", "readonly", "writable")),
    # --- export -------------------------------------------------------------------------------------------
    Case("export-file-and-mlflow", "export", store_cmd("export", "{tmp}/all.csv", "--mlflow", "sqlite:///{tmp}/m.db"),
         ("--mlflow", "not both")),
    Case("export-experiment-without-mlflow", "export", store_cmd("export", "{tmp}/all.csv", "--experiment", "foo"),
         ("--experiment", "--mlflow")),
    Case("export-format-other-than-the-suffix", "export", store_cmd("export", "{tmp}/a.csv", "--format", "parquet"),
         ("a.csv", "--format parquet", "name it .parquet")),
    Case("export-out-under-a-file", "export", with_file(store_cmd("export", "{file}/all.csv")), ("plain-file.txt",)),
    Case("export-out-is-a-directory", "export", store_cmd("export", "{tmp}"), ()),
    Case("export-out-unwritable", "export", store_cmd("export", UNWRITABLE + ".csv"), (UNWRITABLE,)),
    Case("export-empty-store", "export", store_cmd("export", "{tmp}/all.csv", store=lambda ctx: empty_store(ctx)),
         ("has no runs yet", "nothing to export")),
    Case("export-run-without-measurements", "export",
         store_cmd("export", "{tmp}/all.csv", store=lambda ctx: store_of_a_bare_run(ctx)),
         ("run 20261207-000000-bare01 holds no measurements yet", "nothing to export")),
    Case("export-unknown-run", "export", store_cmd("export", "{tmp}/a.csv", "--run", "nope"), ("nope",)),
    # --- import -------------------------------------------------------------------------------------------
    Case("import-a-csv-file", "import",
         lambda ctx: ["import", str(ctx.file("export.csv", "id,run_id,accuracy\n1,r,0.9\n")), "--store", str(ctx.store)],
         ("export.csv",)),
    Case("import-source-not-a-database", "import",
         lambda ctx: ["import", str(garbage_store(ctx)), "--store", str(ctx.store)], ("garbage.db",)),
    Case("import-source-a-directory", "import", lambda ctx: ["import", str(ctx.tmp), "--store", str(ctx.store)],
         ("SOURCE", "is a directory")),
    Case("import-source-missing", "import", lambda ctx: ["import", str(ctx.tmp / "gone.db"), "--store", str(ctx.store)],
         ("gone.db",)),
    Case("import-dest-under-a-file", "import",
         with_file(lambda ctx: ["import", str(ctx.store), "--store", str(ctx.tmp / UNDER_FILE / "lab.db")]),
         ("plain-file.txt",)),
    Case("import-into-read-only", "import",
         lambda ctx: ["import", str(ctx.another_store()), "--store", read_only_store(ctx)], ("results.db", "readonly")),
    Case("import-unknown-run", "import",
         lambda ctx: ["import", str(ctx.store), "--store", str(ctx.tmp / "lab.db"), "--run", "nope"], ("nope",)),
    # --- targets and doctor -------------------------------------------------------------------------------
    Case("targets-dir-missing", "targets", lambda ctx: ["targets", "--targets-dir", str(ctx.tmp / "nodir")], ("nodir",),
         store_checked=False),
    Case("targets-dir-is-a-file", "targets", with_file(lambda ctx: ["targets", "--targets-dir", str(ctx.a_file())]),
         ("plain-file.txt",), store_checked=False),
    Case("doctor-dir-missing", "doctor", lambda ctx: ["doctor", "--targets-dir", str(ctx.tmp / "nodir")], ("nodir",),
         store_checked=False),
    Case("doctor-dir-is-a-file", "doctor", with_file(lambda ctx: ["doctor", "--targets-dir", str(ctx.a_file())]),
         ("plain-file.txt",), store_checked=False),
]


def _newer_schema(ctx: Ctx) -> Path:
    path = ctx.tmp / "future.db"
    shutil.copy(ctx.store, path)
    with sqlite3.connect(path) as conn:
        conn.execute("insert into schema_version values (99, '2030-01-01T00:00:00Z', 'future')")
    conn.close()
    return path


@pytest.fixture(scope="module")
def two_tagged_runs_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results file with two tagged runs (v1, v2); each case works on its own copy."""
    path = tmp_path_factory.mktemp("store") / "results.db"
    with Store.open(path) as store:
        fill_run(store, seed=1, tags=("v1",))
        fill_run(store, seed=2, tags=("v2",))
    return path


def other_onnx(ctx: Ctx, name: str, batch: int | str = "batch", outputs: int = 1, classes: int = 10) -> Path:
    """Another tool's ONNX of 1x8x8 images: a fixed batch, a second output beside the logits, or another number of
    classes than digits' 10."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, classes)).astype(np.float32), "w")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])]
    results = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])]
    if outputs == 2:
        nodes.append(helper.make_node("Relu", ["logits"], ["aux"]))
        results.append(helper.make_tensor_value_info("aux", TensorProto.FLOAT, [batch, classes]))
    graph = helper.make_graph(nodes, "other", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 8, 8])],
                              results, [weights])
    path = ctx.tmp / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX model of 1x8x8 images -> 3 logits (Flatten + Gemm), written with onnx's helpers: no export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weights],
    )
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_battery_covers_every_command() -> None:
    commands = {"run", "variants", "bench", "report", "compare", "history", "runs", "tag", "delete", "export",
                "import", "targets", "doctor"}
    assert {c.command for c in CASES} == commands
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, two_tagged_runs_db: Path, tiny_onnx: Path, request: pytest.FixtureRequest) -> None:
    store = tmp_path / "results.db"
    shutil.copy(two_tagged_runs_db, store)
    ctx = Ctx(tmp_path, store, tiny_onnx, request)
    args = case.build(ctx)
    before = store.read_bytes()

    result = CliRunner().invoke(app, args)

    output = result.output
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    assert escaped is None, f"uncaught {type(escaped).__name__}: {escaped}\n{output}"
    assert "Traceback" not in output, output
    assert result.exit_code == case.code, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, output
    flat = " ".join(lines)
    for name in case.names:
        assert name in flat, f"{name!r} not named in: {output}"
    if case.store_checked:
        assert store.read_bytes() == before, "the store file changed"
    if case.command == "run":  # a refused run leaves no bare runs/<name>/ or report/<name>/ behind
        bare = [p for root in ("runs", "report") for p in (tmp_path / root, *(tmp_path / root).rglob("*"))
                if p.is_dir() and not any(p.iterdir())]
        assert not bare, f"empty directories left: {bare}"

