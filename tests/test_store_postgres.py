"""The same Store code against a real PostgreSQL server started by the test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from store_fixtures import MACHINE, fill_run, make_foundation_store, variant_specs

from edgebench.job import JobResult
from edgebench.store import SCHEMA_VERSION, Store
from edgebench.store.record import MeasurementRecord
from edgebench.store.schema import metadata


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    engine = create_engine(postgres_url)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("drop table if exists schema_version"))
    engine.dispose()
    store = Store.open(postgres_url)
    yield store
    store.close()


def test_postgres_round_trip_matches_sqlite(pg_store: Store, tmp_path: Path) -> None:
    pg_run = fill_run(pg_store, seed=3, tags=("main",))
    lite = Store.open(tmp_path / "r.db")
    lite_run = fill_run(lite, seed=3, tags=("main",))
    pg_df, lite_df = pg_store.measurements(pg_run), lite.measurements(lite_run)
    assert len(pg_df) == len(variant_specs()) + 1
    columns = ["job_key", "label", "criterion", "ratio", "precision", "status", "p50_ms", "accuracy", "size_bytes", "macs"]
    pd.testing.assert_frame_equal(pg_df[columns], lite_df[columns], check_dtype=False)
    for pg_id, lite_id in zip(pg_df["id"], lite_df["id"]):
        assert np.array_equal(pg_store.samples(int(pg_id)), lite.samples(int(lite_id)))
    assert pg_store.get_run("main")["machine"] == MACHINE
    assert list(pg_store.runs()["n_failed"]) == [1]
    lite.close()


def test_postgres_resume_is_idempotent(pg_store: Store) -> None:
    run_id = pg_store.start_run("exp", {"a": 1}, "h", MACHINE)
    result = JobResult(job_id="job", status="ok", latency_ms={"p50": 1.0}, samples_ns=[1, 2, 3])
    for _ in range(2):
        pg_store.add_measurement(MeasurementRecord(run_id, "job", "v", "t", "b", result, {"threads": 1}, 5))
    assert pg_store.find_resumable_run("h") == run_id
    assert pg_store.done_job_keys(run_id) == {"job"}
    assert len(pg_store.measurements(run_id)) == 1


def test_postgres_migrates_old_schema(pg_store: Store, postgres_url: str) -> None:
    pg_store.close()
    make_foundation_store(postgres_url)
    reopened = Store.open(postgres_url)
    run_id = reopened.start_run("exp", {}, "h", MACHINE, tags=("v2",))
    assert reopened.resolve_run("v2") == run_id
    with reopened.engine.connect() as conn:
        assert conn.execute(text("select max(version) from schema_version")).scalar() == SCHEMA_VERSION
    reopened.close()


def test_import_sqlite_host_into_postgres(pg_store: Store, tmp_path: Path) -> None:
    from edgebench.store.transfer import import_runs

    host = Store.open(tmp_path / "host.db")
    run_id = fill_run(host, seed=5, tags=("release-1.2",))
    host.close()
    assert import_runs(pg_store, tmp_path / "host.db") == [run_id]
    assert import_runs(pg_store, tmp_path / "host.db") == []
    df = pg_store.measurements(pg_store.resolve_run("release-1.2"))
    assert len(df) == len(variant_specs()) + 1 and df["n_samples"].max() > 0


def test_a_connection_the_server_drops_while_idle_is_replaced(pg_store: Store, postgres_url: str) -> None:
    """A server that ends idle sessions (idle_session_timeout; PgBouncer and cloud databases do it) dropped the
    store's pooled connection between two reads: the pool's ping saw it and reconnected, until the store-problem
    hook turned the ping's failure into 'the server ended the connection' and every long run stopped with exit 2."""
    import time

    from sqlalchemy.engine import make_url

    fill_run(pg_store, seed=1)
    database = make_url(postgres_url).database
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"alter database {database} set idle_session_timeout = '500ms'"))
    try:
        store = Store.open(postgres_url)  # its connections start with the timeout
        assert len(store.runs()) == 1
        time.sleep(1.5)  # the pooled connection sits idle past the timeout: the server ends it
        assert len(store.runs()) == 1
        store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"alter database {database} reset idle_session_timeout"))
        admin.dispose()
