"""The Python API: ``edgebench.run`` on an Experiment built in Python, ``edgebench.load``, ``Results.measurements``
(one row per measurement, units in the column names), ``Results.pareto`` against a front worked out by hand, and
``Results.report``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edgebench
from edgebench.config import Experiment
from edgebench.errors import ConfigError
from edgebench.job import JobResult
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord
from edgebench.store.schema import StoreError
from edgebench.variants import PruneSpec, VariantSpec

#: (label, target, p50 ms, accuracy): on local-cpu, c is dominated by b (slower and less accurate)
POINTS = [("a", "local-cpu", 1.0, 0.90), ("b", "local-cpu", 2.0, 0.95), ("c", "local-cpu", 3.0, 0.93),
          ("d", "local-cpu", 0.5, 0.80), ("e", "board", 4.0, 0.70), ("f", "board", 5.0, 0.60)]


@pytest.fixture
def hand_made_store(tmp_path):
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        run_id = store.start_run("hand", {"name": "hand"}, "h", {"cpu_model": "test"})
        for i, (label, target, p50, accuracy) in enumerate(POINTS):
            spec = VariantSpec(model="digits_cnn", dataset="digits", prune=PruneSpec(criterion="l1", ratio=0.1 + i / 10))
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), label, None, {"macs": 1000 - i, "params": 10})
            result = JobResult(job_id=label, status="ok", accuracy=accuracy, latency_ms={"p50": p50, "p99": 2 * p50},
                               latency_ci_ms={"p50": (0.99 * p50, 1.02 * p50)}, samples_ns=[int(p50 * 1e6)] * 3,
                               peak_rss_mb=100.0 + i)
            store.add_measurement(MeasurementRecord(run_id, label, spec.id, target, "onnxruntime", result,
                                                    {"threads": 1, "precision": "fp32"}, 2048 + i))
        store.add_measurement(MeasurementRecord(run_id, "failed", spec.id, "local-cpu", "torch",
                                                JobResult(job_id="failed", status="failed", error="boom"), {}, None))
    return path


def test_pareto_is_the_front_worked_out_by_hand(hand_made_store):
    results = edgebench.load(hand_made_store)
    front = results.pareto("latency", "accuracy")
    assert list(front["label"]) == ["d", "a", "b", "e"]  # per target, sorted by latency; c and f are dominated
    assert list(results.pareto("latency", "accuracy", target="board")["label"]) == ["e"]
    assert list(results.pareto("memory", "accuracy", target="local-cpu")["label"]) == ["a", "b"]
    with pytest.raises(StoreError, match="no measurements on target 'jetson'; it has: board, local-cpu"):
        results.pareto(target="jetson")
    with pytest.raises(StoreError, match="no measurement of run .* on target 'board' has energy .*energy meter"):
        results.pareto("energy", "accuracy", target="board")  # the target exists; no energy was measured there
    with pytest.raises(StoreError, match="accuracy and accuracy name one metric twice"):
        results.pareto("accuracy", "accuracy")  # it returned every point as a "front"


def test_notes_say_what_the_run_summary_says(hand_made_store):
    """The summary's lines (here: a window that ended at max_time_s short of the precision) were printed by the CLI
    alone; a Python user and a later reader of the report never saw them."""
    with Store.open(hand_made_store) as store:
        run_id = store.runs()["id"].iloc[0]
        spec = VariantSpec(model="digits_cnn", dataset="digits")
        window = {"stopped": "max_time", "precision": 0.01, "precision_met": False}
        result = JobResult(job_id="slow", status="ok", accuracy=0.5, latency_ms={"p50": 1.0}, samples_ns=[10**6] * 3,
                           details={"window": window})
        store.upsert_variant(spec.id, spec.model_dump(mode="json"), "slow", None, {"macs": 1, "params": 1})
        store.add_measurement(MeasurementRecord(run_id, "slow", spec.id, "local-cpu", "onnxruntime", result,
                                                {"threads": 1}, 100))
    results = edgebench.load(hand_made_store)
    note = "timing: 1 of 7 timed windows ended before their interval reached measurement.precision: slow on local-cpu/onnxruntime (max_time)"
    assert results.notes() == [note]
    html = results.report(hand_made_store.parent / "report").read_text()
    assert "<h2>Notes (1)</h2>" in html and "1 of 7 timed windows ended before their interval reached" in html


def test_measurements_one_row_each_with_units_in_column_names(hand_made_store):
    results = edgebench.load(hand_made_store, run="latest")
    df = results.measurements()
    assert len(df) == len(POINTS) and set(df["status"]) == {"ok"}
    assert len(results.measurements(include_failed=True)) == len(POINTS) + 1
    row = df.set_index("label").loc["c"]
    assert row["latency_p50_ms"] == 3.0 and row["latency_p99_ms"] == 6.0 and row["size_bytes"] == 2050
    assert (row["latency_p50_low_ms"], row["latency_p50_high_ms"]) == pytest.approx((2.97, 3.06))  # its interval
    assert row["latency_p99_low_ms"] is None or row["latency_p99_low_ms"] != row["latency_p99_low_ms"]  # none kept
    assert row["peak_rss_mb"] == 102.0 and row["macs"] == 998 and row["n_samples"] == 3
    assert row["criterion"] == "l1" and row["ratio"] == pytest.approx(0.3) and row["kind"] == "structured"
    assert row["origin"] == "edgebench" and row["precision"] == "fp32"
    assert not {"spec", "facts", "details", "settings", "p50_ms"} & set(df.columns)  # flattened, units named
    assert df["energy_j_per_inference"].isna().all() and df["energy_j_per_inference"].dtype.kind == "f"  # no meter
    assert df["sparsity"].dtype.kind == df["rank_ratio"].dtype.kind == df["ratio"].dtype.kind == "f"  # none: NaN


def test_load_of_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        edgebench.load(tmp_path / "nothing.db")
    with pytest.raises(StoreError, match="no results store at sqlite:///"):  # as a URL too: it was created empty
        edgebench.load(f"sqlite:///{tmp_path / 'nothing.db'}")
    assert not (tmp_path / "nothing.db").exists()


def test_experiment_built_in_python_gets_the_file_checks(tmp_path):
    with pytest.raises(ConfigError, match=r"experiment: model.name: unknown value 'resnet9000'"):
        edgebench.run(Experiment.model_validate({"model": {"name": "resnet9000"}}))
    # a mapping of the file's fields, as a notebook writes one: the file's one-line errors too
    with pytest.raises(ConfigError, match=r"experiment: model.name: unknown value 'resnet9000'"):
        edgebench.run({"model": {"name": "resnet9000"}})
    with pytest.raises(ConfigError, match=r"^run\(experiment\): training.epoch: unknown field .* allowed: epochs"):
        edgebench.run({"training": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"^run\(experiment\): training.epochs: a number is expected, not true"):
        edgebench.run({"training": {"epochs": True}})


@pytest.mark.slow
def test_run_an_experiment_object_and_read_it_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = Experiment.model_validate({
        "name": "api", "training": {"epochs": 1}, "pruning": {"criteria": []},
        "quantization": {"precisions": ["fp32"]}, "targets": ["local-cpu"],
        "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None},  # fixed windows
    })
    results = edgebench.run(exp, tags="api-test", render=False)  # one tag, as a bare string
    assert results.outcome is not None and results.outcome.failed == [] and results.report_path is None
    df = results.measurements()
    assert sorted(df["backend"]) == ["onnxruntime", "torch"] and (df["latency_p50_ms"] > 0).all()
    assert (df["label"] == "baseline/fp32").all() and df["accuracy"].between(0.1, 1).all()
    again = edgebench.load(tmp_path / "runs" / "api" / "results.db", run="api-test")
    with Store.open(again.store_url) as store:
        assert store.runs()["tags"].tolist() == ["api-test"]
    assert again.run_id == results.run_id and again.measurements().equals(df)
    elsewhere = tmp_path / "elsewhere"  # a notebook's %cd: the results are still those of the run's store
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert results.measurements().equals(df) and not (elsewhere / "runs").exists()
    index = again.report(tmp_path / "report")
    assert index == tmp_path / "report" / "index.html" and index.stat().st_size > 1000
    # what a deployment must feed the artifacts: the digits training split's own statistics (no normalize declared)
    from edgebench.data import DATASETS

    raw = DATASETS.get("digits")()  # the loader's [0, 1] pixels, before edgebench standardises them
    spec = again.input_spec()
    assert spec["shape"] == [1, 8, 8] and spec["classes"] == 10 and spec["normalize"]["from"] == "training split"
    # the chance level the run's notes read accuracies against: the test split's most common class's share
    counts = [int((raw.y_test == c).sum()) for c in range(10)]
    assert spec["majority_class_rate"] == pytest.approx(max(counts) / len(raw.y_test))
    assert spec["normalize"]["mean"] == pytest.approx([raw.x_train.mean()], rel=1e-5)
    assert spec["normalize"]["std"] == pytest.approx([raw.x_train.std() + 1e-6], rel=1e-5)
    assert "(pixel in [0, 1] - mean) / std" in index.read_text()


SCRIPTS = {
    "unguarded.py": "import edgebench\n\nedgebench.run('missing.yaml')\n",
    "unguarded_main_function.py": "import edgebench\n\ndef main():\n    edgebench.run('missing.yaml')\n\nmain()\n",
    "guarded.py": "import edgebench\n\nif __name__ == '__main__':\n    edgebench.run('missing.yaml')\n",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_that_runs_at_its_top_level_is_refused_naming_the_line(tmp_path, name):
    """Spawned workers import the main script: an unguarded run() would start again in each and wait for the
    cores its parent holds. The refusal comes before any work; a guarded script gets on to its real problem."""
    script = tmp_path / name
    script.write_text(SCRIPTS[name])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    if name == "guarded.py":
        assert "missing.yaml" in last and "__main__" not in last, last
    else:
        line = 3 if name == "unguarded.py" else 6
        assert f"{script}:{line}: edgebench.run() is called at the script's top level" in last, last
        assert 'if __name__ == "__main__":' in last and not (tmp_path / "runs").exists()


SCRIPT_MODEL = """
import edgebench
from edgebench.config import Experiment
from torch import nn


class Net(nn.Module):  # a class of the script's own: pickled in one worker, read back in another
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def build(num_classes=10, in_channels=1):
    return Net(num_classes, in_channels)


EXPERIMENT = {"name": "script", "model": {"name": "__main__:build"}, "training": {"epochs": 1},
              "pruning": {"criteria": ["l1"], "ratios": [0.5], "allocation": ["uniform"]},
              "quantization": {"precisions": ["fp32"]}, "targets": ["local-cpu"],
              "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None}}

if __name__ == "__main__":
    results = edgebench.run(Experiment.model_validate(EXPERIMENT), render=False)
    print("failed", len(results.outcome.failed), "measured", len(results.measurements()))
"""


@pytest.mark.slow
def test_a_model_the_running_script_defines_is_named_main_and_built_in_every_worker(tmp_path):
    """``model: {name: "__main__:build"}`` passed the checks in the script's process, then every build failed in
    the workers ("module '__main__' has no attribute 'build'; it defines spawn_main"): their ``__main__`` is
    multiprocessing's. Defined interactively (python -c, a notebook), it is refused before any work."""
    script = tmp_path / "bench_my_net.py"
    script.write_text(SCRIPT_MODEL)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "failed 0 measured 4", done.stdout + done.stderr[-3000:]
    inline = SCRIPT_MODEL.replace('if __name__ == "__main__":', "if True:").replace('"script"', '"inline"')
    done = subprocess.run([sys.executable, "-c", inline], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "'__main__:build' names an object defined interactively (a notebook, a REPL, python -c)" in done.stderr, \
        done.stderr[-3000:]
    assert done.returncode == 1 and not (tmp_path / "runs" / "inline").exists()


def test_a_worker_importing_an_unguarded_script_exits_with_the_fix(tmp_path):
    """The backstop: a run() the source check cannot see (here: only in spawned children) ends the child with one
    line instead of waiting forever."""
    script = tmp_path / "spawns.py"
    script.write_text(
        "import multiprocessing, edgebench\n"
        "if multiprocessing.current_process().name != 'MainProcess':  # the spawned child\n"
        "    edgebench.run('missing.yaml')\n"
        "if __name__ == '__main__':\n"
        "    child = multiprocessing.get_context('spawn').Process(target=print)\n"
        "    child.start(); child.join(60)\n"
        "    print('child exit', child.exitcode)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert "child exit 1" in done.stdout, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: edgebench.run() was called while a worker process imported your script"), done.stderr


def _store_of(path, rows):
    """(label, target, p50 ms, accuracy, energy J, energy source, bops) measurements in one run."""
    with Store.open(path) as store:
        run_id = store.start_run("hand", {"name": "hand"}, "h", {"cpu_model": "test"})
        for i, (label, target, p50, accuracy, joules, source, bops) in enumerate(rows):
            spec = VariantSpec(model="digits_cnn", dataset="digits", prune=PruneSpec(criterion="l1", ratio=0.1 + i / 10))
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), label, None, {"macs": 1000, "params": 10})
            result = JobResult(job_id=label, status="ok", accuracy=accuracy, latency_ms={"p50": p50},
                               samples_ns=[int(p50 * 1e6)] * 3 if p50 < float("inf") else [],
                               energy_j_per_inference=joules, energy_source=source,
                               details={"hls4ml": {"bit_operations": {"bops": bops}}} if bops else {})
            store.add_measurement(MeasurementRecord(run_id, label, spec.id, target, "onnxruntime", result,
                                                    {"threads": 1, "precision": "fp32"}, 2048))
    return path


def test_fpga_fronts_on_bit_operations_energy_kinds_apart_and_infinite_figures_left_out(tmp_path):
    """By hand: on the C simulation, host p50 runs opposite to the bit operations, and the front is on the latter
    (the host's p50 says nothing of the FPGA): x3 (fewest BOPs) and x1 (most accurate); x2 is dominated by neither
    (fewer BOPs than x1, more accurate than x3): all three. On the board, the estimated 0.5 mJ would dominate the
    measured 1 mJ of m1 (less accurate): measured figures alone make the front. An infinite p50 is no point."""
    rows = [("x1", "fpga", 0.1, 0.97, None, None, 4e8), ("x2", "fpga", 0.2, 0.96, None, None, 2e8),
            ("x3", "fpga", 0.3, 0.95, None, None, 1e8),
            ("m1", "board", 1.0, 0.95, 1e-3, "measured:rapl", None), ("m2", "board", 1.0, 0.90, 2e-3, "measured:rapl", None),
            ("e1", "board", 1.0, 0.97, 5e-4, "estimated:tdp-x-cpu-util", None),
            ("inf", "cpu", float("inf"), 0.99, None, None, None), ("c1", "cpu", 1.0, 0.90, None, None, None)]
    results = edgebench.load(_store_of(tmp_path / "r.db", rows))
    assert list(results.pareto("latency", "accuracy", target="fpga")["label"]) == ["x1", "x2", "x3"]
    assert list(results.pareto("latency", "accuracy", target="cpu")["label"]) == ["c1"]
    energy = results.pareto("energy", "accuracy", target="board")
    assert list(energy["label"]) == ["m1"]  # m2: more energy, less accurate; e1 only estimated beside measured ones
    with pytest.raises(StoreError, match=r"has energy \(null where it was not measured: energy needs an energy meter"):
        results.pareto("energy", "accuracy", target="cpu")
    with pytest.raises(StoreError, match=r"has memory \(null where it was not measured\)$"):
        results.pareto("memory", "accuracy", target="cpu")


def test_an_experiment_built_in_python_with_a_bad_field_raises_the_one_line_error() -> None:
    """README: bad input raises EdgebenchError with the CLI's one line; Experiment(training={"epochs": -1}) raised
    pydantic's multi-line ValidationError, which `except EdgebenchError` does not catch."""
    from edgebench.config import Experiment
    from edgebench.errors import EdgebenchError

    with pytest.raises(EdgebenchError, match=r"^Experiment\(\.\.\.\): training\.epochs: .*greater than or equal to 0"):
        Experiment(training={"epochs": -1})
    with pytest.raises(EdgebenchError, match="training.epoch: unknown field .* allowed: epochs"):
        Experiment(training={"epoch": 3})
    assert Experiment(training={"epochs": 2}).training.epochs == 2


def _with(**fields: object):
    """The built-in experiment with ``fields`` set by assignment, as a notebook does after loading it."""
    from edgebench.config import load_experiment

    exp = load_experiment(None)
    for name, value in fields.items():
        setattr(exp, name, value)
    return exp


@pytest.mark.parametrize(("call", "message"), [
    (lambda db: edgebench.load(5), r"load\(store\): expected a results file's path .* got int 5"),
    (lambda db: edgebench.load(db, run=None), r"load\(run=\.\.\.\): expected a run id.* got NoneType"),
    (lambda db: edgebench.load(db, run=""), r"load\(run=\.\.\.\): expected a run id.* got str ''"),
    (lambda db: edgebench.load(db).pareto(target=["local-cpu"]), r"pareto\(target=\.\.\.\): expected one target"),
    (lambda db: edgebench.load(db).report(None), r"report\(directory\): expected a directory path"),
    (lambda db: edgebench.load(db).report(db.parent / "r", objectives="latency:accuracy"),
     r"report\(objectives=\.\.\.\): expected \(x, y\) pairs"),
    (lambda db: edgebench.load(db).report(db.parent / "r", objectives=[("latency", "accuracy", "size")]),
     r"report\(objectives=\.\.\.\): expected \(x, y\) pairs"),
    (lambda db: edgebench.run(5), r"run\(experiment\): expected an Experiment, a mapping.* got int 5"),
    (lambda db: edgebench.run(None, tags=5), r"run\(tags=\.\.\.\): expected a tag or a list of tags"),
    # a TypeError once the run was stored and trained, the run left 'running'
    (lambda db: edgebench.run(None, progress="x"), r"run\(progress=\.\.\.\): expected a function .* got str 'x'"),
    (lambda db: edgebench.run(None, render="no"), r"run\(render=\.\.\.\): expected True or False, got str 'no'"),
    (lambda db: edgebench.run({1: 2}), r"^run\(experiment\): 1 is not a field name"),  # was pydantic's TypeError
    # fields set after the Experiment was built were not validated: this run wrote its store outside runs/
    (lambda db: edgebench.run(_with(name="../escape")), r"^run\(experiment\): name: '\.\./escape' is not a plain name"),
    (lambda db: edgebench.run(_with(training=None)), r"^run\(experiment\): training: Input should be a valid"),
], ids=["load-store-int", "load-run-none", "load-run-empty", "pareto-target-list", "report-dir-none",
        "report-objectives-text", "report-objectives-triple", "run-int", "run-tags-int", "run-progress-text",
        "run-render-text", "run-int-key", "run-name-set-later", "run-block-set-to-none"])
def test_an_argument_of_the_wrong_type_raises_the_one_line_error_naming_it(hand_made_store, call, message) -> None:
    """README: bad input raises EdgebenchError; these raised TypeErrors from pathlib, SQLAlchemy and pandas, a
    ValueError from unpacking, or (run="") loaded the latest run."""
    with pytest.raises(ConfigError, match=message):
        call(hand_made_store)
