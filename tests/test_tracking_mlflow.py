"""MLflow tracking: stored runs logged to a real MLflow tracking store (SQLite backend) and to a real `mlflow server`
on 127.0.0.1 (the HTTP path, through `edgebench export --mlflow`), read back through MLflow's own client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import typer
from store_fixtures import FAILED_ERROR, fill_run
from typer.testing import CliRunner

from edgebench.cli.common import friendly_errors
from edgebench.cli.store import register
from edgebench.report import render_report
from edgebench.store import Store
from edgebench.tracking.mlflow_log import RUN_TAG, flat_params, log_run

mlflow = pytest.importorskip("mlflow", reason="mlflow is the 'mlflow' extra (bootstrap.sh --test installs it)")


def _client(uri: str):
    return mlflow.tracking.MlflowClient(tracking_uri=uri)


def _sqlite_uri(tmp_path: Path) -> str:
    """A SQLite tracking store whose experiment keeps its artifacts under tmp_path (not in the working directory)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _client(uri).create_experiment("synthetic", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri


def _children(client, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                              max_results=1000)


def test_run_logged_with_nested_runs_metrics_params_and_artifacts(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    store, run_id = filled_store
    report = render_report(store, run_id, tmp_path / "report").parent
    uri = _sqlite_uri(tmp_path)
    parent_id, logged = log_run(store, run_id, uri, report_dir=report)
    df = store.measurements(run_id)
    assert logged == len(df) == 21

    client = _client(uri)
    parent = client.get_run(parent_id)
    assert parent.data.tags[RUN_TAG] == run_id and parent.info.status == "FINISHED"
    assert parent.data.tags["cpu_model"] == "Synthetic CPU @ 2.0GHz"
    children = _children(client, parent)
    assert len(children) == 21
    by_name = {c.info.run_name: c for c in children}
    row = df[(df["label"] == "l1-0.5-while_training/int8") & (df["backend"] == "onnxruntime")].iloc[0]
    child = by_name["l1-0.5-while_training/int8 @ local-cpu · onnxruntime"]
    assert child.data.params["variant.prune.criterion"] == "l1" and child.data.params["variant.prune.ratio"] == "0.5"
    assert child.data.params["variant.quant.precision"] == "int8" and child.data.params["threads"] == "1"
    metrics = child.data.metrics
    assert metrics["latency_p50_ms"] == pytest.approx(row["p50_ms"]) and metrics["accuracy"] == pytest.approx(row["accuracy"])
    assert metrics["latency_p99_ms"] == pytest.approx(row["p99_ms"]) and metrics["size_bytes"] == row["size_bytes"]
    assert metrics["macs"] == pytest.approx(row["macs"]) and metrics["peak_rss_mb"] == pytest.approx(row["peak_rss_mb"])
    assert "energy_j_per_inference" not in metrics  # not measured here: never logged as 0
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["edgebench.error"] == FAILED_ERROR

    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert f"{run_id}.csv" in artifacts and "report" in artifacts
    assert "report/index.html" in {a.path for a in client.list_artifacts(parent_id, "report")}
    csv = pd.read_csv(client.download_artifacts(parent_id, f"{run_id}.csv", str(tmp_path / "dl")))
    assert len(csv) == 21 and set(csv["variant_id"]) == set(df["variant_id"])

    assert log_run(store, run_id, uri, report_dir=report) == (parent_id, 0)  # logged once, not twice


def test_flat_params() -> None:
    spec = {"model": "m", "prune": {"criterion": "l1", "prune_epochs": [2, 4], "criterion_kwargs": {}}, "sparse": None}
    assert flat_params(spec, "variant.") == {"variant.model": "m", "variant.prune.criterion": "l1",
                                             "variant.prune.prune_epochs": "[2, 4]"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts under tmp_path), stopped after."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts")]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:  # the server and the workers it started: its own process group
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


def test_export_to_a_real_mlflow_server_over_http(sqlite_store: Store, mlflow_server: str, tmp_path: Path) -> None:
    first = fill_run(sqlite_store, seed=1, tags=("main",))
    second = fill_run(sqlite_store, seed=2, tags=("pr",), fail_one=False)
    app = typer.Typer()
    register(app, friendly_errors)
    args = ["export", "--store", sqlite_store.url.removeprefix("sqlite:///"), "--mlflow", mlflow_server,
            "--experiment", "edgebench-ci"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"run {first} -> MLflow run" in done.output and "21 nested runs" in done.output and "20 nested runs" in done.output

    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name("edgebench-ci")
    parents = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` IS NULL")
    assert sorted(p.data.tags[RUN_TAG] for p in parents) == sorted([first, second])
    pr = next(p for p in parents if p.data.tags[RUN_TAG] == second)
    children = _children(client, pr)
    assert len(children) == 20 and all("latency_p50_ms" in c.data.metrics for c in children)
    csv = client.download_artifacts(pr.info.run_id, f"{second}.csv", str(tmp_path / "dl"))
    assert len(pd.read_csv(csv)) == 20  # the artifact went through the server's proxy

    again = CliRunner().invoke(app, [*args, "--run", "pr"])
    assert again.exit_code == 0 and "already there, skipped" in again.output
    assert len(client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` IS NULL")) == 2


def test_export_needs_a_file_or_mlflow(sqlite_store: Store) -> None:
    app = typer.Typer()
    register(app, friendly_errors)
    fill_run(sqlite_store)
    done = CliRunner().invoke(app, ["export", "--store", sqlite_store.url.removeprefix("sqlite:///")])
    assert done.exit_code == 2 and "export needs an output file (.csv or .parquet) or --mlflow URI" in done.output


def test_a_file_store_is_refused_in_one_line_unless_mlflow_allows_it(filled_store: tuple[Store, str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses its file store without MLFLOW_ALLOW_FILE_STORE=true: said before logging (and, for a
    run's tracking section, before training), not as a traceback after the measurements; with it, the run logs."""
    store, run_id = filled_store
    app = typer.Typer()
    register(app, friendly_errors)
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    done = CliRunner().invoke(app, ["export", "--mlflow", uri, "--store", store.url.removeprefix("sqlite:///")])
    assert done.exit_code == 2, done.output
    assert "is an MLflow file store" in done.output and "MLFLOW_ALLOW_FILE_STORE=true" in done.output
    assert "Traceback" not in done.output and not (tmp_path / "mlruns").exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    parent_id, logged = log_run(store, run_id, uri, "file-store")
    assert logged == len(store.measurements(run_id)) and _client(uri).get_run(parent_id).info.status == "FINISHED"


def test_export_attaches_a_report_only_when_its_page_is_the_runs_own(filled_store: tuple[Store, str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stored with `edgebench run --no-report` got the page an earlier run of its name had rendered into the
    folder both share, logged in MLflow as its report."""
    import re

    store, run_id = filled_store
    app = typer.Typer()
    register(app, friendly_errors)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "reports" / store.get_run(run_id)["name"]
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<title>edgebench report — synthetic (20250101-000000-0ther0)</title>")
    logged = {}
    for attempt in ("another run's page", "its own page"):
        uri = f"sqlite:///{tmp_path / (attempt.replace(' ', '_') + '.db')}"
        done = CliRunner().invoke(app, ["export", "--mlflow", uri, "--store", store.url.removeprefix("sqlite:///")])
        assert done.exit_code == 0, done.output
        parent = re.search(r"-> MLflow run (\w+)", done.output).group(1)
        logged[attempt] = {a.path for a in _client(uri).list_artifacts(parent)}
        render_report(store, run_id, folder)
    assert "report" not in logged["another run's page"] and f"{run_id}.csv" in logged["another run's page"]
    assert "report" in logged["its own page"]


@pytest.mark.parametrize("uri,named", [("htp://127.0.0.1:5000", "no tracking URI MLflow knows (scheme 'htp')"),
                                       ("mysql://u@127.0.0.1/db", "needs a database driver")])
def test_a_tracking_uri_mlflow_cannot_open_is_one_line_before_anything_is_logged(
        filled_store: tuple[Store, str], uri: str, named: str) -> None:
    """A typo of http (or a database without its driver) passed the check and ended a finished run in a traceback
    with exit 1, the exit code of a failed gate."""
    store, _ = filled_store
    app = typer.Typer()
    register(app, friendly_errors)
    done = CliRunner().invoke(app, ["export", "--mlflow", uri, "--store", store.url.removeprefix("sqlite:///")])
    assert done.exit_code == 2 and named in done.output and "Traceback" not in done.output, done.output


def test_a_tracking_server_that_fails_is_one_line_naming_the_stored_run(filled_store: tuple[Store, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the URI's port: a TrackingError (exit 2) saying the run is stored and how to log it later."""
    from edgebench.errors import TrackingError

    store, run_id = filled_store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError, match=rf"logging run {run_id} to MLflow at {uri} failed: .*the run is stored") as err:
        log_run(store, run_id, uri, experiment="edge-costs")
    # the command it names runs as printed once a server answers (here a SQLite tracking store stands in for it):
    # it names the store and the experiment (it lacked both: "no results store at runs/default/results.db")
    import shlex

    from typer.testing import CliRunner

    from edgebench.cli import app

    command = shlex.split(str(err.value).split("`")[1])
    assert command[:2] == ["edgebench", "export"] and "--store" in command and "edge-costs" in command
    working = f"sqlite:///{store.url.removeprefix('sqlite:///')}.mlflow.db"
    monkeypatch.chdir(Path(store.url.removeprefix("sqlite:///")).parent)  # MLflow puts its artifacts in ./mlruns
    done = CliRunner().invoke(app, [working if arg == uri else arg for arg in command[1:]])
    assert done.exit_code == 0, done.output
    assert _client(working).get_experiment_by_name("edge-costs") is not None


def test_a_tracking_database_that_is_down_fails_the_log_at_once_without_its_password(
        filled_store: tuple[Store, str]) -> None:
    """MLflow's engine retried a database that does not answer for 100 s before the run's log failed; the check
    says so in one connection attempt, and the command it prints hides the password."""
    from edgebench.errors import TrackingError

    store, run_id = filled_store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"postgresql://team:secret@127.0.0.1:{port}/mlflow"
    with pytest.raises(TrackingError, match=rf"no postgresql server answers at postgresql://team:\*\*\*@127.0.0.1:{port}"
                                            r"/mlflow .*the run is stored: log it again") as err:
        log_run(store, run_id, uri)
    assert "secret" not in str(err.value) and "(with the passwords where it shows ***)" in str(err.value)


def test_an_estimated_energy_is_logged_under_a_metric_of_its_own() -> None:
    """An estimate was logged as energy_j_per_inference, the metric a counter's reading goes to (a tag apart)."""
    from edgebench.tracking.mlflow_log import _metrics

    def row(source: str | None, joules: float | None) -> pd.Series:
        return pd.Series({"accuracy": 0.9, "energy_j_per_inference": joules, "energy_source": source})

    assert _metrics(row("estimated:tdp-x-cpu-util", 1.5e-4)) == {"accuracy": 0.9,
                                                                 "energy_estimated_j_per_inference": 1.5e-4}
    assert _metrics(row("measured:rapl", 2e-4)) == {"accuracy": 0.9, "energy_j_per_inference": 2e-4}
    assert _metrics(row(None, None)) == {"accuracy": 0.9}


def test_a_log_that_failed_part_way_is_completed_by_the_command_it_prints(filled_store: tuple[Store, str],
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The printed `edgebench export --mlflow` said 'already there, skipped' and left 3 of 21 nested runs."""
    from mlflow.tracking import MlflowClient

    from edgebench.errors import TrackingError
    from edgebench.tracking.mlflow_log import JOB_TAG

    store, run_id = filled_store
    uri = _sqlite_uri(tmp_path)
    real, calls = MlflowClient.log_batch, []

    def reset_on_the_fifth(self, run_id_, *args, **kwargs):
        calls.append(run_id_)
        if len(calls) == 5:
            raise ConnectionResetError("connection reset by peer")
        return real(self, run_id_, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", reset_on_the_fifth)
    with pytest.raises(TrackingError, match="log it again with `edgebench export --mlflow"):
        log_run(store, run_id, uri)
    monkeypatch.setattr(MlflowClient, "log_batch", real)
    parent_id, logged = log_run(store, run_id, uri)
    client = _client(uri)
    children = _children(client, client.get_run(parent_id))
    assert logged == 21 - 3 and client.get_run(parent_id).info.status == "FINISHED"  # 3 were in before the reset
    # each measurement once, in full; the nested run the reset interrupted is gone
    assert sorted(c.data.tags[JOB_TAG] for c in children) == sorted(store.measurements(run_id)["job_key"])
    assert log_run(store, run_id, uri) == (parent_id, 0)


def test_a_run_logged_in_full_before_job_key_tags_is_left_as_it_is(filled_store: tuple[Store, str],
                                                                    tmp_path: Path) -> None:
    """Nested runs an earlier edgebench logged carry no job key: a finished parent's are not logged again."""
    from edgebench.tracking.mlflow_log import JOB_TAG

    store, run_id = filled_store
    uri = _sqlite_uri(tmp_path)
    parent_id, _ = log_run(store, run_id, uri)
    client = _client(uri)
    for child in _children(client, client.get_run(parent_id)):
        client.delete_tag(child.info.run_id, JOB_TAG)
    assert log_run(store, run_id, uri) == (parent_id, 0)
    assert len(_children(client, client.get_run(parent_id))) == len(store.measurements(run_id))
