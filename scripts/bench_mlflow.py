"""What logging a stored run to MLflow costs: runs and metrics logged, seconds, to a local SQLite tracking store and
to a real `mlflow server` on 127.0.0.1 (HTTP). Needs the 'mlflow' extra and a stored run (default: the default
run's store; its report is attached when reports/<name>/index.html exists).

    .venv/bin/python scripts/bench_mlflow.py [--store runs/default/results.db] [--run latest]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from edgebench.store import Store
from edgebench.tracking.mlflow_log import log_run


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "unknown")
    return f"CPU: {model}; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"


def measure(label: str, store: Store, run_id: str, uri: str, report: Path | None) -> None:
    start = time.perf_counter()
    parent, nested = log_run(store, run_id, uri, "bench-mlflow", report)
    seconds = time.perf_counter() - start
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench-mlflow").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=5000)
    metrics = sum(len(c.data.metrics) for c in children)
    params = sum(len(c.data.params) for c in children)
    artifacts = [a.path for a in client.list_artifacts(parent)]
    print(f"{label}: 1 parent + {nested} nested runs, {metrics} metrics, {params} params, artifacts {artifacts}; "
          f"{seconds:.1f} s")


def server(tmp: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
                             "--artifacts-destination", str(tmp / "server-artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(360):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="runs/default/results.db")
    parser.add_argument("--run", default="latest")
    args = parser.parse_args()
    print(machine())
    with Store.open(args.store) as store, tempfile.TemporaryDirectory() as tmp:
        run = store.get_run(args.run)
        report = Path("reports") / run["name"]
        report_dir = report if (report / "index.html").is_file() else None
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri).create_experiment("bench-mlflow", artifact_location=(Path(tmp) / "a").as_uri())
        measure("SQLite tracking store", store, run["id"], uri, report_dir)
        proc, url = server(Path(tmp))
        try:
            measure("mlflow server over HTTP", store, run["id"], url, report_dir)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
