"""Log stored edgebench runs to MLflow (extra ``mlflow``): one MLflow run per edgebench run, a nested run per
measurement (variant x target x backend x settings).

Nested runs carry the variant spec and the target settings as params, and accuracy, p50/p90/p99, throughput,
size, MACs, energy (null is never logged as 0; an estimate as ``energy_estimated_j_per_inference``), peak RSS as
metrics; the parent carries
the run's context and, as artifacts, the HTML report directory and the CSV export. Everything goes through
``MlflowClient`` (no global active run), in batches. A run already logged to the tracking server (its parent's
tag ``edgebench.run_id``) is not logged twice; a log that failed part-way, or of a run since resumed, is completed
(each nested run's tag ``edgebench.job_key`` says which measurement it holds).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from sqlalchemy.engine import make_url

from edgebench.errors import ConfigError, EdgebenchError, TrackingError, first_line, require_module
from edgebench.paths import why_unwritable
from edgebench.store import Store
from edgebench.store.connection import shown_url
from edgebench.store.transfer import export_runs

log = logging.getLogger(__name__)

RUN_TAG = "edgebench.run_id"
#: a nested run's measurement (set once it is logged in full): a repeated log adds only the missing ones
JOB_TAG = "edgebench.job_key"
#: MLflow metric name -> store column (values as stored: ms, bytes, joules, MB)
METRIC_COLUMNS = {
    "accuracy": "accuracy", "latency_p50_ms": "p50_ms", "latency_p90_ms": "p90_ms", "latency_p99_ms": "p99_ms",
    "throughput_ips": "throughput_ips", "size_bytes": "size_bytes", "macs": "macs", "params": "params",
    "energy_j_per_inference": "energy_j_per_inference", "peak_rss_mb": "peak_rss_mb",
}  # fmt: skip
_SETTINGS = ("target", "backend", "threads", "batch_size", "scenario")


def check_uri(uri: str, where: str) -> None:
    """ConfigError naming ``where`` for a tracking URI MLflow would refuse at the end of a run: a file store
    (``file:`` or a plain path), which MLflow 3 keeps in maintenance mode and opens only with
    ``MLFLOW_ALLOW_FILE_STORE=true``."""
    if urlparse(uri).scheme not in ("", "file"):
        _check_scheme(uri, where)
        return
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return
    raise ConfigError(f"{where}: '{uri}' is an MLflow file store, which MLflow keeps in maintenance mode and refuses "
                      "unless MLFLOW_ALLOW_FILE_STORE=true is set; use a database, e.g. sqlite:///mlflow.db, or a "
                      "tracking server (http://host:5000), or set that variable")


#: default ports of the database servers MLflow keeps runs in (a URL without a port)
_DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def check_server(uri: str, where: str) -> None:
    """ConfigError where the tracking store cannot be reached: nothing listens at an http(s) URI or at a database
    URL's host and port, or a SQLite file's directory cannot be written. Checked before a run's training: met at
    its end, a server that is down cost the whole run, and a database MLflow's engine retries for 100 s first."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _listening(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80), uri, where,
                   "MLflow tracking server")
    elif parsed.scheme.startswith("sqlite"):
        database = make_url(uri).database
        local = database and database != ":memory:" and not database.startswith("file:")
        if local and (problem := why_unwritable(Path(database).expanduser().absolute().parent)):
            raise ConfigError(f"{where}: {uri}: {problem}; give a SQLite file where it can be written") from None
    elif (dialect := parsed.scheme.split("+")[0]) in _DATABASE_PORTS and (url := make_url(uri)).host:
        _listening(url.host, url.port or _DATABASE_PORTS[dialect], shown_url(uri), where, f"{dialect} server")


def _listening(host: str, port: int, uri: str, where: str, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(f"{where}: no {what} answers at {uri} ({exc.strerror or exc}); start it, or correct the "
                          "host and port") from None


def _check_scheme(uri: str, where: str) -> None:
    """ConfigError for a URI MLflow has no store for (a typo: ``htp://``) or whose database driver is missing."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
    except ImportError:  # the missing extra is reported on its own
        return
    try:
        builder = _tracking_store_registry.get_store_builder(uri)
    except Exception:
        raise ConfigError(f"{where}: '{uri}' is no tracking URI MLflow knows (scheme '{urlparse(uri).scheme}'); use "
                          "http(s)://host:port, sqlite:///mlflow.db or another database URL") from None
    if builder.__name__ == "_get_sqlalchemy_store":  # a database: its driver must be importable
        try:
            make_url(uri).get_dialect().import_dbapi()
        except Exception as exc:
            raise ConfigError(f"{where}: '{uri}' needs a database driver that cannot be loaded here "
                              f"({type(exc).__name__}: {first_line(exc)}); install it") from None


#: MLflow's HTTP retry defaults (7 retries, backoff factor 2) spent 4 minutes on a server that went away before
#: saying so; a user's own settings of these variables win
_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def _client(uri: str) -> Any:
    mlflow = require_module("mlflow", "mlflow", "MLflow tracking")
    for name, value in _HTTP_RETRIES.items():
        os.environ.setdefault(name, value)
    return mlflow.tracking.MlflowClient(tracking_uri=uri)


def flat_params(spec: dict[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """A nested spec as MLflow params: dotted keys, JSON for lists, values cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for key, value in (spec or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        elif value is not None and value != {}:
            text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
            out[name] = text[:6000]
    return out


#: the metric an estimated energy is logged as: a chart of ``energy_j_per_inference`` holds counters' readings only
ESTIMATED_ENERGY = "energy_estimated_j_per_inference"


def _metrics(row: pd.Series) -> dict[str, float]:
    found = {name: float(row[column]) for name, column in METRIC_COLUMNS.items()
             if column in row and row[column] is not None and pd.notna(row[column])}  # fmt: skip
    if "energy_j_per_inference" in found and str(row.get("energy_source") or "").startswith("estimated"):
        found[ESTIMATED_ENERGY] = found.pop("energy_j_per_inference")
    return found


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def already_logged(client: Any, experiment_id: str, run_id: str) -> str | None:
    """The MLflow run id holding edgebench run ``run_id`` in this experiment, if any."""
    hits = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1)
    return hits[0].info.run_id if hits else None


def log_run(
    store: Store, run_id: str, uri: str, experiment: str | None = None, report_dir: Path | None = None
) -> tuple[str, int]:
    """Log one stored run; return (the parent MLflow run id, nested runs logged; 0 when it was already there).

    Args:
        store: the results store.
        run_id: run id, tag, id prefix or 'latest'.
        uri: MLflow tracking URI (``http://127.0.0.1:5000``, ``sqlite:///mlflow.db``; a ``file:`` store only with
            ``MLFLOW_ALLOW_FILE_STORE=true``).
        experiment: MLflow experiment name (created if missing); default: the edgebench run's name.
        report_dir: the rendered report to attach (its index.html and figures), if any.
    """
    run = store.get_run(run_id)
    check_uri(uri, "MLflow tracking URI")
    try:
        check_server(uri, "the tracking store")  # down: said in seconds, not after MLflow's engine retried 100 s
    except ConfigError as exc:
        raise _log_again(store, run, uri, experiment, str(exc)) from None
    try:
        return _logged(_client(uri), store, run, experiment, report_dir)  # a new store's migrations may fail too
    except EdgebenchError:
        raise
    except Exception as exc:  # the tracking server's own errors (refused, unreachable, bad URI)
        raise _log_again(store, run, uri, experiment, first_line(exc)) from exc


def _log_again(store: Store, run: dict[str, Any], uri: str, experiment: str | None, why: str) -> TrackingError:
    """The error of a failed log, with the command that logs the stored run later."""
    where, shown = shown_url(store.url), shown_url(uri)  # never print a password: CI logs are read by many
    again = shlex.join(["edgebench", "export", "--mlflow", shown, "--run", run["id"], "--store", where,
                        *(["--experiment", experiment] if experiment else [])])
    hidden = " (with the passwords where it shows ***)" if "***" in where + shown else ""
    return TrackingError(f"logging run {run['id']} to MLflow at {shown} failed: {why}; the run is stored: log it "
                         f"again with `{again}`{hidden}")


def _logged(client: Any, store: Store, run: dict[str, Any], experiment: str | None,
            report_dir: Path | None) -> tuple[str, int]:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    experiment_id = _experiment_id(client, experiment or run["name"])
    parent_id = already_logged(client, experiment_id, run["id"])
    df = store.measurements(run["id"])
    if parent_id is None:
        machine = run["machine"] or {}
        parent_id = client.create_run(experiment_id, run_name=f"{run['name']} {run['id']}", tags={
            RUN_TAG: run["id"], "edgebench.tags": ",".join(run["tags"]),
            "edgebench.commit": str(run["edgebench_commit"]),
            "cpu_model": str(machine.get("cpu_model")), "hostname": str(machine.get("hostname")),
        }).info.run_id  # fmt: skip
        client.log_batch(parent_id, params=[Param(k, v) for k, v in {
            "experiment_hash": run["experiment_hash"], "edgebench_version": str(run["edgebench_version"]),
        }.items()])  # fmt: skip
    # an earlier call that failed part-way, or logged a run since resumed, left measurements out: those are logged
    logged, strays = _nested_runs(client, experiment_id, parent_id)
    finished = client.get_run(parent_id).info.status == "FINISHED"
    if finished and strays and not logged:  # logged in full by an edgebench before job-key tags: left as it is
        logged, strays = set(df["job_key"]), []
    for stray in strays:  # a nested run a failure interrupted: logged again below, in full
        client.delete_run(stray)
    todo = df[~df["job_key"].isin(logged)]
    if todo.empty and finished:
        log.info("edgebench run %s is already MLflow run %s", run["id"], parent_id)
        return parent_id, 0
    for _, row in todo.iterrows():
        settings = {k: row[k] for k in _SETTINGS if pd.notna(row[k])}
        context = " · ".join(str(settings[k]) for k in ("target", "backend") if k in settings)
        child = client.create_run(experiment_id, run_name=f"{row['label']} @ {context}", tags={
            "mlflow.parentRunId": parent_id, "edgebench.variant_id": str(row["variant_id"]),
            "edgebench.label": str(row["label"]),
        })  # fmt: skip
        params = {**flat_params(row["spec"] if isinstance(row["spec"], dict) else {}, "variant."),
                  **{k: str(v) for k, v in settings.items()}}
        tags = [RunTag("energy_source", str(row["energy_source"]))] if pd.notna(row["energy_source"]) else []
        if row["status"] != "ok":
            tags.append(RunTag("edgebench.error", str(row["error"])[:5000]))
        client.log_batch(child.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in _metrics(row).items()],
                         params=[Param(k, v) for k, v in params.items()], tags=tags)
        client.set_terminated(child.info.run_id, "FINISHED" if row["status"] == "ok" else "FAILED")
        client.set_tag(child.info.run_id, JOB_TAG, str(row["job_key"]))  # last: a child without it is logged again
    with tempfile.TemporaryDirectory() as tmp:  # the whole run as it now is (replaces an earlier, shorter CSV)
        csv = export_runs(store, Path(tmp) / f"{run['id']}.csv", [run["id"]], "csv")
        for path in csv:
            client.log_artifact(parent_id, str(path))
    if report_dir is not None and Path(report_dir).is_dir():
        client.log_artifacts(parent_id, str(report_dir), "report")
    # an interrupted run is not over: its parent says so until the resumed run logs the rest
    client.set_terminated(parent_id, "FINISHED" if run["status"] == "finished" else "KILLED")
    return parent_id, len(todo)


def _nested_runs(client: Any, experiment_id: str, parent_id: str) -> tuple[set[str], list[str]]:
    """The edgebench job keys of the nested runs under ``parent_id`` that were logged in full, and the ids of those
    that were not (no job-key tag)."""
    found, strays, token = set(), [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                                  max_results=1000, page_token=token)
        for nested in page:
            if JOB_TAG in nested.data.tags:
                found.add(nested.data.tags[JOB_TAG])
            else:
                strays.append(nested.info.run_id)
        token = page.token
        if not token:
            return found, strays
