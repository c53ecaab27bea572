"""Shared fixtures for store, compare and report tests: synthetic JobResult-shaped runs.

A pytest plugin (conftest.py's ``pytest_plugins``): test modules use its fixtures by name and import only its
helpers (``fill_run``, ``MACHINE``...). ``filled_store`` is one filled run: (store, run id). The PostgreSQL fixture starts a
real server with initdb + pg_ctl in a temp dir on a free port, as a non-root
user, and skips with the reason when that cannot be done.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from edgebench.job import JobResult, Placement
from edgebench.measure.stats import latency_intervals, summarize_ns
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord
from edgebench.store.schema import INTERVAL_COLUMNS
from edgebench.variants import PruneSpec, QuantSpec, VariantSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CRITERIA = ("l1", "mean_activation", "random")
RATIOS = (0.25, 0.5, 0.8)
PRECISIONS = ("fp32", "int8")
BASE_MACS = 2.0e6
BASE_PARAMS = 20_000
MACHINE = {
    "hostname": "testhost",
    "cpu_model": "Synthetic CPU @ 2.0GHz",
    "cpu_cores_logical": 2,
    "governor": "performance",
    "ram_gb": 8.0,
    "os": "Linux",
    "packages": {"onnxruntime": "1.20.0", "torch": "2.13.0"},
    "edgebench_commit": "abc1234",
}

#: the failed job's error: long, as a real one with its advice is, so a report must wrap it
FAILED_ERROR = ("worker timed out after 60 s: the runtime hung inside its timed loop and its worker was killed; "
                "raise the target's timeout_s if the model is that slow, or look at the backend's log for a deadlock "
                "(the other jobs of the run went on, and `edgebench run` again measures only this one)")


def make_foundation_store(url: str) -> None:
    """Create a store at ``url`` and take it back to schema version 1, what every migration starts from.

    Each migration's objects are dropped here; a new migration adds its own line (the migration tests then
    check every step ran once).
    """
    Store.open(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in (
            "drop table run_tags",  # 2
            "alter table measurements drop column details",  # 3
            "alter table measurements drop column error_detail",  # 4
            "drop table layer_profile_rows",  # 5
            "drop table layer_profiles",
            *(f"alter table measurements drop column {c}" for c in (*INTERVAL_COLUMNS, "ci_confidence")),  # 6
            "delete from schema_version",
            "insert into schema_version values (1, '2024-01-01T00:00:00Z', 'initial schema')",
        ):
            conn.execute(text(statement))
    engine.dispose()


def variant_specs() -> list[VariantSpec]:
    """Baseline plus every criterion x ratio, each in fp32 and int8."""
    prunes: list[PruneSpec | None] = [None] + [PruneSpec(criterion=c, ratio=r) for c in CRITERIA for r in RATIOS]
    return [
        VariantSpec(model="digits_cnn", dataset="digits", prune=p, quant=QuantSpec(precision=q))
        for p in prunes
        for q in PRECISIONS
    ]


def variant_facts(spec: VariantSpec) -> dict[str, Any]:
    """Params/MACs shrinking about quadratically with the kept-filter fraction."""
    keep = 1.0 - (spec.prune.ratio if spec.prune else 0.0)
    return {
        "params": int(BASE_PARAMS * keep**2),
        "macs": BASE_MACS * keep**2,
        "training_macs": 3 * BASE_MACS * 1000 * (0.5 + 0.5 * keep),
        "filters": {"0": int(16 * keep), "3": int(32 * keep)},  # kept, by conv layer (models.cost.conv_filters)
    }


def synthetic_result(
    job_id: str,
    spec: VariantSpec,
    rng: np.random.Generator,
    slowdown: float = 1.0,
    n: int = 400,
) -> JobResult:
    """A plausible JobResult: latency follows MACs (int8 ~3x faster), accuracy drops with the ratio."""
    facts = variant_facts(spec)
    ratio = spec.prune.ratio if spec.prune else 0.0
    int8 = spec.quant.precision == "int8"
    median_ns = (50_000 + 0.5 * facts["macs"] / (3.0 if int8 else 1.0)) * slowdown
    samples = (median_ns * rng.lognormal(0.0, 0.05, n)).astype(np.int64)
    latency, throughput = summarize_ns(samples.tolist())
    crit_penalty = {"l1": 0.0, "mean_activation": 0.01, "random": 0.03}
    penalty = crit_penalty.get(spec.prune.criterion, 0.0) if spec.prune else 0.0
    accuracy = 0.98 - 0.1 * ratio**2 - penalty - (0.004 if int8 else 0.0)
    return JobResult(
        job_id=job_id,
        status="ok",
        accuracy=round(accuracy, 4),
        n_eval=360,
        max_abs_diff=0.05 if int8 else 1e-6,
        load_ms=5.0,
        first_inference_ms=median_ns / 1e6 * 3,
        latency_ms=latency,
        latency_ci_ms=latency_intervals(samples),
        throughput_ips=throughput,
        samples_ns=samples.tolist(),
        peak_rss_mb=120.0 + 10 * (1 - ratio),
        runtime={"onnxruntime": "1.20.0", "python": "3.11.2"},
    )


def artifact_size(spec: VariantSpec) -> int:
    """File size shrinking with params; int8 about 4x smaller."""
    params = variant_facts(spec)["params"]
    return 2_000 + params * (1 if spec.quant.precision == "int8" else 4)


def fill_run(
    store: Store,
    name: str = "synthetic",
    seed: int = 0,
    slowdown: dict[str, float] | None = None,
    machine: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
    fail_one: bool = True,
    threads: int = 1,
    targets: dict[str, float] | None = None,
    profiles: dict[str, dict[str, Any]] | None = None,
    window_runs: int = 400,
    executor: str | None = None,
    experiment: dict[str, Any] | None = None,
) -> str:
    """Store a full synthetic run and return its id (each timed window of ``window_runs`` runs; ``executor``: the
    placement each result records, none by default; ``experiment``: fields stored with the run beside its name).

    ``slowdown`` maps variant label -> latency factor; ``targets`` maps target name -> latency factor;
    ``profiles`` maps variant label -> a per-layer profile (``LayerProfile.to_dict()``) stored with it.
    """
    rng = np.random.default_rng(seed)
    slowdown = slowdown or {}
    run_id = store.start_run(name, {"name": name, **(experiment or {})}, f"hash-{name}", machine or MACHINE, tags)
    for spec in variant_specs():
        store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, spec.parent_id, variant_facts(spec))
        settings = {"threads": threads, "batch_size": 1, "precision": spec.quant.precision, "scenario": "single_stream"}
        for target, factor in (targets or {"local-cpu": 1.0}).items():
            key = f"{spec.id}:{target}:onnxruntime:t{threads}"
            result = synthetic_result(key, spec, rng, slowdown.get(spec.label, 1.0) * factor, window_runs)
            if executor is not None:
                result = result.model_copy(update={"ran_on": Placement(executor=executor, host="h")})
            if spec.label in (profiles or {}):
                result = result.model_copy(update={"layer_profile": profiles[spec.label]})  # type: ignore[index]
            store.add_measurement(
                MeasurementRecord(run_id, key, spec.id, target, "onnxruntime", result, settings, artifact_size(spec))
            )
    if fail_one:
        spec = variant_specs()[-1]
        key = f"{spec.id}:local-cpu:torch:t{threads}"
        failed = JobResult(job_id=key, status="failed", error=FAILED_ERROR)
        settings = {"threads": threads, "batch_size": 1, "precision": "int8", "scenario": "single_stream"}
        store.add_measurement(MeasurementRecord(run_id, key, spec.id, "local-cpu", "torch", failed, settings))
    store.finish_run(run_id)
    return run_id


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store in a temp dir."""
    store = Store.open(tmp_path / "sub" / "results.db")
    yield store
    store.close()


@pytest.fixture
def filled_store(sqlite_store: Store) -> tuple[Store, str]:
    """A SQLite store holding one synthetic run (with one failed job)."""
    return sqlite_store, fill_run(sqlite_store)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    return ["runuser", "-u", user, "--", *cmd]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throw-away PostgreSQL server started for this test session (skips if impossible)."""
    if os.environ.get("EDGEBENCH_TEST_POSTGRES_URL"):
        yield os.environ["EDGEBENCH_TEST_POSTGRES_URL"]
        return
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install -e '.[postgres]'")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    user = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
    tmp = Path(tempfile.mkdtemp(prefix="edgebench-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if user:
        shutil.chown(tmp, user)
        shutil.chown(sock, user)
    port = _free_port()
    try:
        subprocess.run(
            _as_user(user, [str(bindir / "initdb"), "-D", str(data), "-U", "edgebench", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc} {detail.decode(errors='replace')[-300:]}")
    try:
        subprocess.run(
            _as_user(user, [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "edgebench", "bench"]),
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql+psycopg://edgebench@127.0.0.1:{port}/bench"
    finally:
        subprocess.run(
            _as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        time.sleep(0.1)
        shutil.rmtree(tmp, ignore_errors=True)
