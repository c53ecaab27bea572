"""A reduced default run, end to end: train, prune while training, quantize, measure, store, report."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import update

from edgebench.config import DEFAULT_EXPERIMENT, load_experiment
from edgebench.executor.host_lanes import default_lock_dir
from edgebench.pipeline import run_experiment
from edgebench.store import Store
from edgebench.store.schema import measurements

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("e2e")
    data = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    data["name"] = "e2e"
    data["training"]["epochs"] = 3  # two pruning steps while training, then an epoch to recover
    data["pruning"].update(criteria=["l1", "mean_activation"], ratios=[0.5], prune_epochs=[0, 1])
    data["measurement"].update(min_iters=30, min_time_s=0.05, warmup_iters=5, precision=None)  # fixed windows
    data["quantization"]["precisions"] = ["fp32", "int8"]
    data["targets"] = ["local-cpu"]  # LiteRT and hls4ml have their own tests
    data["run"] = {"workdir": str(tmp / "runs")}
    data["report"]["dir"] = str(tmp / "report")
    if importlib.util.find_spec("mlflow") is not None:  # the 'mlflow' extra (bootstrap.sh --test): log the run too
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri).create_experiment("e2e", artifact_location=(tmp / "mlartifacts").as_uri())
        data["tracking"] = {"mlflow": {"uri": uri}}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    outcome = run_experiment(exp)
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id)
    return exp, outcome, df


def test_every_job_measured(reduced_run):
    _, outcome, df = reduced_run
    assert outcome.failed == []
    # 3 fp32 variants x (torch + ORT) + 3 int8 variants x ORT
    assert len(df) == 9 and set(df["status"]) == {"ok"}
    assert (df["n_samples"] >= 30).all()


def test_pruned_variants_are_smaller_by_about_the_ratio(reduced_run):
    _, _, df = reduced_run
    fp32_ort = df[(df["precision"] == "fp32") & (df["backend"] == "onnxruntime")]
    base = fp32_ort[fp32_ort["criterion"].isna()].iloc[0]
    for _, row in fp32_ort[fp32_ort["criterion"].notna()].iterrows():
        kept = sum(row["facts"]["filters"].values()) / sum(base["facts"]["filters"].values())
        assert kept == pytest.approx(0.5, abs=0.1)
        assert row["params"] < 0.6 * base["params"]
        assert row["macs"] < 0.6 * base["macs"]


def test_int8_smaller_and_fp32_matches_pytorch(reduced_run):
    _, _, df = reduced_run
    ort = df[df["backend"] == "onnxruntime"]
    fp32 = ort[ort["precision"] == "fp32"].set_index("variant_id")
    int8 = ort[ort["precision"] == "int8"]
    assert len(int8) == 3
    for _, row in int8.iterrows():
        assert row["size_bytes"] < fp32.loc[row["parent_id"], "size_bytes"]
    assert (fp32["max_abs_diff"] < 1e-4).all()


def test_every_onnx_file_says_what_it_must_be_fed(reduced_run):
    """A deployed file is fed normalised images: the mean and std the run trained with (here the training split's
    own) travel inside it, where ONNX Runtime hands them to the application (custom_metadata_map)."""
    import json

    import onnxruntime as ort

    from edgebench.api import load
    from edgebench.job import Job

    _, outcome, df = reduced_run
    spec = load(outcome.store_url, outcome.run_id).input_spec()
    assert spec is not None and spec["normalize"]["from"] == "training split"
    ort_rows = df[df["backend"] == "onnxruntime"]
    for _, row in ort_rows.iterrows():
        artifact = Job.model_validate(row["details"]["job"]).artifact
        meta = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"]).get_modelmeta()
        carried = json.loads(meta.custom_metadata_map["edgebench.input"])
        assert carried == {"layout": "NCHW", "shape": [1, 8, 8], "classes": 10, "normalize": spec["normalize"]}


def test_baseline_accuracy_well_above_chance(reduced_run):
    _, _, df = reduced_run
    base = df[df["criterion"].isna() & (df["precision"] == "fp32")]
    assert (base["accuracy"] > 0.85).all()  # chance is 0.1 on ten digits


def test_report_and_store_agree(reduced_run):
    exp, outcome, df = reduced_run
    html = Path(outcome.report_path).read_text()
    assert outcome.report_path.parent == exp.report_dir()
    for label in set(df["label"]):
        assert label in html
    pngs = list(exp.report_dir().glob("*.png"))
    assert len(pngs) >= 3 and all(p.stat().st_size > 5000 for p in pngs)
    assert "http://" not in html and "https://" not in html  # opens offline


def test_run_is_logged_to_mlflow(reduced_run):
    exp, outcome, df = reduced_run
    if exp.tracking.mlflow is None:
        pytest.skip("mlflow is not installed (the 'mlflow' extra; bootstrap.sh --test installs it)")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=exp.tracking.mlflow.uri)
    experiment = client.get_experiment_by_name("e2e").experiment_id
    parents = client.search_runs([experiment], f"tags.`edgebench.run_id` = '{outcome.run_id}'")
    assert len(parents) == 1 and "mlflow" in outcome.stage_seconds
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert sorted(c.data.tags["edgebench.label"] for c in children) == sorted(df["label"])
    assert all(c.data.metrics["latency_p50_ms"] > 0 for c in children if c.info.status == "FINISHED")
    assert "report" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}


def test_rerun_reuses_everything(reduced_run):
    exp, outcome, df = reduced_run
    mtimes = {p: p.stat().st_mtime_ns for p in (exp.workdir() / "artifacts").iterdir()}
    again = run_experiment(exp, render=False)
    assert again.run_id != outcome.run_id  # a finished run is not resumed: a new run, same cached artifacts
    assert {p: p.stat().st_mtime_ns for p in (exp.workdir() / "artifacts").iterdir()} == mtimes
    with Store.open(again.store_url) as store:
        assert len(store.measurements(again.run_id)) == len(df)
    assert os.path.exists(exp.store_url())


def test_interrupted_run_resumes_without_redoing_or_duplicating(reduced_run):
    exp, _, df = reduced_run

    def interrupt_after_four(stage: str, done: int, total: int, detail: str) -> None:
        if stage == "measure" and done == 4:
            raise KeyboardInterrupt  # what Ctrl-C does mid-sweep

    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, progress=interrupt_after_four, render=False)
    with Store.open(exp.store_url()) as store:
        interrupted = store.runs().iloc[-1]  # oldest first
    assert interrupted["status"] == "interrupted" and pd.isna(interrupted["finished_at"])
    with Store.open(exp.store_url()) as store:  # one of the four failed for the machine's sake (a full disk)
        first = store.measurements(interrupted["id"]).iloc[0]
        with store.engine.begin() as conn:
            conn.execute(update(measurements).where(measurements.c.id == int(first["id"]))
                         .values(status="failed", error="OSError: [Errno 28] No space left on device"))
    resumed = run_experiment(exp, render=False)
    assert resumed.run_id == interrupted["id"]
    # the stored failure is measured again (it was reused: the run ended with a failure it never retried)
    assert resumed.skipped == 3 and resumed.measured == len(df) - 3 and resumed.retried == 1
    assert not list(default_lock_dir().glob(f".run-{resumed.run_id}.lock"))  # a finished run's lock file is gone
    with Store.open(resumed.store_url) as store:
        rows = store.measurements(resumed.run_id)
    assert len(rows) == len(df) and rows["job_key"].is_unique and set(rows["status"]) == {"ok"}
